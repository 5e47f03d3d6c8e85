-- pivq.pretty: readable text for any Lua value (the REPL prints results with it).
-- Tensors use their own __tostring; tables print nested, keys sorted, cycles marked.
local M = {}

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

function M.format(value, opts)
  opts = opts or {}
  local max_depth = opts.depth or 4
  local seen = {}
  local function fmt(v, indent, depth)
    local tv = type(v)
    if tv == "string" then return string.format("%q", v) end
    if tv == "function" then
      -- its name and signature from its definition (pivq.display.help), not just an address
      local sig = require("pivq.display.help").signature(v)
      if sig then return "<function " .. sig .. ">" end
      return tostring(v)
    end
    if tv ~= "table" then
      local mt = getmetatable(v)
      if tv == "cdata" or (mt and mt.__tostring) then
        local s = tostring(v)
        if s:find("\n") then return "\n" .. s end
        return s
      end
      return tostring(v)
    end
    local mt = getmetatable(v)
    if mt and mt.__tostring then return tostring(v) end
    if seen[v] then return "<cycle>" end
    if depth >= max_depth then return "{...}" end
    seen[v] = true
    local n = #v
    local parts = {}
    for i = 1, n do parts[#parts + 1] = fmt(v[i], indent .. "  ", depth + 1) end
    for _, k in ipairs(sorted_keys(v)) do
      if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then
        local key = is_identifier(k) and k or "[" .. fmt(k, indent, depth + 1) .. "]"
        parts[#parts + 1] = key .. " = " .. fmt(v[k], indent .. "  ", depth + 1)
      end
    end
    seen[v] = nil
    if #parts == 0 then return "{}" end
    local one_line = "{" .. table.concat(parts, ", ") .. "}"
    if #one_line <= 78 and not one_line:find("\n") then return one_line end
    return "{\n" .. indent .. "  " .. table.concat(parts, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
  end
  return fmt(value, "", 0)
end

return M
