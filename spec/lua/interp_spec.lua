-- Code sets, interpolation paths and sampling strategies: invariants checked frame by frame.
local pivq = require "pivq"
local CodeSet = pivq.CodeSet

local function random_set(g, K, L)
  local perm = pivq.randperm(K, { generator = g })
  local codes = {}
  for i = 1, L do codes[i] = perm[i] end
  return CodeSet(codes, { K = K })
end

-- number of codes that differ between consecutive frames (multiset-aware)
local function changed(a, b)
  local rem = a:diff(b)
  return #rem
end

local function check_path(A, B, path, planned)
  assert.is_true(path[1]:equals(A), "first frame is A")
  assert.is_true(path[#path]:equals(B), "last frame is B")
  local common = A:intersection(B)
  for i, f in ipairs(path) do
    assert.are.equal(A:size(), f:size(), "frame " .. i .. " keeps L codes")
    -- codes common to A and B never move (with their multiplicities)
    for _, k in ipairs(common:distinct()) do
      assert.is_true(f:count(k) >= common:count(k), "frame " .. i .. " keeps common code " .. k)
    end
    if i > 1 and planned then
      assert.are.equal(planned[i - 1], changed(path[i - 1], f), "step " .. (i - 1) .. " changes as planned")
    end
  end
end

describe("pivq.CodeSet", function()
  it("prints sets sorted and multisets with multiplicities", function()
    assert.are.equal("set{3, 17, 230}", tostring(CodeSet({ 230, 3, 17 })))
    assert.are.equal("multiset{3×2, 17}", tostring(CodeSet({ 3, 17, 3 }, { multiset = true })))
  end)

  it("supports set operations", function()
    local s = CodeSet({ 1, 2, 3 }, { K = 10 })
    assert.are.same({ 1, 3 }, (s - { 2 }):totable())
    assert.are.same({ 1, 2, 3, 9 }, (s + { 9 }):totable())
    assert.are.same({ 1, 3, 7 }, s:replace(2, 7):totable())
    assert.are.same({ 1, 2, 3, 4 }, s:union(CodeSet({ 3, 4 })):totable())
    assert.are.same({ 3 }, s:intersection(CodeSet({ 3, 4 })):totable())
    assert.is_true(s:contains(2))
    assert.is_false(s:contains(4))
  end)

  it("refuses duplicates in a set and unknown removals (the strict methods)", function()
    assert.has_error(function() return CodeSet({ 1, 1 }) end)
    assert.has_error(function() return CodeSet({ 1, 2 }):add({ 2 }) end, "CodeSet:add: code 2 is already in the set")
    assert.has_error(function() return CodeSet({ 1, 2 }):remove({ 5 }) end, "CodeSet:remove: code 5 is not in the set")
    assert.has_error(function() return CodeSet({ 1, 2 }):replace(5, 6) end, "CodeSet:replace: code 5 is not in the set")
    assert.has_error(function() return CodeSet({ 1, 2 }):replace(1, 2) end,
      "CodeSet:replace: code 2 is already in the set")
    assert.has_error(function() return CodeSet({ 0 }) end)
    assert.has_error(function() return CodeSet({ 11 }, { K = 10 }) end)
  end)

  -- the operators against a brute-force reference: multiplicity tables combined code by code
  it("behaves like a set: #, indexing and ipairs in order, +, *, - and == by the documented rules", function()
    local function counts(list)
      local c = {}
      for _, k in ipairs(list) do c[k] = (c[k] or 0) + 1 end
      return c
    end
    local function expand(c)
      local out = {}
      for k = 1, 20 do for _ = 1, c[k] or 0 do out[#out + 1] = k end end
      return out
    end
    local function combine(a, b, f)
      local ca, cb, out = counts(a), counts(b), {}
      for k = 1, 20 do out[k] = math.max(0, f(ca[k] or 0, cb[k] or 0)) end
      return expand(out)
    end
    local g = pivq.Generator(7)
    for trial = 1, 40 do
      local multiset = trial % 2 == 0
      local function draw()
        local n = pivq.randint(0, 8, { 1 }, { generator = g })[1]
        local list, seen = {}, {}
        for _ = 1, n do
          local k = pivq.randint(1, 13, { 1 }, { generator = g })[1]
          if multiset or not seen[k] then list[#list + 1] = k end
          seen[k] = true
        end
        return list
      end
      local a, b = draw(), draw()
      local A, B = CodeSet(a, { K = 20, multiset = multiset }), CodeSet(b, { K = 20, multiset = multiset })
      assert.are.equal(#a, #A)
      local sorted = expand(counts(a))
      local walked = {}
      for i, k in ipairs(A) do walked[i] = k end
      assert.are.same(sorted, walked)
      if #a > 0 then assert.are.equal(sorted[1], A[1]) end
      local plus = multiset and function(x, y) return x + y end or function(x, y) return math.max(x, y) end
      assert.are.same(combine(a, b, plus), (A + B):totable())
      assert.are.same(combine(a, b, math.min), (A * B):totable())
      assert.are.same(combine(a, b, function(x, y) return x - y end), (A - B):totable())
      assert.are.same(combine(a, b, function(x, y) return x - y end), (A - b):totable()) -- a plain list
      assert.is_true(A + B == B + A)
      assert.are.equal(#combine(a, b, plus), #(A + B))
    end
  end)

  it("follows the README's examples; a set and a multiset do not mix", function()
    local s = CodeSet({ 3, 17, 41 }, { K = 512 })
    assert.are.equal(3, #s)
    assert.are.equal("set{3, 41, 230}", tostring(s - { 17 } + { 230 }))
    assert.are.equal("set{3, 41}", tostring(s - { 17, 99 })) -- 99 is not there: ignored
    assert.are.equal("set{3, 17, 41}", tostring(s + { 17 })) -- union: 17 once
    assert.are.equal("set{17}", tostring(s * { 17, 18 }))
    assert.are.equal("set{3, 41, 99}", tostring(s:replace(17, 99)))
    assert.is_true(s == CodeSet({ 41, 17, 3 }, { K = 512 }))
    assert.is_false(s == CodeSet({ 41, 17 }, { K = 512 }))
    local m = CodeSet({ 3, 3 }, { multiset = true })
    assert.has_error(function() return s + m end, "CodeSet: cannot combine a set with a multiset")
    assert.has_error(function() return s:sum({ 3 }) end,
      "CodeSet:sum: code 3 is in both sets (a set holds it once; use union)")
  end)
end)

describe("pivq.interp", function()
  it("lists the built-in strategies with their docs", function()
    local l = pivq.interp.list()
    for _, name in ipairs({ "random", "paired", "smoothest", "lerp" }) do
      assert.is_string(l[name])
    end
  end)

  it("random paths satisfy the invariants, one swap per step, and depend on the seed", function()
    local g = pivq.Generator(5)
    for _ = 1, 20 do
      local A, B = random_set(g, 40, 12), random_set(g, 40, 12)
      local d = #A:diff(B)
      local path = pivq.interp.path("random", A, B, { seed = 1 })
      assert.are.equal(d + 1, #path)
      local ones = {}
      for i = 1, d do ones[i] = 1 end
      check_path(A, B, path, ones)
    end
    local A, B = CodeSet({ 1, 2, 3, 4, 5, 6 }), CodeSet({ 7, 8, 9, 10, 11, 12 })
    local p1 = pivq.interp.path("random", A, B, { seed = 1 })
    local p1b = pivq.interp.path("random", A, B, { seed = 1 })
    local p2 = pivq.interp.path("random", A, B, { seed = 2 })
    local same, differs = true, false
    for i = 1, #p1 do
      same = same and p1[i]:equals(p1b[i])
      differs = differs or not p1[i]:equals(p2[i])
    end
    assert.is_true(same)
    assert.is_true(differs)
  end)

  it("groups swaps into the requested number of steps", function()
    local A, B = CodeSet({ 1, 2, 3, 4, 5, 6, 7 }), CodeSet({ 1, 12, 13, 14, 15, 16, 17 })
    local path = pivq.interp.path("random", A, B, { steps = 4, seed = 3 })
    assert.are.equal(5, #path)
    check_path(A, B, path, { 2, 2, 1, 1 })
  end)

  it("handles multisets with multiplicities", function()
    local A = CodeSet({ 1, 1, 1, 2, 3 }, { multiset = true })
    local B = CodeSet({ 1, 4, 4, 2, 5 }, { multiset = true })
    local path = pivq.interp.path("random", A, B, { seed = 9 })
    assert.are.equal(4, #path) -- 1×2 and 3 leave; 4×2 and 5 arrive
    check_path(A, B, path, { 1, 1, 1 })
  end)

  it("paired pairs A's codes with B's by optimal assignment and swaps the closest pairs first", function()
    -- 1-D code embeddings: A = {1, 2, 3} at 0, 10, 20; B = {4, 5, 6} at 21, 9, 100
    local codebook = pivq.tensor { { 0 }, { 10 }, { 20 }, { 21 }, { 9 }, { 100 } }
    local A, B = CodeSet({ 1, 2, 3 }), CodeSet({ 4, 5, 6 })
    local path = pivq.interp.path("paired", A, B, { codebook = codebook })
    check_path(A, B, path, { 1, 1, 1 })
    -- squared distances: the optimal pairing is 1<->5 (81), 2<->4 (121), 3<->6 (6400), total
    -- 6602 (the greedy-looking 2<->5, 3<->4 costs 1 + 1 but forces 1<->6 at 10000); closest first
    assert.are.same({ 2, 3, 5 }, path[2]:totable())
    assert.are.same({ 3, 4, 5 }, path[3]:totable())
    assert.has_error(function() pivq.interp.path("paired", A, B, {}) end)
  end)

  it("smoothest takes the swap whose decoded image changes least", function()
    -- a toy decoder: the image is the codes' embeddings summed; code 9 is close to code 1
    local emb = { [1] = 0, [2] = 10, [3] = 20, [9] = 0.1, [7] = 50, [8] = 30 }
    local model = {
      decode = function(_, codes)
        local n, L = codes:size(1), codes:size(2)
        local out = pivq.zeros(n, 1)
        for i = 1, n do
          local s = 0
          for j = 1, L do s = s + emb[codes:get(i, j)] end
          out:set(i, 1, s)
        end
        return out
      end,
    }
    local A, B = CodeSet({ 1, 2, 3 }), CodeSet({ 9, 7, 8 })
    local path = pivq.interp.path("smoothest", A, B, { model = model })
    check_path(A, B, path, { 1, 1, 1 })
    -- best first step: any removal paired with code 9 changes by |emb(9) - emb(r)|, 1 -> 9 is 0.1
    assert.are.same({ 2, 3, 9 }, path[2]:totable())
  end)

  it("registers a strategy from a file and checks what strategies return", function()
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write([[
local pivq = require "pivq"
pivq.interp.register("reverse_sorted", function(A, B, opts)
  local rem, add = A:diff(B)
  local swaps = {}
  for i = 1, #rem do swaps[i] = { remove = rem[#rem + 1 - i], add = add[i] } end
  return pivq.interp.path_from_swaps(A, swaps, opts.steps)
end, "largest codes leave first")
pivq.interp.register("broken", function(A) return { A } end, "does not reach B")
]])
    f:close()
    local added = assert(pivq.interp.load_file(path))
    os.remove(path)
    assert.are.same({ "broken", "reverse_sorted" }, added)
    local A, B = CodeSet({ 1, 2, 3 }), CodeSet({ 4, 5, 6 })
    local p = pivq.interp.path("reverse_sorted", A, B)
    assert.are.same({ 1, 2, 4 }, p[2]:totable())
    assert.has_error(function() pivq.interp.path("broken", A, B) end,
      "interp 'broken': the path must start at A and end at B")
    assert.has_error(function() pivq.interp.path("nope", A, B) end)
  end)
end)

describe("pivq.sample", function()
  local bank = {
    codes = pivq.tensor({ { 1, 2, 3, 4 }, { 2, 3, 5, 6 }, { 7, 8, 9, 10 }, { 1, 5, 9, 11 } }, "int64"),
    K = 12,
  }

  for _, name in ipairs({ "pair", "mix", "marginal" }) do
    it(name .. " returns n x L distinct codes, deterministic by seed", function()
      local a = pivq.sample.codes(name, bank, 16, { seed = 4 })
      local b = pivq.sample.codes(name, bank, 16, { seed = 4 })
      assert.are.same({ 16, 4 }, a:size())
      assert.are.same(a:totable(), b:totable())
      for i = 1, 16 do
        local seen = {}
        for j = 1, 4 do
          local k = a:get(i, j)
          assert.is_true(k >= 1 and k <= 12)
          assert.is_nil(seen[k], "codes of a sample are distinct")
          seen[k] = true
        end
      end
    end)
  end

  it("mix draws only from its parents' codes; marginal only from codes in the bank", function()
    local used = {}
    for i = 1, 4 do
      for j = 1, 4 do used[bank.codes:get(i, j)] = true end
    end
    for _, name in ipairs({ "mix", "marginal", "pair" }) do
      local s = pivq.sample.codes(name, bank, 32, { seed = 1 })
      for i = 1, 32 do
        for j = 1, 4 do assert.is_true(used[s:get(i, j)], name .. " drew an unseen code") end
      end
    end
  end)
end)

describe("pivq.interp.model_options", function()
  it("gives every built-in what it needs from a model: lerp re-quantizes the mixed latents", function()
    local model = pivq.PIVQ { image_size = 8, patch = 4, width = 16, heads = 2, enc_depth = 1, dec_depth = 1,
      L = 4, K = 16, c = 4, seed = 3 }
    model:train(false)
    local g = pivq.Generator(5)
    local xa, xb = pivq.rand(1, 1, 8, 8, { generator = g }), pivq.rand(1, 1, 8, 8, { generator = g })
    local user = { steps = 4, seed = 2 }
    local opts = pivq.interp.model_options(model, xa, xb, user)
    assert.are.same({ steps = 4, seed = 2 }, user) -- the caller's table is not changed
    assert.are.same({ 4, 2, model }, { opts.steps, opts.seed, opts.model })
    -- the latents are the model's own, image by image (computed here one image at a time)
    local za, zb = pivq.no_grad(function() return model:latents(xa), model:latents(xb) end)
    assert.is_true((opts.latents_a - za[1]):abs():max() < 1e-5)
    assert.is_true((opts.latents_b - zb[1]):abs():max() < 1e-5)
    -- quantize gives the codes model:encode gives (encode sorts them)
    local q = opts.quantize(opts.latents_a):view(-1):totable()
    table.sort(q)
    assert.are.same(model:encode(xa)[1]:totable(), q)
    -- lerp with these options: frame s of 4 is the quantized mix (1 - s/4) za + (s/4) zb
    local sets = model:code_sets(model:encode(pivq.cat({ xa, xb }, 1)))
    local path = pivq.interp.path("lerp", sets[1], sets[2], opts)
    assert.are.equal(5, #path)
    local mid = model.quantizer:assign(((za[1] + zb[1]) * 0.5):view(1, 4, 4)):view(-1)
    assert.is_true(path[3]:equals(CodeSet(mid, { K = 16 })))
    -- and the strategies that need only the model run too
    for _, name in ipairs({ "paired", "smoothest", "random" }) do
      check_path(sets[1], sets[2], pivq.interp.path(name, sets[1], sets[2], opts))
    end
  end)
end)
