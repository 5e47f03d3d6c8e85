-- The data-parallel equivalence the MPI specs check (spec/lua/mpi_spec.lua on one host,
-- spec/lua/mpi_hosts_spec.lua across two network namespaces): the runs of
-- spec/helpers/mpi_train.lua in ONE (1 process, batch 64) and TWO (2 ranks x batch 32), STEPS
-- steps each, trained the same model; every rank holds the same codebook and parameters.
local pivq = require "pivq"
local assert = require "luassert" -- busted gives its assert to spec files, not to the modules they require

local M = {}

local function max_diff(a, b) return (a - b):abs():max() end

-- OUT/log.jsonl as a list of records
local function log_of(out)
  local json = require "dkjson"
  local rows = {}
  for line in assert(io.open(out .. "/log.jsonl")):lines() do rows[#rows + 1] = json.decode(line) end
  return rows
end

M.log_of = log_of

function M.equivalent(one, two, steps)
  local ref = assert(pivq.load(one .. "/rank0.safetensors"))
  local r0 = assert(pivq.load(two .. "/rank0.safetensors"))
  local r1 = assert(pivq.load(two .. "/rank1.safetensors"))
  -- the restarts were exercised, decided on rank 0 alone
  assert.is_true(ref.restarts[1] > 0)
  assert.are.equal(ref.restarts[1], r0.restarts[1])
  assert.are.equal(0, r1.restarts[1])
  for s = 1, steps do
    local k = "codebook." .. s
    assert.is_truthy(r0[k] and r1[k], k)
    -- the ranks apply one reduced update: bitwise the same codebook
    assert.are.equal(0, max_diff(r0[k], r1[k]), k)
    assert.is_true(max_diff(r0[k], ref[k]) < 1e-4, k) -- codes of size ~2; measured 5e-7
  end
  assert.are.equal(0, max_diff(r0["codebook.final"], r1["codebook.final"]))
  -- the same losses at every step (rank 0 logs the mean over the ranks)
  local la, lb = log_of(one), log_of(two)
  assert.are.equal(steps, #la)
  assert.are.equal(steps, #lb)
  for i = 1, steps do
    for _, term in ipairs({ "total", "l1", "l2", "commit" }) do
      if la[i][term] then
        assert.is_true(math.abs(la[i][term] - lb[i][term]) < 1e-6, string.format("step %d %s: %s vs %s", i, term,
          la[i][term], lb[i][term]))
      end
    end
    assert.are.equal(la[i].K_img, lb[i].K_img)
    assert.are.equal(la[i].usage, lb[i].usage)
  end
  assert.is_truthy(la[steps].commit) -- quantized steps were compared
  -- the same parameters: bitwise across ranks; within float tolerance of the single process.
  -- (Summing the gradients in two halves rounds differently; AdamW divides by sqrt(v), which
  -- turns rounding noise in near-zero gradients, such as attention key biases', into steps of
  -- up to lr, so the bound is a fraction of lr = 3e-3 rather than a few ulps.)
  local n = 0
  for name, t in pairs(ref) do
    if name:match("^param%.") then
      n = n + 1
      assert.are.equal(0, max_diff(r0[name], r1[name]), name)
      assert.is_true(max_diff(r0[name], t) < 2e-4, name)
    end
  end
  assert.is_true(n > 10)
  -- and rank 0's checkpoint is the model rank 0 holds
  local model = assert(pivq.load_model(two .. "/model.safetensors"))
  for _, np in ipairs(model:named_parameters()) do
    assert.are.equal(0, max_diff(np[2], r0["param." .. np[1]]), np[1])
  end
end

return M
