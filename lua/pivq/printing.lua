-- pivq.printing: Torch7-style text for tensors (values, then "[pivq.Tensor float32 of size 2x3]").
-- Large tensors are summarised: at most `edge` rows/columns at each end of every dim.
local M = {}

M.options = { threshold = 1000, edge = 3, precision = 4 }

-- Choose one number format for all shown values so that columns line up.
local function number_format(values, is_float)
  if not is_float then
    local w = 1
    for _, v in ipairs(values) do w = math.max(w, #string.format("%d", v)) end
    return "%" .. w .. "d", w
  end
  local all_int, maxabs, minabs = true, 0, math.huge
  for _, v in ipairs(values) do
    if v ~= v or v == math.huge or v == -math.huge then
      all_int = false
    else
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
  local w = 1
  for _, v in ipairs(values) do w = math.max(w, #string.format(fmt, v)) end
  return "%" .. w .. fmt:sub(2), w
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

-- get(i1, ..., ik) returns the element at 1-based indices.
function M.format(t, get, sizes, dtype_name)
  local nd = #sizes
  local numel = 1
  for _, s in ipairs(sizes) do numel = numel * s end
  local footer = string.format("[pivq.Tensor %s of size %s]", dtype_name,
    nd == 0 and "scalar" or table.concat(sizes, "x"))
  if numel == 0 then return "[empty tensor]\n" .. footer end
  local summarise = numel > M.options.threshold
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
    return string.format(fmt, get()) .. "\n" .. footer
  end
  local function row(prefix)
    local cells = {}
    for _, j in ipairs(shown(sizes[nd], summarise)) do
      if j == 0 then
        cells[#cells + 1] = "..."
      else
        prefix[nd] = j
        cells[#cells + 1] = string.format(fmt, get(unpack(prefix, 1, nd)))
      end
    end
    return " " .. table.concat(cells, " ")
  end
  local function matrix(prefix)
    if nd == 1 then
      -- a vector prints one value per line, as in Torch7
      for _, j in ipairs(shown(sizes[1], summarise)) do
        out[#out + 1] = j == 0 and " ..." or " " .. string.format(fmt, get(j))
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
