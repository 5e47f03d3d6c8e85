-- Sampling strategies written from the documented contract alone (recipes/README.md, "Strategy
-- files"): a strategy file using bank:size(), bank:codes_of(i), bank:random_parents
-- and opts.generator runs through `pivq sample` and is scored by `pivq eval --strategy-file`
-- beside a built-in; `pivq new-strategy` writes a template that runs as written; what a strategy
-- returns is checked; a taken name needs replace = true; an error or os.exit fails the command.
-- And the code bank: progress, slices of a larger cached bank, no smaller bank over a larger one,
-- a read-only folder keeps the bank in memory, stale temporaries swept.
local pivq = require "pivq"
local proc = require "spec.helpers.proc"

local bin = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"
local q = proc.shell_quote

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- written from the contract's field list only: keep parent 1's codes but one, which becomes a
-- code of parent 2 that parent 1 lacks (a set stays a set)
local MINE = [[
local pivq = require "pivq"
pivq.sample.register("swap_one", function(bank, n, opts)
  assert(bank:size() == bank.codes:size(1) and bank:L() == bank.codes:size(2))
  local rows = {}
  for s, parents in ipairs(bank:random_parents(n, 2, opts.generator)) do
    local a, b = bank:codes_of(parents[1]), bank:codes_of(parents[2])
    local extra = b - a
    local row = {}
    for j = 1, #a do row[j] = a[j] end
    if #extra > 0 then row[1] = extra[1] end
    rows[s] = row
  end
  return pivq.tensor(rows, "int64")
end, "parent 1's codes with one from parent 2")
]]

describe("a strategy written from the contract", function()
  local dir, ckpt
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)) == 0)
    pivq.train.Trainer({ out = dir, steps = 6, batch = 8, width = 32, enc_depth = 1, dec_depth = 1, heads = 2,
      patch = 7, L = 8, K = 32, c = 8, quant_start = 2, init_batches = 1, eval_images = 16, quiet = true,
      grid_every = 1000, ckpt_every = 1000 }):fit()
    ckpt = dir .. "/model.safetensors"
    write(dir .. "/mine.lua", MINE)
  end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  it("runs through pivq sample and is scored by pivq eval beside pair", function()
    local out, code = run(string.format("%s sample --ckpt %s --strategy-file %s --strategy swap_one -n 16 "
      .. "--bank-limit 300 --save-codes %s --out %s", bin, q(ckpt), q(dir .. "/mine.lua"), q(dir .. "/c.safetensors"),
      q(dir .. "/s.png")))
    assert.are.equal(0, code, out)
    local codes = assert(pivq.load(dir .. "/c.safetensors")).codes
    assert.are.same({ 16, 8 }, codes:size())
    for i = 1, 16 do pivq.CodeSet(codes[i], { K = 32 }) end -- each row a set in 1..K (raises if not)
    out, code = run(string.format("%s eval --ckpt %s --strategy-file %s --strategy swap_one,pair --samples 40 "
      .. "--features pixels --test-images 40 --bank-limit 300 --k 3 --out %s", bin, q(ckpt), q(dir .. "/mine.lua"),
      q(dir .. "/eval.json")))
    assert.are.equal(0, code, out)
    local report = require("dkjson").decode(assert(pivq.files.read_text(dir .. "/eval.json")))
    for _, name in ipairs({ "swap_one", "pair", "marginal" }) do
      local p = report[name .. "_precision"]
      assert.is_number(p, name)
      assert.is_true(p >= 0 and p <= 1)
    end
    assert.matches("swap_one_precision", out) -- the table shows it too
  end)

  it("pivq new-strategy writes a template that runs as written, and refuses to overwrite", function()
    local file = dir .. "/tmpl.lua"
    local out, code = run(string.format("%s new-strategy halves --out %s", bin, q(file)))
    assert.are.equal(0, code, out)
    local text = assert(pivq.files.read_text(file))
    assert.matches("a strategy file is code", text)
    assert.matches("bank:random_parents", text)
    out, code = run(string.format("%s sample --ckpt %s --strategy-file %s --strategy halves -n 8 --bank-limit 300 "
      .. "--out %s", bin, q(ckpt), q(file), q(dir .. "/t.png")))
    assert.are.equal(0, code, out)
    out, code = run(string.format("%s new-strategy halves --out %s", bin, q(file)))
    assert.are.equal(1, code)
    assert.matches("exists; not overwriting", out)
    out, code = run(string.format("%s new-strategy 'bad name' --out %s", bin, q(dir .. "/x.lua")))
    assert.are.equal(2, code, out)
  end)

  it("checks what a strategy returns, and fails the command on an error or os.exit", function()
    local cases = {
      { "return pivq.tensor({{1, 2, 3}}, 'int64')", "must return a 4 x 8 tensor of codes, got 1x3" },
      { "local t = bank.codes:narrow(1, 1, n):clone(); t[1][3] = 99; return t", "codes must lie in 1..32" },
      { "local t = bank.codes:narrow(1, 1, n):clone(); t[2][2] = t[2][1]; return t", "row 2 repeats code" },
      { "error('my own message')", "sample strategy 'bad' failed: .*my own message" },
      { "os.exit(0)", "called os.exit%(0%)" },
    }
    for i, case in ipairs(cases) do
      local file = string.format("%s/bad%d.lua", dir, i)
      write(file, "local pivq = require 'pivq'\npivq.sample.register('bad', function(bank, n, opts) " .. case[1]
        .. " end)\n")
      local out, code = run(string.format("%s sample --ckpt %s --strategy-file %s --strategy bad -n 4 "
        .. "--bank-limit 300 --out %s", bin, q(ckpt), q(file), q(dir .. "/bad.png")))
      assert.are.equal(1, code, out)
      assert.matches(case[2], out)
      assert.is_nil(io.open(dir .. "/bad.png"), "an image was written for case " .. i)
    end
    -- os.exit while the file loads
    write(dir .. "/exits.lua", "os.exit(0)\n")
    local out, code = run(string.format("%s sample --ckpt %s --strategy-file %s -n 4 --out %s", bin, q(ckpt),
      q(dir .. "/exits.lua"), q(dir .. "/bad.png")))
    assert.are.equal(1, code, out)
    assert.matches("called os.exit", out)
  end)

  it("replaces a built-in only with replace = true", function()
    assert.has_error(function() pivq.sample.register("pair", function() end) end,
      "sample.register: 'pair' is already registered; pass {replace = true} to replace it")
    local original = pivq.sample.list().pair
    pivq.sample.register("spec_tmp", function(bank, n) return bank.codes:narrow(1, 1, n) end, "first rows")
    pivq.sample.register("spec_tmp", function(bank, n) return bank.codes:narrow(1, 2, n) end, "second",
      { replace = true })
    assert.are.equal("second", pivq.sample.list().spec_tmp)
    assert.are.equal(original, pivq.sample.list().pair)
    assert.has_error(function() pivq.sample.register("x2", function() end, "d", { replce = true }) end,
      "sample.register: unknown option 'replce' (known: replace)")
  end)
