-- Runs the C self-test of the assignment solver (spec/csrc/assign_selftest.c): exhaustive search
-- on 10,000 tiny problems, an independent Hungarian solver on medium and wide ones, row
-- permutations, strides, the batch, and every error message.
describe("assign C self-test", function()
  it("passes every check", function()
    local bin = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq_assign_selftest"
    local p = io.popen(bin .. " 2>&1; echo \"exit=$?\"")
    local out = p:read("*a")
    p:close()
    assert.matches("exit=0%s*$", out, 1)
    assert.is_falsy(out:find("FAIL", 1, true), out)
  end)
end)
