-- The model recipes in smoke mode, through the pivq executable on a tiny model trained here.
local pivq = require "pivq"

local bin = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

describe("model recipes", function()
  local dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    pivq.train.Trainer({ out = dir, steps = 6, batch = 8, width = 32, enc_depth = 1, dec_depth = 1, heads = 2,
      patch = 7, L = 8, K = 32, c = 8, quant_start = 2, init_batches = 1, eval_images = 16, quiet = true,
      grid_every = 1000, ckpt_every = 1000 }):fit()
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("pivq interpolate writes a strip, also with a strategy from a file", function()
    local out, code = run(string.format("%s interpolate --ckpt %s/model.safetensors --a 3 --b 4 --paths 2 --steps 4"
      .. " --out %s/strip.png", bin, dir, dir))
    assert.are.equal(0, code, out)
    assert.matches("2 paths of %d+ frames", out)
    local img = assert(pivq.image.load(dir .. "/strip.png"))
    assert.are.equal(1, img:size(1))
    out, code = run(string.format("%s interpolate --ckpt %s/model.safetensors --strategy-file "
      .. "recipes/strategies/outside_in.lua --strategy outside_in --paths 1 --out %s/s2.png", bin, dir, dir))
    assert.are.equal(0, code, out)
    out, code = run(string.format("%s interpolate --ckpt %s/model.safetensors --strategy nope --out %s/x.png",
      bin, dir, dir))
    assert.are_not.equal(0, code)
    assert.matches("unknown strategy 'nope'", out)
  end)

  it("pivq sample writes a grid and the codes", function()
    for _, s in ipairs({ "pair", "mix", "marginal" }) do
      local out, code = run(string.format("%s sample --ckpt %s/model.safetensors -n 8 --strategy %s --bank-limit 200"
        .. " --out %s/g.png --save-codes %s/codes.safetensors", bin, dir, s, dir, dir))
      assert.are.equal(0, code, out)
      local t = assert(pivq.load(dir .. "/codes.safetensors"))
      assert.are.same({ 8, 8 }, t.codes:size())
    end
  end)

  it("pivq eval writes metrics JSON with PRDC of each strategy and the baseline, and compares runs", function()
    local out, code = run(string.format("%s eval --ckpt %s/model.safetensors --samples 40 --features pixels "
      .. "--test-images 60 --bank-limit 100 --strategy pair,mix --out %s/eval.json", bin, dir, dir))
    assert.are.equal(0, code, out)
    local f = assert(io.open(dir .. "/eval.json"))
    local r = require("dkjson").decode(f:read("*a"))
    f:close()
    assert.are.equal("raw pixels", r.features)
    for _, s in ipairs({ "pair", "mix", "marginal" }) do
      for _, key in ipairs({ "precision", "recall", "density", "coverage" }) do
        assert.is_number(r[s .. "_" .. key], s .. "_" .. key)
      end
    end
    assert.is_true(r.slot_nmi >= 0 and r.slot_nmi <= 1 + 1e-9)
    assert.is_true(r.K_img > 0 and r.K_img <= 8)
    -- set diagnostics: entropy in bits (at most log2 K = 5), matching vs nearest, Jaccard of 60 images' sets
    assert.is_true(r.code_entropy > 0 and r.code_entropy <= 5 + 1e-9)
    assert.is_near(5, r.code_entropy_max, 1e-12)
    assert.is_true(r.match_differ >= 0 and r.match_differ <= 1)
    assert.are.equal(60 * 59 / 2, r.jaccard.pairs)
    local total = 0
    for _, c in ipairs(r.jaccard.histogram.counts) do total = total + c end
    assert.are.equal(r.jaccard.pairs, total)
    assert.matches("Jaccard similarity of the code sets of 1770 pairs", out)
    out, code = run(string.format("%s eval --compare %s/eval.json %s/eval.json", bin, dir, dir))
    assert.are.equal(0, code, out)
    assert.matches("pair_coverage", out)
  end)

  it("pivq edit writes a before/after strip, and names an unknown attribute's alternatives", function()
    local out, code = run(string.format("%s edit --ckpt %s/model.safetensors --image 3 --attribute Trouser "
      .. "--strength 2 --train-images 300 --scale 1 --out %s/edit.png", bin, dir, dir))
    assert.are.equal(0, code, out)
    assert.matches("Trouser, strength 2: removes", out)
    local img = assert(pivq.image.load(dir .. "/edit.png"))
    assert.are.equal(2 + 4 * 30, img:size(3)) -- original | reconstruction | strength 1 | strength 2
    out, code = run(string.format("%s edit --ckpt %s/model.safetensors --attribute Hat --train-images 300 --out "
      .. "%s/x.png", bin, dir, dir))
    assert.are.equal(1, code, out)
    assert.matches("unknown class 'Hat' %(the classes: T%-shirt/top, Trouser", out)
    out, code = run(string.format("%s edit --ckpt %s/model.safetensors --attribute Bag --strength 0", bin, dir))
    assert.are_not.equal(0, code, out)
  end)

  it("pivq capacity --measure trains, caches and plots measured bits beside the formula", function()
    local cmd = string.format("%s capacity --measure --K 32 --Ls 4,8 --models matching,nearest --steps 4 --batch 8 "
      .. "--threads 1 --test-images 40 --dir %s/cap", bin, dir)
    local out, code = run(cmd)
    assert.are.equal(0, code, out)
    assert.matches("== training nearest L=8", out)
    local f = assert(io.open(dir .. "/cap/figure4.json"))
    local r = require("dkjson").decode(f:read("*a"))
    f:close()
    assert.are.equal(4, #r.rows)
    for _, row in ipairs(r.rows) do
      if row.quantizer == "matching" then
        assert.are.equal(row.L, row.K_img) -- a set: L distinct codes per image, always
        assert.is_near(pivq.capacity.bits { K = 32, L = row.L, scheme = "set" }, row.bits, 1e-9)
      else
        assert.is_true(row.K_img >= 1 and row.K_img <= row.L)
        assert.is_near(pivq.capacity.bits { K = 32, L = row.L, scheme = "distinct", K_img = row.K_img }, row.bits, 1e-9)
      end
    end
    local img = assert(pivq.image.load(dir .. "/cap/figure4.png"))
    assert.are.equal(3, img:size(1))
    assert.is_truthy(io.open(dir .. "/cap/figure4.svg"))
    -- a second run reads the cache: nothing trains
    out, code = run(cmd .. " --cached-only")
    assert.are.equal(0, code, out)
    assert.is_nil(out:match("== training"))
  end)

  local function read_json(path)
    local f = assert(io.open(path))
    local v = require("dkjson").decode(f:read("*a"))
    f:close()
    return v
  end

  it("pivq sample --provenance records each sample's parents; --with-parents draws A | sample | B", function()
    local out, code = run(string.format("%s sample --ckpt %s/model.safetensors -n 6 --strategy pair --bank-limit 200"
      .. " --seed 3 --out %s/wp.png --with-parents --provenance %s/prov.json", bin, dir, dir, dir))
    assert.are.equal(0, code, out)
    local doc = read_json(dir .. "/prov.json")
    assert.are.equal("pair", doc.strategy)
    assert.are.equal(3, doc.seed)
    assert.are.equal(6, #doc.samples)
    assert.matches("no file names", doc.file_names) -- Fashion-MNIST: parents by index only
    local bank = assert(pivq.load(dir .. "/codes.safetensors")).codes
    for _, e in ipairs(doc.samples) do
      assert.are.equal(2, #e.parents)
      for _, p in ipairs(e.parents) do
        assert.is_true(p.index >= 1 and p.index <= 200)
        local held = pivq.CodeSet(bank:select(1, p.index):totable(), { K = 32 })
        for _, k in ipairs(p.codes) do assert.is_true(held:contains(k), "code " .. k .. " of image " .. p.index) end
      end
    end
    -- one row per sample, three images wide (28 x 28 at scale 2, 2-pixel padding)
    local img = assert(pivq.image.load(dir .. "/wp.png"))
    assert.are.same({ 6 * 56 + 7 * 2, 3 * 56 + 4 * 2 }, { img:size(2), img:size(3) })
    -- a strategy without parents says so and draws the samples alone
    out, code = run(string.format("%s sample --ckpt %s/model.safetensors -n 4 --strategy marginal --bank-limit 200"
      .. " --out %s/wm.png --with-parents --provenance %s/prov2.json", bin, dir, dir, dir))
    assert.are.equal(0, code, out)
    assert.matches("strategy 'marginal' draws no parents", out)
    assert.matches("draws no parents", read_json(dir .. "/prov2.json").note)
    -- a provenance file that cannot be written fails the command
    out, code = run(string.format("%s sample --ckpt %s/model.safetensors -n 2 --bank-limit 200 --out %s/w3.png"
      .. " --provenance /nonexistent/dir/p.json", bin, dir, dir))
    assert.are_not.equal(0, code)
    assert.matches("/nonexistent/dir/p.json", out)
  end)

  it("pivq eval reports the memorisation check and --sweep-exchange the fidelity-diversity curve", function()
    local out, code = run(string.format("%s eval --ckpt %s/model.safetensors --samples 30 --features pixels "
      .. "--test-images 40 --bank-limit 100 --train-images 300 --strategy pair --out %s/em.json", bin, dir, dir))
    assert.are.equal(0, code, out)
    local r = read_json(dir .. "/em.json")
    for _, s in ipairs({ "pair", "marginal" }) do
      assert.is_true(r[s .. "_copy_share"] >= 0 and r[s .. "_copy_share"] <= 1, s)
      assert.is_number(r[s .. "_median_ratio"], s)
    end
    assert.is_number(r.copy_threshold)
    assert.is_truthy(pivq.image.load(dir .. "/em-memorisation.png"))
    out, code = run(string.format("%s eval --ckpt %s/model.safetensors --sweep-exchange --samples 30 --features "
      .. "pixels --test-images 40 --bank-limit 100 --train-images 300 --out %s/sw.json", bin, dir, dir))
    assert.are.equal(0, code, out)
    local sw = read_json(dir .. "/sw.json")
    assert.are.equal(6, #sw.rows)
    for j, f in ipairs({ 0, 0.1, 0.2, 0.3, 0.4, 0.5 }) do assert.are.equal(f, sw.rows[j].fraction) end
    for _, key in ipairs({ "precision", "recall", "density", "coverage", "copy_share" }) do
      assert.are.equal(sw.parents[key], sw.rows[1][key], key)
    end
    assert.is_truthy(pivq.image.load(dir .. "/sw.png"))
    local svg = assert(io.open(dir .. "/sw.svg")):read("*a")
    assert.matches("<svg", svg)
    out, code = run(string.format("%s eval --ckpt %s/model.safetensors --sweep-exchange --fractions 0,2", bin, dir))
    assert.are_not.equal(0, code)
    assert.matches("%-%-fractions must be numbers in 0..1", out)
  end)

  it("pivq sample and interpolate fail clearly without a checkpoint", function()
    local out, code = run(bin .. " sample --ckpt /nonexistent/model.safetensors")
    assert.are_not.equal(0, code)
    assert.matches("nonexistent", out)
  end)
end)
