-- pivq.core.precision: the bf16 switch (csrc/ops/bf16.c does the work).
--
--   pivq.autocast("bf16", fn, ...)   run fn(...) with bf16 products, then restore the precision
--                                     in force before (also when fn raises); returns fn's results
--   pivq.set_precision("bf16")        process-wide; "fp32" is the default
--   pivq.get_precision()              "fp32" or "bf16": the precision in force
--   pivq.bf16_available()             true, or false and the reason (oneDNN's ISA)
--
-- Under bf16, matmul, linear, attention's products and convolutions (forward and backward) take
-- bf16 operands and accumulate in fp32; everything else stays fp32 (csrc/README.md, "Precision"). Where bf16 is not
-- available (no AVX512-BF16 or AMX, PIVQ_BF16=off, pivq.C.pivq_set_bf16_allowed(0)),
-- set_precision("bf16") is an error, and autocast (what `--precision bf16` uses) prints one
-- warning per process and runs fp32: the same program runs everywhere.
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local argcheck = require "pivq.core.argcheck"

local C = state.C
local fail = argcheck.fail
local M = {}

local CODES = { fp32 = 0, bf16 = 1 }
local NAMES = { [0] = "fp32", [1] = "bf16" }

local function code(fname, p)
  local c = CODES[p]
  if not c then fail(string.format("%s: precision must be \"fp32\" or \"bf16\", got %s", fname, tostring(p))) end
  return c
end

function M.bf16_available()
  if C.pivq_bf16_available() == 1 then return true end
  -- set_precision fails here without changing anything, and its message names the reason
  assert(C.pivq_set_precision(CODES.bf16) ~= 0)
  return false, (ffi.string(C.pivq_last_error()):gsub("^set_precision: ", ""))
end

function M.get_precision() return NAMES[C.pivq_get_precision()] end

function M.set_precision(p)
  if C.pivq_set_precision(code("set_precision", p)) ~= 0 then fail(ffi.string(C.pivq_last_error())) end
end

local warned = false
-- The precision autocast would use for p: p, or "fp32" (with the one warning) when bf16 is missing.
function M.resolve(p, fname)
  code(fname or "autocast", p)
  if p ~= "bf16" then return p end
  local ok, why = M.bf16_available()
  if ok then return "bf16" end
  if not warned then
    warned = true
    io.stderr:write((fname or "autocast") .. ": " .. why .. "; running fp32\n")
  end
  return "fp32"
end

-- A recipe's --precision: resolve (fp32 with the warning where bf16 is missing) and set it for the
-- rest of the process; returns the precision used.
function M.use(p, fname)
  local use = M.resolve(p, fname)
  M.set_precision(use)
  return use
end

local function pack(...) return { n = select("#", ...), ... } end

function M.autocast(p, fn, ...)
  if type(fn) ~= "function" then
    fail("autocast: expected (precision, function, ...), got a " .. type(fn) .. " as the function")
  end
  local use = M.resolve(p, "autocast")
  local before = C.pivq_get_precision()
  assert(C.pivq_set_precision(CODES[use]) == 0)
  local r = pack(pcall(fn, ...))
  C.pivq_set_precision(before) -- fails only if bf16 was turned off meanwhile: fp32 stays
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

return M
