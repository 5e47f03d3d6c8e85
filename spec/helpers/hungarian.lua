-- An independent, simple O(n^3) Hungarian solver for the assignment specs: square problems
-- (rectangular ones are padded with zero-cost rows), potentials u, v, and one shortest
-- augmenting path per row, all in plain Lua doubles. Returns the minimum total and, for each
-- row, its 1-based column.
local M = {}

function M.solve(cost, L, K) -- cost[i][j], 1 <= i <= L <= K
  local n = K
  local INF = math.huge
  local function a(i, j) return i <= L and cost[i][j] or 0 end
  local u, v, p, way = {}, {}, {}, {}
  for j = 0, n do
    u[j], v[j], p[j], way[j] = 0, 0, 0, 0
  end
  for i = 1, n do
    p[0] = i
    local j0 = 0
    local minv, used = {}, {}
    for j = 0, n do
      minv[j], used[j] = INF, false
    end
    repeat
      used[j0] = true
      local i0, delta, j1 = p[j0], INF, 0
      for j = 1, n do
        if not used[j] then
          local cur = a(i0, j) - u[i0] - v[j]
          if cur < minv[j] then
            minv[j], way[j] = cur, j0
          end
          if minv[j] < delta then
            delta, j1 = minv[j], j
          end
        end
      end
      for j = 0, n do
        if used[j] then
          u[p[j]] = u[p[j]] + delta
          v[j] = v[j] - delta
        else
          minv[j] = minv[j] - delta
        end
      end
      j0 = j1
    until p[j0] == 0
    repeat
      local j1 = way[j0]
      p[j0] = p[j1]
      j0 = j1
    until j0 == 0
  end
  local col, total = {}, 0
  for j = 1, n do
    if p[j] >= 1 and p[j] <= L then
      col[p[j]] = j
      total = total + cost[p[j]][j]
    end
  end
  return total, col
end

return M
