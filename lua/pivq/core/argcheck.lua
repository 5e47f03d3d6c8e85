-- pivq.core.argcheck: the package's argument checks, one copy of each. Every check names the
-- function (fname) and the argument, and raises at the user's line: fail() skips the frames of
-- the package's own files, however deep inside the package the check sits and whatever tail
-- calls happened on the way (a fixed error level is off by one after every `return f(...)`).
--
--   fail(msg)                                  raise msg at the first frame outside lua/pivq/
--   is_tensor(x)                               a pivq tensor?
--   tensor(fname, name, t)                     t, or "fname: name must be a tensor, got ..."
--   optional_tensor(fname, name, t)            t's C pointer, or nil for nil
--   self_tensor(fname, t)                      t, or "fname: expected a tensor, got ..."
--   options(fname, opts [, valid])             {} for nil, opts for a plain table (keys in valid)
--   keys(fname, opts, valid [, what])          raise on a key of opts not in valid (a list, or a
--                                              set {key = true}), naming the closest valid key
--   closest(word, candidates)                  the candidate nearest to word (edit distance)
--   generator(fname, opts)                     the C generator of opts.generator, or nil
--   module_options(fname, opts [, valid])      options(), with opts.generator checked
--   number(fname, name, v, default, integer)   a number (an integer), default for nil
--   finite(fname, name, v, default, min)       a finite number >= min
--   u53(fname, name, v)                        an integer in [0, 2^53) (seeds, counters)
--   size(fname, name, v), pair(fname, name, v) a layer size in 1..2^31, or a pair {h, w} of them
--   number_pair(fname, name, v, default, integer)  a number or a pair {h, w} of numbers
--   weight(fname, sizes)                       sizes whose product fits in a tensor
--   counts(cmd, args, names [, min])            a command's count options: integers >= min (1)
--   shape_string(t)                            "2x3" ("scalar" for 0 dims), for messages
local ffi = require "ffi"
local state = require "pivq.core.ffi"

local handle_t = state.handle_t

local M = {}

-- lua/pivq/ (this file sits in its core/ folder): every file of the package and its sub-packages.
local PACKAGE_DIR = debug.getinfo(1, "S").source:match("^(@.*[/\\])[^/\\]+[/\\][^/\\]+$") or "@lua/pivq/"
M.PACKAGE_DIR = PACKAGE_DIR

