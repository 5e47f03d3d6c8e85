-- The bad-argument sweep (issue 10): every public function of the pivq namespace called with
-- wrong types, nil, wrong dims, mismatched shapes, wrong dtypes, NaN/Inf, empty tensors,
-- negative and huge sizes (spec/helpers/sweep_targets.lua). Each call must succeed, return
-- nil, err, or raise an error that names the function; never crash, hang or allocate absurd
-- memory. Each group runs in child processes (spec/helpers/sweep_child.lua), so a crash is a
-- failing test naming the call, and the sweep carries on after it.
local targets = require "helpers.sweep_targets"

-- A hung call makes its process exceed this; sanitized children are several times slower.
local TIMEOUT = os.getenv("LD_PRELOAD") and 900 or 300
-- Peak resident memory a whole group may use.
local MAX_RSS_KIB = 1024 * 1024

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Run GROUP's calls from FIRST on in one child; return its report lines and exit status.
local function run_child(group, first)
  -- under ASan, absurd allocations return NULL (as with RLIMIT_AS outside ASan) instead of aborting
  local asan = os.getenv("ASAN_OPTIONS")
  local env = asan and ("ASAN_OPTIONS=" .. shell_quote(asan .. ":allocator_may_return_null=1") .. " ") or ""
  local cmd = string.format("%sLUA_PATH=%s timeout -s KILL %d luajit spec/helpers/sweep_child.lua %s %s"
    .. " 2>&1 >/dev/null; echo \"@@ EXIT $?\"", env, shell_quote(package.path), TIMEOUT, group, tostring(first))
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- All of GROUP's calls, restarting after a crash: returns the call count, the failures and the
-- peak RSS of its processes.
local function sweep(group)
  local failures, first, rss = {}, 1, 0
  while true do
    local out = run_child(group, first)
    local last, last_id, done
    for line in out:gmatch("[^\n]+") do
      local n, id = line:match("^@@ CALL (%d+) (.*)$")
      if n then last, last_id = tonumber(n), id end
      local fail = line:match("^@@ FAIL %d+ (.*)$")
      if fail then failures[#failures + 1] = "error does not name the function: " .. fail end
      local count, kib = line:match("^@@ DONE (%d+) (%d+)$")
      if count then done = tonumber(count); rss = math.max(rss, tonumber(kib)) end
    end
    local status = out:match("@@ EXIT (%d+)") or "?"
    if done then
      -- after the last call: a sanitizer's leak report at exit, say
      if status ~= "0" then
        failures[#failures + 1] = string.format("the process exited with status %s after its last call:\n%s", status,
          (out:match("@@ DONE [^\n]*\n(.*)$") or ""):sub(1, 1500))
      end
      return done, failures, rss
    end
    if not last then
      failures[#failures + 1] = "the sweep process failed before its first call (exit " .. status .. "):\n" .. out
      return 0, failures, rss
    end
    -- the report (sanitizer or not) that follows the call that killed the process
    local tail = out:match("@@ CALL " .. last .. " [^\n]*\n(.*)$") or ""
    tail = tail:gsub("@@ EXIT %d+%s*$", ""):sub(1, 1500)
    failures[#failures + 1] = string.format("%s killed the process (exit %s%s):\n%s", last_id, status,
      status == "137" and ": a hang, killed by the timeout" or "", tail)
    first = last + 1
  end
end

describe("bad-argument sweep #sweep", function()
  local total = 0
  local names = {}
  for name in pairs(targets.groups) do names[#names + 1] = name end
  table.sort(names)
  for _, group in ipairs(names) do
    it(group .. ": no crash, hang, absurd allocation or anonymous error", function()
      local count, failures, rss = sweep(group)
      total = total + count
      assert.is_true(count > 0, group .. ": no calls made")
      assert.are.equal(0, #failures, string.format("%s: %d of %d calls failed:\n%s", group, #failures, count,
        table.concat(failures, "\n")))
      assert.is_true(rss < MAX_RSS_KIB, string.format("%s: peak RSS %d KiB", group, rss))
    end)
  end
  -- every options or config table of the catalogue's valid calls, with one misspelt key
  -- (sweep_child.lua GROUP misspelt): refused naming the function, the key and the closest key
  local misspelt_total = 0
  for _, group in ipairs(names) do
    it(group .. ": every options table refuses a misspelt key, naming the closest", function()
      local out = run_child(group, "misspelt")
      local missed = {}
      for line in out:gmatch("[^\n]+") do
        local m = line:match("^@@ MISS (.*)$")
        if m then missed[#missed + 1] = m end
      end
      local count = tonumber(out:match("@@ DONE (%d+)"))
      assert.is_truthy(count, "the misspelt-key sweep did not finish:\n" .. out)
      misspelt_total = misspelt_total + count
      assert.are.equal(0, #missed, table.concat(missed, "\n"))
    end)
  end
  it("the misspelt-key sweep reaches the catalogue's options tables", function()
    -- 54 tables today (F 14, nn 17, eval 8, optim 7, files 5, namespace 1, vq 1, model 1)
    assert.is_true(misspelt_total >= 50, "only " .. misspelt_total .. " tables")
  end)
  it("reports a crash and an anonymous error, naming the calls, and carries on", function()
    local count, failures = sweep("canary")
    assert.are.equal(#targets.bad_values(), count)
    assert.are.equal(2, #failures, table.concat(failures, "\n"))
    assert.matches("^canary%(arg 1 = nil%) killed the process %(exit %d+", failures[1])
    assert.matches("^error does not name the function: canary%(arg 1 = true%)", failures[2])
  end)
  it("covers every public function", function()
    local missing = targets.uncovered()
    assert.are.equal(0, #missing, "functions the sweep does not call: " .. table.concat(missing, ", "))
  end)
  teardown(function() io.stderr:write(string.format("\nbad-argument sweep: %d calls\n", total)) end)
end)
