-- pivq.report (what `pivq eval` and `pivq reproduce` measure) and the prior-free baseline
-- samplers it uses: slot–code dependence against hand-computed and entropy-identity references.
local pivq = require "pivq"

local function codes(rows) return pivq.tensor(rows, "int64") end

-- I(S; C) / log L computed the other way round: H(S) + H(C) - H(S, C) from the pairs.
local function nmi_by_entropies(rows)
  local n, L = 0, #rows[1]
  local ps, pc, psc = {}, {}, {}
  for _, row in ipairs(rows) do
    for s, k in ipairs(row) do
      n = n + 1
      ps[s] = (ps[s] or 0) + 1
      pc[k] = (pc[k] or 0) + 1
      psc[s .. ":" .. k] = (psc[s .. ":" .. k] or 0) + 1
    end
  end
  local function H(t)
    local h = 0
    for _, c in pairs(t) do h = h - (c / n) * math.log(c / n) end
    return h
  end
  return (H(ps) + H(pc) - H(psc)) / math.log(L)
end

describe("pivq.report.slot_code_stats", function()
  it("is 1 when every code names its slot and 0 when codes ignore slots (hand-computed)", function()
    local owned = pivq.report.slot_code_stats(codes({ { 1, 2 }, { 1, 2 }, { 3, 4 } }), 4)
    assert.is_true(math.abs(owned.nmi - 1) < 1e-12)
    assert.are.equal(1, owned.owned)
    local free = pivq.report.slot_code_stats(codes({ { 1, 2 }, { 2, 1 } }), 4)
    assert.is_true(math.abs(free.nmi) < 1e-12)
    assert.are.equal(0, free.owned)
  end)

  it("matches H(S) + H(C) - H(S,C) on a mixed case, and counts owned codes by the 90% rule", function()
    local rows = { { 1, 2, 5 }, { 1, 3, 5 }, { 2, 1, 5 }, { 1, 3, 4 }, { 1, 3, 5 }, { 1, 3, 5 },
      { 1, 3, 5 }, { 1, 3, 5 }, { 1, 3, 5 }, { 1, 3, 5 } }
    local r = pivq.report.slot_code_stats(codes(rows), 6)
    assert.is_true(math.abs(r.nmi - nmi_by_entropies(rows)) < 1e-12)
    -- code 1: 9 of 10 in slot 1 (owned); 2: half/half; 3: 8/8 in slot 2; 4: 1/1; 5: 9/9
    assert.is_true(math.abs(r.owned - 4 / 5) < 1e-12)
  end)

  it("rejects bad input naming itself", function()
    local ok, err = pcall(pivq.report.slot_code_stats, pivq.zeros(3), 4)
    assert.is_false(ok)
    assert.matches("slot_code_stats", err)
    ok, err = pcall(pivq.report.slot_code_stats, codes({ { 1, 9 } }), 4)
    assert.is_false(ok)
    assert.matches("out of range", err)
  end)
end)

describe("prior-free sampling baselines", function()
  it("uniform: distinct sorted codes for sets, roughly uniform frequencies", function()
    local bank = { codes = codes({ { 1, 2, 3, 4 } }), K = 8, multiset = false }
    local s = pivq.sample.codes("uniform", bank, 2000, { seed = 3 })
    assert.are.same({ 2000, 4 }, s:size())
    local counts = pivq.vq.code_counts(s, 8):totable()
    for k = 1, 8 do
      -- 8000 draws over 8 codes: 1000 each; 5 standard deviations is ~150
      assert.is_true(math.abs(counts[k] - 1000) < 160, "code " .. k .. ": " .. counts[k])
    end
    for _, row in ipairs(s:totable()) do
      for i = 2, 4 do assert.is_true(row[i] > row[i - 1]) end
    end
  end)

  it("slot_marginal: slot i only takes codes seen in slot i, at their frequencies", function()
    local bank = { codes = codes({ { 3, 5 }, { 3, 6 }, { 3, 5 }, { 3, 5 } }), K = 8, multiset = true }
    local s = pivq.sample.codes("slot_marginal", bank, 4000, { seed = 4 })
    assert.are.same({ 4000, 2 }, s:size())
    assert.are.equal(4000, s:select(2, 1):eq(3):sum():item())
    local fives = s:select(2, 2):eq(5):sum():item()
    assert.are.equal(4000, fives + s:select(2, 2):eq(6):sum():item())
    assert.is_true(math.abs(fives / 4000 - 0.75) < 0.035, "share of 5: " .. fives / 4000)
  end)
end)
