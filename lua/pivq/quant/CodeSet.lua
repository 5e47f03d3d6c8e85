-- pivq.CodeSet: one image's codes as an unordered collection of 1-based codebook indices.
-- A "set" (matching quantization) holds distinct codes; a "multiset" (nearest quantization)
-- may repeat them. Printed sorted; a multiset shows multiplicities as index×count.
--
--   local s = pivq.CodeSet({17, 3, 230}, {K = 512})
--   #s, s[1], ipairs(s)  -- the size; the codes in ascending order (a multiset repeats them)
--   s + t               -- sets: union; multisets: sum (multiplicities add up)
--   s * t               -- intersection (the smaller multiplicity of each code)
--   s - t               -- the codes of s not in t; a code of t missing from s is ignored,
--                       -- as in set difference (multisets: multiplicities subtract, down to 0)
--   s == t              -- the same codes with the same multiplicities
--   (t may be a CodeSet, a list of codes, a 1-D tensor or one code number)
--   s:add(codes), s:remove(codes)  -- strict: a set refuses a code it has; remove refuses a
--                       -- code that is missing (one occurrence each for multisets)
--   s:replace(old, new) -- swap one code for another (old must be there; for a set, new must not)
--   s:union(t), s:intersection(t), s:sum(t), s:contains(3), s:count(3), s:tensor(), s:totable()
-- CodeSets are values: every operation returns a new one.
local tensor = require "pivq.core.tensor"
local argcheck = require "pivq.core.argcheck"

local CodeSet = {}
CodeSet.__index = CodeSet

local function fail(msg, level) error(msg, level + 1) end

local function as_list(fname, codes, level)
  if tensor.is_tensor(codes) then
    if codes:dim() ~= 1 then
      fail(string.format("%s: expected a 1-D tensor of codes, got %d dims", fname, codes:dim()), level + 1)
    end
    return codes:totable()
  end
  if getmetatable(codes) == CodeSet then return codes:totable() end
  if type(codes) == "number" then return { codes } end
  if type(codes) ~= "table" then
    fail(string.format("%s: expected codes as a table, tensor or CodeSet, got %s", fname, type(codes)), level + 1)
  end
  return codes
end

local function check_code(fname, k, K, level)
  if type(k) ~= "number" or k % 1 ~= 0 or k < 1 or (K and k > K) then
    fail(string.format("%s: code %s is not an integer in 1..%s", fname, tostring(k), tostring(K or "K")), level + 1)
  end
end

-- Lay the codes out in the array part, sorted (so #s, s[i] and ipairs work: LuaJIT, as Lua 5.1,
-- ignores __len on tables). Every constructor ends here.
local function finish(self)
  local i = 0
  for _, k in ipairs(self:distinct()) do
    for _ = 1, self.counts[k] do
      i = i + 1
      rawset(self, i, k)
    end
  end
  for j = i + 1, #self do rawset(self, j, nil) end
  return self
end

-- new(codes, {K = size, multiset = false})
local function new(codes, opts, level)
  level = level or 2
  opts = opts or {}
  if type(opts) ~= "table" then fail("CodeSet: options must be a table, got " .. type(opts), level) end
  argcheck.keys("CodeSet", opts, { "K", "multiset" })
  if opts.K ~= nil and (type(opts.K) ~= "number" or opts.K % 1 ~= 0 or opts.K < 1) then
    fail("CodeSet: K must be a positive integer, got " .. tostring(opts.K), level)
  end
  local list = as_list("CodeSet", codes, level)
  local self = setmetatable({ K = opts.K, multiset = opts.multiset or false, counts = {}, n = 0 }, CodeSet)
  for _, k in ipairs(list) do
    check_code("CodeSet", k, self.K, level)
    if not self.multiset and self.counts[k] then
      fail(string.format("CodeSet: code %d appears twice in a set (use {multiset = true})", k), level)
    end
    self.counts[k] = (self.counts[k] or 0) + 1
    self.n = self.n + 1
  end
  return finish(self)
end