function M.fail(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or info.source:sub(1, #PACKAGE_DIR) ~= PACKAGE_DIR then break end
    level = level + 1
  end
  error(msg, level)
end
local fail = M.fail

local function is_tensor(x) return ffi.istype(handle_t, x) end
M.is_tensor = is_tensor

function M.tensor(fname, name, t)
  if not is_tensor(t) then
    fail(string.format("%s: %s must be a tensor, got %s", fname, name, type(t)))
  end
  return t
end

function M.optional_tensor(fname, name, t)
  if t == nil then return nil end
  return M.tensor(fname, name, t).c
end

function M.self_tensor(fname, t)
  if not is_tensor(t) then
    fail(string.format("%s: expected a tensor, got %s", fname, type(t)))
  end
  return t
end

-- An options table: nil gives {}; anything but a plain table (a tensor too) raises. With valid
-- (a list of names), a key not in it raises too, naming the closest valid key (keys()).
function M.options(fname, opts, valid)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    fail(string.format("%s: options must be a table, got %s", fname, type(opts)))
  end
  if valid then M.keys(fname, opts, valid) end
  return opts
end

-- Levenshtein distance between two strings (case-insensitive; "_" and "-" count as equal, so
-- that a command-line spelling finds its option).
local function distance(a, b)
  a, b = a:lower():gsub("-", "_"), b:lower():gsub("-", "_")
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    local ca = a:byte(i)
    for j = 1, #b do
      local cost = ca == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end
M.distance = distance

function M.closest(word, candidates)
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if not best_d or d < best_d or (d == best_d and c < best) then best, best_d = c, d end
  end
  return best
end

-- Every key of opts must be in valid (a list of names, or a set {name = true}): an unknown key
-- raises "fname: unknown option 'key' (did you mean 'closest'?)". what names the kind of key
-- ("option" by default; "config key" for a model's configuration). Returns opts.
function M.keys(fname, opts, valid, what)
  local list = valid
  if valid[1] == nil then
    list = {}
    for k in pairs(valid) do list[#list + 1] = k end
  end
  for k in pairs(opts) do
    local known = false
    for _, v in ipairs(list) do
      if k == v then
        known = true
        break
      end
    end
    if not known then
      local near = type(k) == "string" and M.closest(k, list)
      fail(string.format("%s: unknown %s %s%s", fname, what or "option",
        type(k) == "string" and ("'" .. k .. "'") or tostring(k),
        near and (" (did you mean '" .. near .. "'?)") or ""))
    end
  end
  return opts
end

-- A module constructor's options: options() whose generator, when given, is a pivq.Generator
-- (with valid: "generator" is valid too).
function M.module_options(fname, opts, valid)
  opts = M.options(fname, opts)
  if valid then
    local with = { "generator" }
    for _, k in ipairs(valid) do with[#with + 1] = k end
    M.keys(fname, opts, with)
  end
  M.generator(fname, opts)
  return opts
end

-- The C generator of opts.generator (nil: the global one); it must be a pivq.Generator.
function M.generator(fname, opts)
  local g = opts.generator
  if g == nil then return nil end
  -- pivq.core.random owns the Generator type and requires this module: looked up here, at the call
  if not require("pivq.core.random").is_generator(g) then
    fail(string.format("%s: generator must be a pivq.Generator, got %s", fname, type(g)))
  end
  return g.cdata
end

-- A number (an integer with integer = true), or default when nil (and default given).
function M.number(fname, name, v, default, integer)
  if v == nil and default ~= nil then return default end
  if type(v) ~= "number" or (integer and (v % 1 ~= 0 or v ~= v or math.abs(v) >= 2 ^ 53)) then
    fail(string.format("%s: %s must be %s, got %s", fname, name, integer and "an integer" or "a number",
      type(v) == "number" and tostring(v) or type(v)))
  end
  return v
end

-- A number (default when nil), finite and at least `min` when given.
function M.finite(fname, name, v, default, min)
  v = M.number(fname, name, v, default)
  if not (v > -math.huge and v < math.huge) or (min and v < min) then
    fail(string.format("%s: %s must be a finite number%s, got %s", fname, name, min and (" >= " .. min) or "",
      tostring(v)))
  end
  return v
end

-- Below 2^53, where a Lua number is an exact integer (and converts to uint64 exactly).
function M.u53(fname, name, v)
  if type(v) ~= "number" or v % 1 ~= 0 or v < 0 or v >= 2 ^ 53 then
    fail(string.format("%s: %s must be an integer in [0, 2^53), got %s", fname, name, tostring(v)))
  end
  return v
end

-- A layer size: an integer in 1..2^31 (a size beyond is a typo, not a layer).
function M.size(fname, name, v)
  if type(v) ~= "number" or v % 1 ~= 0 or v < 1 or v > 2 ^ 31 then
    fail(string.format("%s: %s must be an integer in 1..2^31, got %s", fname, name, tostring(v)))
  end
  return v
end

-- A size or a pair of sizes {h, w}; returns the pair.
function M.pair(fname, name, v)
  local p = type(v) == "table" and v or { v, v }
  return { M.size(fname, name, p[1]), M.size(fname, name, p[2]) }
end

-- A number or a pair {h, w} of numbers (default when nil); integer = true: of integers.
function M.number_pair(fname, name, v, default, integer)
  if v == nil then v = default end
  if type(v) == "number" then v = { v, v } end
  if type(v) ~= "table" or type(v[1]) ~= "number" or type(v[2]) ~= "number" then
    fail(string.format("%s: %s must be a number or a pair {h, w}, got %s", fname, name, tostring(v)))
  end
  for i = 1, 2 do M.number(fname, name, v[i], nil, integer) end
  return v
end

-- A weight of these sizes must fit in a tensor (the check names the class, not pivq.empty).
function M.weight(fname, sizes)
  local n = 1
  for _, s in ipairs(sizes) do n = n * s end
  if n > 2 ^ 36 then
    fail(string.format("%s: a weight of %s elements is too large", fname, table.concat(sizes, "x")))
  end
  return sizes
end

-- A command's count options (argparse's results, underscored names): each given one must be an
-- integer >= min (default 1); "cmd: --name must be ..." otherwise. Names not given are skipped.
function M.counts(cmd, args, names, min)
  min = min or 1
  for _, name in ipairs(names) do
    local v = args[name]
    if v ~= nil and (type(v) ~= "number" or v % 1 ~= 0 or v < min) then
      fail(string.format("%s: --%s must be an integer >= %d, got %s", cmd, (name:gsub("_", "-")), min, tostring(v)))
    end
  end
end

function M.shape_string(t)
  if t.c.ndim == 0 then return "scalar" end
  local s = {}
  for i = 0, t.c.ndim - 1 do s[#s + 1] = tostring(tonumber(t.c.shape[i])) end
  return table.concat(s, "x")
end

return M
