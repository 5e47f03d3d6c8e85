-- pivq.provenance: where each sample came from (issue 20). pivq.sample.codes returns it beside
-- the codes:
--
--   local codes, prov = pivq.sample.codes("pair", m:bank(), 8, {seed = 1})
--   prov.strategy, prov.seed          -- "pair", 1
--   prov:parents(3)                   -- {1234, 877}: sample 3's parents, 1-based training indices
--   prov:taken(3)                     -- {{codes from parent 1}, {codes from parent 2}} (sorted)
--   prov:describe(3)                  -- one line for the REPL; print(prov) shows the first few
--   prov:json_table({files =, ...})   -- the `pivq sample --provenance` document
--
-- A strategy MAY return provenance as a second value: a list of n entries, one per sample,
-- each {parents = {i, ...}, taken = {{codes}, ...}} plus any fields of its own (numbers,
-- strings, lists of numbers: `exchanged`, `path_seed`, ...). parents = {} says "no parents"
-- (marginal, uniform). The check (pivq.provenance.check) refuses indices outside the bank,
-- a code said to come from a parent that does not hold it, and taken codes that are not the
-- sample's; a sample's codes that no parent gave are listed as `other`. A strategy that returns
-- nothing gets prov.recorded = false ("the strategy recorded no provenance"), never invented
-- parents.
local tensor = require "pivq.core.tensor"

local M = {}

local Provenance = {}
Provenance.__index = Provenance
M.Provenance = Provenance

-- Sorted copy of a list of numbers.
local function sorted(list)
  local out, in_order = {}, true
  for i, v in ipairs(list) do
    out[i] = v
    if i > 1 and v < out[i - 1] then in_order = false end
  end
  if not in_order then table.sort(out) end -- the rows of the built-ins come sorted: no sort
  return out
end

-- counts[k] of a list of codes
local function counts_of(list)
  local c = {}
  for _, k in ipairs(list) do c[k] = (c[k] or 0) + 1 end
  return c
end

-- M.attribute(row, parent_rows) -> taken, other: each code of row (a list) given to the first
-- parent (in order) that still holds an unused copy of it; codes no parent holds go to other.
-- For an exchange path from A to B this is exactly "kept from A, brought in from B".
local function code_list(fname, what, list)
  if tensor.is_tensor(list) then
    if list:dim() ~= 1 then error(string.format("%s: %s must be a 1-D tensor or list of codes", fname, what), 3) end
    list = list:totable()
  end
  if type(list) ~= "table" then
    error(string.format("%s: %s must be a list of codes, got %s", fname, what, type(list)), 3)
  end
  for i, k in ipairs(list) do
    if type(k) ~= "number" or k % 1 ~= 0 or k < 1 then
      error(string.format("%s: %s[%d] must be a positive integer code, got %s", fname, what, i, tostring(k)), 3)
    end
  end
  return list
end

