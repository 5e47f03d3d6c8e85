-- Runs the C self-tests built beside the library; each ends with its count of failures (0):
--   pivq_assign_selftest      the assignment solver (spec/csrc/assign_selftest.c): exhaustive
--                             search on 10,000 tiny problems, an independent Hungarian solver on
--                             medium and wide ones, row permutations, strides, the batch, and
--                             every error message
--   pivq_gemm_small_selftest  the attention heads' register-tiled products
--                             (spec/csrc/gemm_small_selftest.c): every small M and N around the
--                             tile sizes, K from 0 to past the stack panels, A plain and
--                             transposed, strided operands, against a naive product
local build = os.getenv("PIVQ_BUILD_DIR") or "build"

describe("C self-tests", function()
  for _, name in ipairs({ "pivq_assign_selftest", "pivq_gemm_small_selftest" }) do
    it(name .. " passes every check", function()
      local p = io.popen(build .. "/" .. name .. " 2>&1; echo \"exit=$?\"")
      local out = p:read("*a")
      p:close()
      assert.matches("exit=0%s*$", out, 1)
      assert.is_falsy(out:find("FAIL", 1, true), out)
      assert.matches("%d+ %a+, 0 fail%a*%s*exit=0", out)
    end)
  end
end)
