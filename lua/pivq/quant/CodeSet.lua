-- pivq.CodeSet: one image's codes as an unordered collection of 1-based codebook indices.
-- A "set" (matching quantization) holds distinct codes; a "multiset" (nearest quantization)
-- may repeat them. Printed sorted; a multiset shows multiplicities as index×count.
--
--   local s = pivq.CodeSet({17, 3, 230}, {K = 512})
--   s - {17}            -- remove codes (one occurrence each)
--   s + {42}            -- add codes (a set refuses a code it already has)
--   s:replace(3, 99)    -- swap one code for another
--   s:union(t), s:intersection(t), s:contains(3), s:count(3), s:tensor()
local tensor = require "pivq.core.tensor"

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

-- new(codes, {K = size, multiset = false})
local function new(codes, opts, level)
  level = level or 2
  opts = opts or {}
  if type(opts) ~= "table" then fail("CodeSet: options must be a table, got " .. type(opts), level) end
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
  return self
end

function CodeSet.new(codes, opts) return new(codes, opts, 3) end

local function like(self) return setmetatable({ K = self.K, multiset = self.multiset, counts = {}, n = 0 }, CodeSet) end

function CodeSet:clone()
  local c = like(self)
  for k, m in pairs(self.counts) do c.counts[k] = m end
  c.n = self.n
  return c
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
  return out
end

function CodeSet:remove(codes)
  local out = self:clone()
  for _, k in ipairs(as_list("CodeSet:remove", codes, 2)) do
    if not out.counts[k] then fail(string.format("CodeSet:remove: code %s is not in the set", tostring(k)), 2) end
    out.counts[k] = out.counts[k] > 1 and out.counts[k] - 1 or nil
    out.n = out.n - 1
  end
  return out
end

function CodeSet:replace(old, new_code)
  return self:remove({ old }):add({ new_code })
end

-- Multiset union takes the larger multiplicity of each code; intersection the smaller.
function CodeSet:union(other)
  local o = getmetatable(other) == CodeSet and other or new(other, { K = self.K, multiset = self.multiset }, 3)
  local out = self:clone()
  for k, m in pairs(o.counts) do
    local have = out.counts[k] or 0
    if m > have then
      out.counts[k] = m
      out.n = out.n + m - have
    end
  end
  return out
end

function CodeSet:intersection(other)
  local o = getmetatable(other) == CodeSet and other or new(other, { K = self.K, multiset = self.multiset }, 3)
  local out = like(self)
  for k, m in pairs(self.counts) do
    local both = math.min(m, o.counts[k] or 0)
    if both > 0 then
      out.counts[k] = both
      out.n = out.n + both
    end
  end
  return out
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

CodeSet.__add = function(a, b) return a:add(b) end
CodeSet.__sub = function(a, b) return a:remove(b) end
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
