-- notebooks/*.ipynb run top to bottom with Jupyter's own executor on the pivq kernel, validate
-- against the nbformat schema and (once PNG support is built) show images: .ci/notebooks.

-- Run .ci/notebooks [args]; returns its exit status and output. The ASan task's LD_PRELOAD is
-- for pivq alone (other programs fail on their own leaks at exit under it): .ci/notebooks
-- hands it to the kernel's pivq process.
local function run_notebooks(args)
  local preload = (os.getenv("LD_PRELOAD") or ""):gsub("'", "")
  local p = io.popen("env -u LD_PRELOAD PIVQ_KERNEL_PRELOAD='" .. preload ..
    "' timeout 900 sh .ci/notebooks " .. (args or "") .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("exit=(%d+)%s*$")), out
end

-- A notebook with the given code cells (and tags), as nbformat 4 JSON.
local function notebook(cells)
  local parts = {}
  for i, c in ipairs(cells) do
    local tags = c.tags and ('"' .. table.concat(c.tags, '", "') .. '"') or ""
    parts[i] = string.format('{"cell_type": "code", "execution_count": null, "id": "c%d", ' ..
      '"metadata": {"tags": [%s]}, "outputs": [], "source": %q}', i, tags, c.source)
  end
  return '{"cells": [' .. table.concat(parts, ", ") .. '], "metadata": {"kernelspec": ' ..
    '{"name": "pivq", "display_name": "pivq (LuaJIT)", "language": "lua"}, ' ..
    '"pivq": {"expect_image": false}}, "nbformat": 4, "nbformat_minor": 5}'
end

describe("notebooks", function()
  it("execute without errors under jupyter nbconvert and validate", function()
    local status, out = run_notebooks()
    assert(status == 0, "sh .ci/notebooks failed:\n" .. out)
  end)

  it("are committed with the outputs of one top-to-bottom run (sh .ci/notebooks --update)", function()
    -- without the ASan task's preload, which makes Python fail on its own leaks at exit
    local p = io.popen([[env -u LD_PRELOAD /usr/bin/python3 - notebooks/*.ipynb 2>&1 <<'EOF'
import sys
import nbformat

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    if counts != list(range(1, len(code) + 1)):
        print("%s: execution counts %s, not 1..%d: re-run sh .ci/notebooks --update" % (path, counts, len(code)))
    images = sum(1 for c in code for o in c.outputs if "image/png" in o.get("data", {}))
    if images == 0 and nb.metadata.get("pivq", {}).get("expect_image", True):
        print("%s: no image/png output committed" % path)
    for c in code:
        errors = [o for o in c.outputs if o.output_type == "error"]
        if errors and "raises-exception" not in c.metadata.get("tags", []):
            print("%s: a committed cell error: %s" % (path, errors[0].evalue))
print("checked")
EOF]])
    local out = p:read("*a")
    p:close()
    assert.are.equal("checked\n", out)
  end)

  it("fail the run on a cell error, but not on one tagged raises-exception", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p '" .. dir .. "'")
    local function write(name, text)
      local f = assert(io.open(dir .. "/" .. name, "w"))
      f:write(text)
      f:close()
    end
    write("good.ipynb", notebook({ { source = "error('expected')", tags = { "raises-exception" } },
      { source = "x = 1" } }))
    write("bad.ipynb", notebook({ { source = "x = 1" }, { source = "error('unexpected')" },
      { source = "x = 2" } }))
    local good_status, good_out = run_notebooks(dir .. "/good.ipynb")
    local bad_status, bad_out = run_notebooks(dir .. "/bad.ipynb")
    os.execute("rm -rf '" .. dir .. "'")
    assert(good_status == 0, good_out)
    assert.are_not.equal(0, bad_status)
    assert.matches("1 cell error%(s%): [^\n]*unexpected", bad_out)
  end)
end)