function CodeSet.new(codes, opts) return new(codes, opts, 3) end

local function like(self) return setmetatable({ K = self.K, multiset = self.multiset, counts = {}, n = 0 }, CodeSet) end


function CodeSet:clone()
  local c = like(self)
  for k, m in pairs(self.counts) do c.counts[k] = m end
  c.n = self.n
  return finish(c)
end

function CodeSet:size() return self.n end
CodeSet.__len = CodeSet.size

function CodeSet:count(k) return self.counts[k] or 0 end
function CodeSet:contains(k) return (self.counts[k] or 0) > 0 end

-- Sorted list of codes, repeated by multiplicity.
function CodeSet:totable()
  local keys = {}
  for k in pairs(self.counts) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    for _ = 1, self.counts[k] do out[#out + 1] = k end
  end
  return out
end

-- Distinct codes, sorted.
function CodeSet:distinct()
  local keys = {}
  for k in pairs(self.counts) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

function CodeSet:tensor() return tensor.tensor(self:totable(), "int64") end

function CodeSet:add(codes)
  local out = self:clone()
  for _, k in ipairs(as_list("CodeSet:add", codes, 2)) do
    check_code("CodeSet:add", k, self.K, 2)
    if not out.multiset and out.counts[k] then
      fail(string.format("CodeSet:add: code %d is already in the set", k), 2)
    end
    out.counts[k] = (out.counts[k] or 0) + 1
    out.n = out.n + 1
  end
  return finish(out)
end

function CodeSet:remove(codes)
  local out = self:clone()
  for _, k in ipairs(as_list("CodeSet:remove", codes, 2)) do
    if not out.counts[k] then fail(string.format("CodeSet:remove: code %s is not in the set", tostring(k)), 2) end
    out.counts[k] = out.counts[k] > 1 and out.counts[k] - 1 or nil
    out.n = out.n - 1
  end
  return finish(out)
end

function CodeSet:replace(old, new_code)
  if not self.counts[old] then
    fail(string.format("CodeSet:replace: code %s is not in the set", tostring(old)), 2)
  end
  check_code("CodeSet:replace", new_code, self.K, 2)
  if not self.multiset and self.counts[new_code] and new_code ~= old then
    fail(string.format("CodeSet:replace: code %d is already in the set", new_code), 2)
  end
  return self:remove({ old }):add({ new_code })
end

-- other as a CodeSet of self's kind (a list, tensor or number is converted); a set and a
-- multiset do not mix
local function as_codeset(self, other, level)
  if getmetatable(other) ~= CodeSet then return new(other, { K = self.K, multiset = self.multiset }, level + 1) end
  if other.multiset ~= self.multiset then
    fail(string.format("CodeSet: cannot combine a %s with a %s", self.multiset and "multiset" or "set",
      other.multiset and "multiset" or "set"), level + 1)
  end
  return other
end

-- Multiset union takes the larger multiplicity of each code; intersection the smaller.
function CodeSet:union(other)
  local o = as_codeset(self, other, 2)
  local out = self:clone()
  for k, m in pairs(o.counts) do
    local have = out.counts[k] or 0
    if m > have then
      out.counts[k] = m
      out.n = out.n + m - have
    end
  end
  return finish(out)
end

-- a new CodeSet of self's kind: each code of self with multiplicity f(in self, in other), if > 0
local function pointwise(self, o, f)
  local out = like(self)
  for k, m in pairs(self.counts) do
    local v = f(m, o.counts[k] or 0)
    if v > 0 then
      out.counts[k] = v
      out.n = out.n + v
    end
  end
  return finish(out)
end

function CodeSet:intersection(other) return pointwise(self, as_codeset(self, other, 2), math.min) end

-- Multiset sum: each code's multiplicities add up (a set's sum is refused when they share a code;
-- use union).
function CodeSet:sum(other)
  local o = as_codeset(self, other, 2)
  local out = self:clone()
  for k, m in pairs(o.counts) do
    if not out.multiset and out.counts[k] then
      fail(string.format("CodeSet:sum: code %d is in both sets (a set holds it once; use union)", k), 2)
    end
    out.counts[k] = (out.counts[k] or 0) + m
    out.n = out.n + m
  end
  return finish(out)
