-- notebooks/*.ipynb run top to bottom with Jupyter's own executor on the pivq kernel, validate
-- against the nbformat schema and (once PNG support is built) show images: .ci/notebooks.
describe("notebooks", function()
  it("execute without errors under jupyter nbconvert and validate", function()
    -- The ASan task's LD_PRELOAD is for pivq alone (other programs fail on their own leaks at
    -- exit under it): .ci/notebooks hands it to the kernel's pivq process.
    local preload = (os.getenv("LD_PRELOAD") or ""):gsub("'", "")
    local p = io.popen("env -u LD_PRELOAD PIVQ_KERNEL_PRELOAD='" .. preload ..
      "' timeout 900 sh .ci/notebooks 2>&1; echo \"exit=$?\"")
    local out = p:read("*a")
    p:close()
    local status = tonumber(out:match("exit=(%d+)%s*$"))
    assert(status == 0, "sh .ci/notebooks failed:\n" .. out)
  end)
end)
