-- pivq.printing: Torch7-style text for tensors (values, then "[pivq.Tensor float32 of size 2x3]").
-- Large tensors are summarised: at most `edge` rows/columns at each end of every dim, and the
-- footer adds min, max and mean over all elements. "Large" is more than `threshold` elements,
-- or a vector longer than `vector` (one value a line would fill the screen).
local M = {}

M.options = { threshold = 1000, edge = 3, precision = 4, vector = 24 }

-- An integer as text: int64 values arrive as cdata (exact beyond 2^53, where a Lua number
-- would round), the others as numbers.
local function int_text(v)
  if type(v) == "cdata" then return (tostring(v):gsub("[LU]+$", "")) end
  return string.format("%d", v)
end

-- Choose one number format for all shown values so that columns line up; returns a function
-- from a value to its right-aligned text.
local function number_format(values, is_float)
  if not is_float then
    local w = 1
    for _, v in ipairs(values) do w = math.max(w, #int_text(v)) end
    return function(v) return string.rep(" ", w - #int_text(v)) .. int_text(v) end
  end
  local all_int, maxabs, minabs = true, 0, math.huge
  for _, v in ipairs(values) do
    if v == v and v ~= math.huge and v ~= -math.huge then -- nan/inf print as words anyway
      if v ~= math.floor(v) then all_int = false end
      local a = math.abs(v)
      if a > maxabs then maxabs = a end
      if a > 0 and a < minabs then minabs = a end
    end
  end
  local p = M.options.precision
  local fmt
  if all_int and maxabs < 1e9 then
    fmt = "%.0f"
  elseif maxabs >= 1e5 or (minabs < 1e-4 and minabs ~= math.huge) then
    fmt = "%." .. p .. "e"
  else
    fmt = "%." .. p .. "f"
  end
  local function text(v)
    if v ~= v then return "nan" end -- never "-nan"
    return string.format(fmt, v)
  end
  local w = 1
  for _, v in ipairs(values) do w = math.max(w, #text(v)) end
  return function(v)
    local s = text(v)
    return string.rep(" ", w - #s) .. s
  end
end

-- Indices of a dim of size n to show: all, or the first and last `edge` with a gap (0).
local function shown(n, summarise)
  local idx = {}
  local e = M.options.edge
  if summarise and n > 2 * e then
    for i = 1, e do idx[#idx + 1] = i end
    idx[#idx + 1] = 0
    for i = n - e + 1, n do idx[#idx + 1] = i end
  else
    for i = 1, n do idx[#idx + 1] = i end
  end
  return idx
end

-- get(i1, ..., ik) returns the element at 1-based indices; stats() (optional) returns min, max
-- and mean, shown in a summarised tensor's footer.
function M.format(get, sizes, dtype_name, stats)
  local nd = #sizes
  local numel = 1
  for _, s in ipairs(sizes) do numel = numel * s end
  local footer = string.format("[pivq.Tensor %s of size %s]", dtype_name,
    nd == 0 and "scalar" or table.concat(sizes, "x"))
  if numel == 0 then return "[empty tensor]\n" .. footer end
  local summarise = numel > M.options.threshold or (nd == 1 and numel > M.options.vector)
  if summarise and stats then
    local lo, hi, mean = stats()
    local function num(v)
      if type(v) ~= "number" then return (tostring(v):gsub("[LU]+$", "")) end
      if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%d", v) end
      return string.format("%.6g", v)
    end
    footer = footer:sub(1, -2) .. string.format(" | min %s max %s mean %s]", num(lo), num(hi), num(mean))
  end
  local is_float = dtype_name == "float32"
  -- gather the values that will be shown, to pick one format
  local values = {}
  local function collect(prefix, d)
    if d > nd then
      values[#values + 1] = get(unpack(prefix))
      return
    end
    for _, i in ipairs(shown(sizes[d], summarise)) do
      if i > 0 then
        prefix[d] = i
        collect(prefix, d + 1)
      end
    end
    prefix[d] = nil
  end
  collect({}, 1)
  local fmt = number_format(values, is_float)
  local out = {}
  if nd == 0 then
    return fmt(get()) .. "\n" .. footer
  end
  local function row(prefix)
    local cells = {}
    for _, j in ipairs(shown(sizes[nd], summarise)) do
      if j == 0 then
        cells[#cells + 1] = "..."
      else
        prefix[nd] = j
        cells[#cells + 1] = fmt(get(unpack(prefix, 1, nd)))
      end
    end
    return " " .. table.concat(cells, " ")
  end
  local function matrix(prefix)
    if nd == 1 then
      -- a vector prints one value per line, as in Torch7
      for _, j in ipairs(shown(sizes[1], summarise)) do
        out[#out + 1] = j == 0 and " ..." or " " .. fmt(get(j))
      end
      return
    end
    for _, i in ipairs(shown(sizes[nd - 1], summarise)) do
      if i == 0 then
        out[#out + 1] = " ..."
      else
        prefix[nd - 1] = i
        out[#out + 1] = row(prefix)
      end
    end
  end
  local function slices(prefix, d)
    if d >= nd - 1 then
      if nd > 2 then
        local label = {}
        for k = 1, nd - 2 do label[k] = tostring(prefix[k]) end
        out[#out + 1] = "(" .. table.concat(label, ",") .. ",.,.) = "
      end
      matrix(prefix)
      if nd > 2 then out[#out + 1] = "" end
      return
    end
    for _, i in ipairs(shown(sizes[d], summarise)) do
      if i == 0 then
        out[#out + 1] = "(...)"
        out[#out + 1] = ""
      else
        prefix[d] = i
        slices(prefix, d + 1)
      end
    end
  end
  slices({}, 1)
  out[#out + 1] = footer
  return table.concat(out, "\n")
end

return M
