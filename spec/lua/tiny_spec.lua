-- pivq.tiny: the preset, the cache key and folder, and the cache itself (a second call loads the
-- checkpoint the first one trained; a folder whose key does not match is trained again).
local pivq = require "pivq"
local tiny = pivq.tiny

local with_env = require("helpers.proc").with_env -- fn runs with the variables set (false: unset)

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  os.execute("mkdir -p '" .. d .. "'")
  return d
end

-- A few steps only: the cache's behaviour, not the model's quality, is under test.
local QUICK = { steps = 6, quant_start = 2, warmup = 1, init_batches = 1, batch = 8, eval_images = 20 }

local function quick(extra)
  local o = {}
  for k, v in pairs(QUICK) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("pivq.tiny", function()
  local saved_threads
  setup(function() saved_threads = pivq.get_num_threads() end)
  teardown(function() pivq.set_num_threads(saved_threads) end)

  it("puts the user's options over the preset and refuses unknown ones", function()
    local o = tiny.options { K = 64, quantizer = "nearest" }
    assert.are.same({ 64, "nearest", 16, 400, 1 }, { o.K, o.quantizer, o.L, o.steps, o.threads })
    assert.has_error(function() tiny.model { codes = 3 } end, "pivq.tiny.model: unknown option 'codes'")
    assert.has_error(function() tiny.options(5) end)
  end)

  it("keys the cache by what shapes the model, not by where it goes", function()
    local text, name = tiny.key(tiny.options())
    assert.matches("^tiny%-%x%x%x%x%x%x%x%x$", name)
    assert.matches("pivq " .. pivq.version, text, 1, true)
    assert.matches("\nK=128\n", text, 1, true)
    assert.are.equal(name, select(2, tiny.key(tiny.options { out = "/elsewhere", quiet = false })))
    assert.are_not.equal(name, select(2, tiny.key(tiny.options { K = 64 })))
    assert.are_not.equal(name, select(2, tiny.key(tiny.options { seed = 2 })))
  end)

  it("finds its cache folder from PIVQ_CACHE_DIR, XDG_CACHE_HOME, then HOME", function()
    with_env({ PIVQ_CACHE_DIR = "/c/pivq", XDG_CACHE_HOME = "/x", HOME = "/h" }, function()
      assert.are.equal("/c/pivq", tiny.cache_dir())
    end)
    with_env({ PIVQ_CACHE_DIR = false, XDG_CACHE_HOME = "/x", HOME = "/h" }, function()
      assert.are.equal("/x/pivq", tiny.cache_dir())
    end)
    with_env({ PIVQ_CACHE_DIR = "", XDG_CACHE_HOME = false, HOME = "/h" }, function()
      assert.are.equal("/h/.cache/pivq", tiny.cache_dir())
    end)
  end)

  it("trains once, then loads the same model from the cache; a wrong key trains again", function()
    local dir = tmpdir()
    with_env({ PIVQ_CACHE_DIR = dir }, function()
      local m1, metrics1, cached1 = tiny.model(quick())
      local _, name = tiny.key(tiny.options(quick()))
      assert.is_false(cached1)
      assert.are.equal(dir .. "/" .. name .. "/model.safetensors", m1.path)
      assert.are.equal("number", type(metrics1.psnr))
      assert.are.equal(1, pivq.get_num_threads())

      local m2, metrics2, cached2 = tiny.model(quick())
      assert.is_true(cached2)
      assert.is_near(metrics1.psnr, metrics2.psnr, 1e-9 * metrics1.psnr) -- through JSON
      assert.are.same({ metrics1.step, metrics1.K_img }, { metrics2.step, metrics2.K_img })
      local sd1, sd2 = m1:state_dict(), m2:state_dict()
      for k, t in pairs(sd1) do
        assert.are.equal(0, (t:float() - sd2[k]:float()):abs():max(), k)
      end

      -- another option, another folder
      local _, _, cached3 = tiny.model(quick { seed = 2 })
      assert.is_false(cached3)

      -- a folder whose key.txt does not match (another version, a damaged write) is not trusted
      local f = assert(io.open(dir .. "/" .. name .. "/key.txt", "w"))
      f:write("something else")
      f:close()
      local _, _, cached4 = tiny.model(quick())
      assert.is_false(cached4)
      local _, _, cached5 = tiny.model(quick())
      assert.is_true(cached5)
    end)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