end

-- The codes of self not in other (multiplicities subtract, down to 0); a code of other that
-- self lacks is ignored.
function CodeSet:difference(other)
  return pointwise(self, as_codeset(self, other, 2), function(m, n) return m - n end)
end

-- What to take out of self and put in to reach other (with multiplicities), both sorted.
local function check_other(fname, other)
  if getmetatable(other) ~= CodeSet then
    fail(string.format("%s: expected a CodeSet, got %s", fname, type(other)), 3)
  end
end

function CodeSet:diff(other)
  check_other("diff", other)
  local removals, additions = {}, {}
  for _, k in ipairs(self:distinct()) do
    for _ = 1, self.counts[k] - math.min(self.counts[k], other.counts[k] or 0) do removals[#removals + 1] = k end
  end
  for _, k in ipairs(other:distinct()) do
    for _ = 1, other.counts[k] - math.min(other.counts[k], self.counts[k] or 0) do additions[#additions + 1] = k end
  end
  return removals, additions
end

function CodeSet:equals(other)
  check_other("equals", other)
  if self.n ~= other.n then return false end
  for k, m in pairs(self.counts) do
    if other.counts[k] ~= m then return false end
  end
  return true
end

-- the operators' left side must be a CodeSet (`{1} + s` has no K or kind to go by)
local function operand(op, a)
  if getmetatable(a) ~= CodeSet then
    fail(string.format("CodeSet %s: the left operand must be a CodeSet, got %s", op, type(a)), 3)
  end
  return a
end
CodeSet.__add = function(a, b)
  a = operand("+", a)
  if a.multiset then return a:sum(b) end
  return a:union(as_codeset(a, b, 2))
end
CodeSet.__mul = function(a, b) return operand("*", a):intersection(b) end
CodeSet.__sub = function(a, b) return operand("-", a):difference(b) end
CodeSet.__eq = function(a, b) return a:equals(b) end

CodeSet.__tostring = function(self)
  local parts = {}
  for _, k in ipairs(self:distinct()) do
    local m = self.counts[k]
    parts[#parts + 1] = m > 1 and string.format("%d×%d", k, m) or tostring(k)
  end
  return string.format("%s{%s}", self.multiset and "multiset" or "set", table.concat(parts, ", "))
end

-- One CodeSet per row of a B x L int64 tensor of codes.
function CodeSet.from_rows(codes, opts)
  if not tensor.is_tensor(codes) or codes:dim() ~= 2 then
    error("CodeSet.from_rows: expected a B x L tensor of codes", 2)
  end
  local out = {}
  for b = 1, codes:size(1) do out[b] = new(codes:select(1, b):totable(), opts, 3) end
  return out
end

-- B x L int64 tensor from a list of CodeSets of equal size (each row sorted).
function CodeSet.to_rows(sets)
  if type(sets) ~= "table" or #sets == 0 then error("CodeSet.to_rows: expected a non-empty list of CodeSets", 2) end
  for i = 1, #sets do
    if getmetatable(sets[i]) ~= CodeSet then
      error(string.format("CodeSet.to_rows: entry %d is %s, not a CodeSet", i, type(sets[i])), 2)
    end
  end
  local rows, L = {}, nil
  for i, s in ipairs(sets) do
    rows[i] = s:totable()
    L = L or #rows[i]
    if #rows[i] ~= L then
      error(string.format("CodeSet.to_rows: set %d has %d codes, set 1 has %d", i, #rows[i], L), 2)
    end
  end
  return tensor.tensor(rows, "int64")
end

CodeSet.is_codeset = function(x) return getmetatable(x) == CodeSet end

-- pivq.CodeSet(codes, opts) constructs, like CodeSet.new
setmetatable(CodeSet, { __call = function(_, codes, opts) return new(codes, opts, 3) end })

return CodeSet