end)

describe("the code bank", function()
  local dir, model
  local function images(n) return { images = pivq.rand(n, 1, 28, 28), labels = pivq.zeros(n):long() } end
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)) == 0)
    model = pivq.PIVQ { width = 32, enc_depth = 1, dec_depth = 1, heads = 2, patch = 7, L = 8, K = 32, c = 8 }
    model:save(dir .. "/model.safetensors")
    model.path = dir .. "/model.safetensors"
  end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  it("cuts a quick look from a larger cached bank and never replaces it with a smaller one", function()
    local ds = images(120)
    local full = pivq.bank.load(model, { dataset = ds, progress = false })
    assert.are.equal(120, full:size())
    local reference = pivq.bank.encode_all(model, ds.images) -- the same codes, encoded again
    assert.are.equal(0, (full.codes - reference):abs():sum():item())
    -- a quick look: no dataset given, so encoding anything would fail; the cache serves it
    local small = pivq.bank.load(model, { limit = 50, dataset = { images = pivq.rand(1, 1, 28, 28) },
      progress = false })
    assert.are.equal(50, small:size())
    assert.are.equal(0, (small.codes - reference:narrow(1, 1, 50)):abs():sum():item())
    local tensors = assert(pivq.load(dir .. "/codes.safetensors"))
    assert.are.equal(120, tensors.codes:size(1)) -- still the full bank
    -- bank methods, against the codes tensor
    assert.are.same(reference[7]:totable(), full:codes_of(7):totable())
    local parents = full:random_parents(5, 3, pivq.Generator(1))
    assert.are.equal(5, #parents)
    for _, row in ipairs(parents) do
      assert.are.equal(3, #row)
      assert.is_true(row[1] ~= row[2] and row[2] ~= row[3] and row[1] ~= row[3])
      for _, i in ipairs(row) do assert.is_true(i >= 1 and i <= 120) end
    end
    assert.has_error(function() full:codes_of(121) end, "bank:codes_of: i must be an image index in 1..120, got 121")
  end)

  it("a partial bank is cached only where no fuller one is, and progress says what it does", function()
    os.remove(dir .. "/codes.safetensors")
    local ds = images(90)
    local lines = {}
    local codes = pivq.bank.encode_all(model, ds.images, 40,
      function(done, total) lines[#lines + 1] = done .. "/" .. total end)
    assert.are.equal(90, codes:size(1))
    assert.are.same({ "40/90", "80/90", "90/90" }, lines)
    local part = pivq.bank.load(model, { dataset = ds, limit = 30, progress = false })
    assert.are.equal(30, part:size())
    assert.are.equal(30, assert(pivq.load(dir .. "/codes.safetensors")).codes:size(1))
    local full = pivq.bank.load(model, { dataset = ds, progress = false })
    assert.are.equal(90, full:size()) -- the partial cache was not taken for a full bank
    assert.are.equal(90, assert(pivq.load(dir .. "/codes.safetensors")).codes:size(1))
  end)

  it("does not reuse a bank encoded in the other precision", function()
    assert(pivq.bf16_available(), "this case needs a CPU with bf16 (AVX512-BF16 or AMX) and a oneDNN build")
    os.remove(dir .. "/codes.safetensors")
    local ds = images(30)
    pivq.bank.load(model, { dataset = ds, progress = false })
    local _, meta = assert(pivq.load(dir .. "/codes.safetensors"))
    assert.are.equal("fp32", meta.precision)
    -- in bf16 the cached fp32 bank (30 images) is not taken: the 7 given are encoded and cached
    local b = pivq.autocast("bf16", pivq.bank.load, model, { dataset = images(7), progress = false })
    assert.are.equal(7, b:size())
    _, meta = assert(pivq.load(dir .. "/codes.safetensors"))
    assert.are.equal("bf16", meta.precision)
  end)

  it("keeps the bank in memory when its folder is read-only, and sweeps stale temporaries", function()
    assert(proc.is_root(), "this case needs root: it becomes 'nobody', for whom a 0555 folder is read-only")
    local ro = dir .. "/ro"
    assert(os.execute("mkdir -p " .. q(ro) .. " && cp " .. q(dir .. "/model.safetensors") .. " " .. q(ro)
      .. " && chmod 644 " .. q(ro .. "/model.safetensors")) == 0)
    write(ro .. "/codes.safetensors.tmp-abc123", "left by a killed write")
    assert(os.execute("chmod 555 " .. q(ro)) == 0)
    local ds = images(20)
    local m2 = pivq.load_model(ro .. "/model.safetensors")
    local ok, bank = proc.as_user(65534,
      function() return pcall(pivq.bank.load, m2, { dataset = ds, progress = false }) end)
    assert.is_true(ok, tostring(bank))
    assert.are.equal(20, bank:size())
    assert.is_nil(bank.path) -- not cached
    assert(os.execute("chmod 755 " .. q(ro)) == 0)
    -- writable again: the next load sweeps the temporary before caching
    local again = pivq.bank.load(m2, { dataset = ds, progress = false })
    assert.are.equal(20, again:size())
    assert.is_nil(io.open(ro .. "/codes.safetensors.tmp-abc123"))
    assert.is_not_nil(io.open(ro .. "/codes.safetensors"))
  end)
end)