function M.attribute(row, parent_rows)
  row = code_list("provenance.attribute", "row", row)
  if type(parent_rows) ~= "table" then
    error("provenance.attribute: parent_rows must be a list of code lists, got " .. type(parent_rows), 2)
  end
  local rows = {}
  for p = 1, #parent_rows do
    rows[p] = code_list("provenance.attribute", string.format("parent_rows[%d]", p), parent_rows[p])
  end
  parent_rows = rows
  local left = {}
  for p, pr in ipairs(parent_rows) do left[p] = counts_of(pr) end
  local taken, other = {}, {}
  for p = 1, #parent_rows do taken[p] = {} end
  for _, k in ipairs(sorted(row)) do
    local given = false
    for p = 1, #parent_rows do
      if (left[p][k] or 0) > 0 then
        left[p][k] = left[p][k] - 1
        local t = taken[p]
        t[#t + 1] = k
        given = true
        break
      end
    end
    if not given then other[#other + 1] = k end
  end
  return taken, other
end

-- M.check(name, entries, codes, bank) -> a Provenance; raises naming the strategy and sample.
function M.check(name, entries, codes, bank, opts)
  if type(name) ~= "string" then error("provenance.check: name must be a strategy name, got " .. type(name), 2) end
  if not tensor.is_tensor(codes) or codes:dim() ~= 2 or codes:dtype() ~= "int64" then
    error("provenance.check: codes must be an n x L int64 tensor", 2)
  end
  if type(bank) ~= "table" or not tensor.is_tensor(bank.codes) or bank.codes:dim() ~= 2
    or bank.codes:dtype() ~= "int64" then
    error("provenance.check: bank must be a code bank {codes = N x L int64 tensor, ...}", 2)
  end
  if type(opts) ~= "table" then error("provenance.check: opts must be the strategy's options table", 2) end
  local what = string.format("sample '%s'", name)
  local n, N = codes:size(1), bank.codes:size(1)
  local prov = setmetatable({ strategy = name, seed = opts.seed, n = n, recorded = entries ~= nil,
    samples = {} }, Provenance)
  if entries == nil then return prov end
  if type(entries) ~= "table" or #entries ~= n then
    error(string.format("%s: provenance must be a list of %d entries (one per sample), got %s", what, n,
      type(entries) == "table" and (#entries .. " entries") or type(entries)), 3)
  end
  -- rows read through the data pointers (a select and totable per row cost more than the draw)
  local sample_codes, bank_codes = codes:contiguous(), bank.codes:contiguous()
  local sp, bp, L, BL = sample_codes:data_ptr(), bank_codes:data_ptr(), codes:size(2), bank.codes:size(2)
  local function row_of(p, width, i)
    local out = {}
    for j = 1, width do out[j] = tonumber(p[(i - 1) * width + j - 1]) end
    return out
  end
  -- code counters reused from sample to sample (arrays over 1..K, zeroed after each use: a fresh
  -- hash table per row cost more than the rest of the check)
  local rowc, have = {}, {}
  for k = 1, math.min(type(bank.K) == "number" and bank.K or 0, 65536) do rowc[k], have[k] = 0, 0 end
  local function count(c, list)
    for _, k in ipairs(list) do c[k] = (c[k] or 0) + 1 end
  end
  local function clear(c, list)
    for _, k in ipairs(list) do c[k] = 0 end
  end
  for s = 1, n do
    local e = entries[s]
    local function bad(msg, ...) error(string.format("%s: provenance of sample %d: " .. msg, what, s, ...), 4) end
    if type(e) ~= "table" or type(e.parents) ~= "table" then bad("needs parents = {index, ...}") end
    local row = row_of(sp, L, s)
    count(rowc, row)
    local taken = e.taken or {}
    if type(taken) ~= "table" then bad("taken must be a list of code lists, got %s", type(taken)) end
    local parent_rows, out_taken = {}, {}
    for p, i in ipairs(e.parents) do
      if type(i) ~= "number" or i % 1 ~= 0 or i < 1 or i > N then
        bad("parent %d must be a training index in 1..%d, got %s", p, N, tostring(i))
      end
      parent_rows[p] = row_of(bp, BL, i)
      count(have, parent_rows[p])
      local t = taken[p] or {}
      if type(t) ~= "table" then bad("taken[%d] must be a list of codes, got %s", p, type(t)) end
      for _, k in ipairs(t) do
        if type(k) ~= "number" or (have[k] or 0) < 1 then
          bad("code %s is said to come from parent %d (training image %d), which does not hold it", tostring(k), p, i)
        end
        have[k] = have[k] - 1
        if (rowc[k] or 0) < 1 then bad("code %s is said to be taken but the sample does not hold it", tostring(k)) end
        rowc[k] = rowc[k] - 1
      end
      clear(have, parent_rows[p])
      out_taken[p] = sorted(t)
    end
    local other = {}
    for _, k in ipairs(sorted(row)) do
      if rowc[k] > 0 then
        other[#other + 1] = k
        rowc[k] = rowc[k] - 1
      end
    end
    clear(rowc, row)
    local rec = { parents = {}, taken = out_taken, other = other }
    for p, i in ipairs(e.parents) do rec.parents[p] = i end
    for k, v in pairs(e) do
      if k ~= "parents" and k ~= "taken" and k ~= "other" then
        local t = type(v)
        if type(k) ~= "string" or (t ~= "number" and t ~= "string" and t ~= "boolean" and t ~= "table") then
          bad("field %s must be named by a string and hold a number, string, boolean or list, got %s", tostring(k), t)
        end
        rec[k] = v
      end
    end
    prov.samples[s] = rec
  end
  return prov
end

local function check_index(self, fname, s)
  if type(s) ~= "number" or s % 1 ~= 0 or s < 1 or s > self.n then
    error(string.format("provenance:%s: sample must be in 1..%d, got %s", fname, self.n, tostring(s)), 3)
  end
  if not self.recorded then
    error(string.format("provenance:%s: strategy '%s' recorded no provenance", fname, self.strategy), 3)
  end
  return self.samples[s]
end

function Provenance:parents(s) return check_index(self, "parents", s).parents end
function Provenance:taken(s) return check_index(self, "taken", s).taken end

-- true when the strategy recorded that its samples have no parents (marginal, uniform, ...)
function Provenance:parentless()
  if not self.recorded then return false end
  for _, r in ipairs(self.samples) do
    if #r.parents > 0 then return false end
  end
  return true
end

function Provenance:describe(s)
  local r = check_index(self, "describe", s)
  if #r.parents == 0 then
    return string.format("sample %d (%s, seed %s): no parents (%d codes from the strategy)", s, self.strategy,
      tostring(self.seed), #r.other)
  end
  local parts = {}
  for p, i in ipairs(r.parents) do parts[p] = string.format("#%d (%d codes)", i, #r.taken[p]) end
  local extra = #r.other > 0 and string.format(", %d from no parent", #r.other) or ""
  return string.format("sample %d (%s, seed %s): parents %s%s", s, self.strategy, tostring(self.seed),
    table.concat(parts, ", "), extra)
end

Provenance.__tostring = function(self)
  if not self.recorded then
    return string.format("provenance of %d samples (%s, seed %s): the strategy recorded none", self.n,
      self.strategy, tostring(self.seed))
  end
  local lines = { string.format("provenance of %d samples (%s, seed %s)", self.n, self.strategy, tostring(self.seed)) }
  for s = 1, math.min(self.n, 5) do lines[#lines + 1] = "  " .. self:describe(s) end
  if self.n > 5 then lines[#lines + 1] = string.format("  ... (prov:describe(i) for the others)") end
  return table.concat(lines, "\n")
end

-- The JSON document: opts.files (training file names by index, or nil), opts.codes (the n x L
-- sampled codes), and anything in opts.meta copied to the top level (checkpoint, dataset, ...).
function Provenance:json_table(opts)
  opts = require("pivq.core.argcheck").options("provenance:json_table", opts, { "files", "codes", "meta" })
  for _, key in ipairs({ "files", "meta" }) do
    if opts[key] ~= nil and type(opts[key]) ~= "table" then
      error(string.format("provenance:json_table: %s must be a table, got %s", key, type(opts[key])), 2)
    end
  end
  if opts.codes ~= nil and (not tensor.is_tensor(opts.codes) or opts.codes:dim() ~= 2
    or opts.codes:size(1) ~= self.n) then
    error(string.format("provenance:json_table: codes must be the %d x L sampled codes", self.n), 2)
  end
  local doc = { strategy = self.strategy, seed = self.seed, n = self.n, index_base = 1,
    parent_index = "row of the training split (1-based, as the CLI shows it)" }
  for k, v in pairs(opts.meta or {}) do doc[k] = v end
  if not self.recorded then
    doc.note = string.format("strategy '%s' recorded no provenance (a strategy may return it as a second value)",
      self.strategy)
    return doc
  end
  if self:parentless() then
    doc.note = string.format("strategy '%s' draws no parents: its codes come from no particular training image",
      self.strategy)
  end
  local rows = tensor.is_tensor(opts.codes) and opts.codes or nil
  doc.samples = {}
  for s, r in ipairs(self.samples) do
    local e = { sample = s, other_codes = r.other, parents = {} }
    if rows then e.codes = rows:select(1, s):totable() end
    for p, i in ipairs(r.parents) do
      e.parents[p] = { index = i, file = opts.files and opts.files[i] or nil, codes = r.taken[p] }
    end
    for k, v in pairs(r) do
      if k ~= "parents" and k ~= "taken" and k ~= "other" then e[k] = v end
    end
    doc.samples[s] = e
  end
  return doc
end

return M
