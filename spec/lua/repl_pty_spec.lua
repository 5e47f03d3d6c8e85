-- The REPL as a person uses it, through a pseudo-terminal (spec/helpers/pty_drive.py, run by
-- Debian's /usr/bin/python3): Ctrl-C at the prompt and inside a JIT-compilable loop, history
-- written as entries are made, Tab completion, help and ?, `;`. Each Ctrl-C during a computation
-- must return to the prompt within a second (the timing is the spec's bound, not a benchmark).
-- The "expect" steps are Python regular expressions, matched against the terminal's output.
local json = require "dkjson"

local BIN = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"
local PYTHON = "/usr/bin/python3"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- run the steps against a fresh REPL with HOME = a new folder; returns the result and HOME
local function drive(steps)
  assert(exists(PYTHON), "repl_pty_spec needs " .. PYTHON .. " (Debian's python3) to drive a pseudo-terminal")
  local home = os.tmpname()
  os.remove(home)
  assert(os.execute("mkdir " .. q(home)) == 0)
  local steps_file = home .. "/steps.json"
  local f = assert(io.open(steps_file, "w"))
  f:write(json.encode(steps))
  f:close()
  -- The ASan stage's LD_PRELOAD goes to the pivq under test only: Python itself is not
  -- instrumented, and LeakSanitizer would abort it at exit over its own allocations.
  local preload = os.getenv("LD_PRELOAD") or ""
  local child = preload ~= "" and ("env " .. q("LD_PRELOAD=" .. preload) .. " " .. q(BIN)) or q(BIN)
  local p = assert(io.popen("env -u LD_PRELOAD HOME=" .. q(home) .. " " .. PYTHON .. " spec/helpers/pty_drive.py "
    .. q(steps_file) .. " " .. child))
  local out = p:read("*a")
  p:close()
  local result = json.decode(out)
  assert(type(result) == "table", "pty_drive.py printed no result: " .. out)
  return result, home
end

local function cleanup(home) os.execute("rm -rf " .. q(home)) end

local PROMPT = "\n> $"
local CTRL_C, CTRL_D = "\3", "\4"

describe("the REPL through a terminal", function()
  it("Ctrl-C at the prompt clears the line, also inside a multi-line entry; the session goes on", function()
    local r, home = drive({
      { "expect", "> ", 20 }, { "send", "x = 42\r" }, { "expect", PROMPT, 5 },
      -- the echo first: a Ctrl-C makes the terminal discard input the program has not read yet,
      -- and (a Linux pty) output still on its way to the driver (ISIG without NOFLSH): "abc" too
      { "send", "abc" }, { "expect", "abc", 5 }, { "send", CTRL_C }, { "expect", "\\^C\r\n> $", 5 },
      { "send", "for i = 1, 3 do\r" }, { "expect", ">> $", 5 }, { "send", CTRL_C }, { "expect", "\\^C\r\n> $", 5 },
      { "send", "x + 1\r" }, { "expect", "43\r\n> $", 5 },
      { "send", CTRL_D }, { "eof" },
    })
    cleanup(home)
    assert.is_true(r.ok, "stopped at " .. json.encode(r.failed) .. " with output:\n" .. r.output)
    assert.are.equal(0, r.status)
  end)

  it("Ctrl-C inside a compiled loop, a loop in a REPL function and a C-heavy loop returns within a second", function()
    local r, home = drive({
      { "expect", "> ", 20 }, { "send", "x = 42\r" }, { "expect", PROMPT, 5 },
      { "send", "for i = 1, 1e12 do end\r" }, { "mark" }, { "send", CTRL_C }, { "expect", "interrupted\r\n> $", 5 },
      { "send", "function spin() local s = 0 while true do s = s + 1 end end\r" }, { "expect", PROMPT, 5 },
      { "send", "spin()\r" }, { "mark" }, { "send", CTRL_C }, { "expect", "interrupted\r\n> $", 5 },
      { "send", "while true do local t = pivq.ones(64, 64) t = t:matmul(t) end\r" }, { "mark" }, { "send", CTRL_C },
      { "expect", "interrupted\r\n> $", 5 },
      { "send", "x\r" }, { "expect", "42\r\n> $", 5 },
      { "send", CTRL_D }, { "eof" },
    })
    cleanup(home)
    assert.is_true(r.ok, "stopped at " .. json.encode(r.failed) .. " with output:\n" .. r.output)
    assert.are.equal(3, #r.timings)
    for i, t in ipairs(r.timings) do assert.is_true(t < 1, string.format("interrupt %d took %.2f s", i, t)) end
  end)

  it("writes each entry to the history as it is entered, a multi-line entry as one", function()
    local r, home = drive({
      { "expect", "> ", 20 }, { "send", "a = 1\r" }, { "expect", PROMPT, 5 },
      { "send", "for i = 1, 2 do\r" }, { "send", "a = a + i end\r" }, { "expect", PROMPT, 5 },
      { "kill" }, -- no Ctrl-D: nothing that happens at exit may be needed
    })
    assert.is_true(r.ok, r.output)
    local f = assert(io.open(home .. "/.pivq_history"))
    local text = f:read("*a")
    f:close()
    cleanup(home)
    -- libedit's format: a header, one entry a line, blanks and newlines escaped (\040, \012)
    assert.are.equal("_HiStOrY_V2_\na\\040=\\0401\n"
      .. "for\\040i\\040=\\0401,\\0402\\040do\\012a\\040=\\040a\\040+\\040i\\040end\n", text)
  end)

  it("completes with Tab, shows help with help() and ?, and hides a value with ;", function()
    local r, home = drive({
      { "expect", "> ", 20 },
      { "send", "pivq.randp\t" }, { "expect", "erm", 5 }, { "send", "\r" }, { "expect", "randperm", 5 },
      { "expect", PROMPT, 5 },
      { "send", "t = pivq.zeros(3)\r" }, { "expect", PROMPT, 5 },
      { "send", "t:nar\t" }, { "expect", "row", 5 }, { "send", CTRL_C }, { "expect", PROMPT, 5 },
      { "send", "help(pivq.randn)\r" }, { "expect", "randn\\(\\.\\.\\.\\)  -- [^\r]*random\\.lua:\\d+\r\n", 5 },
      { "expect", PROMPT, 5 },
      { "send", "?pivq.randn\r" }, { "expect", "randn\\(\\.\\.\\.\\)  -- ", 5 }, { "expect", PROMPT, 5 },
      { "send", "y = 7;\r" }, { "expect", "y = 7;\r\n> $", 5 },
      { "send", "y;\r" }, { "expect", "y;\r\n> $", 5 },
      { "send", "s = {10, 20}; s[2]\r" }, { "expect", "\r\n20\r\n> $", 5 },
      { "send", CTRL_D }, { "eof" },
    })
    cleanup(home)
    assert.is_true(r.ok, "stopped at " .. json.encode(r.failed) .. " with output:\n" .. r.output)
  end)

  -- A Ctrl-C at the prompt must never be lost (csrc/host/main.c, "Ctrl-C": the host has other
  -- threads, OpenBLAS's from the start and OpenMP's after a parallel op, and a process-directed
  -- SIGINT goes to one of them whenever the main thread blocks it). Each case below once had
  -- runs where the prompt never came back.
  local AGAIN = "\\^C\r\n> $" -- whatever was typed (the terminal may have flushed it), then ^C
  -- the steps, then a check that the session still works and ends cleanly; returns the result
  local function drive_ok(steps, context)
    for _, s in ipairs({ { "send", "x = 5\r" }, { "expect", PROMPT, 5 }, { "send", "x\r" },
      { "expect", "5\r\n> $", 5 }, { "send", CTRL_D }, { "eof" } }) do
      steps[#steps + 1] = s
    end
    local r, home = drive(steps)
    cleanup(home)
    assert.is_true(r.ok, (context or "") .. "stopped at " .. json.encode(r.failed) .. " with output:\n" .. r.output)
    assert.are.equal(0, r.status)
    return r
  end

  it("Ctrl-C immediately after Tab, 20 times in one session, brings a fresh prompt every time", function()
    local steps = { { "expect", "> ", 20 }, { "send", "t = pivq.zeros(3)\r" }, { "expect", PROMPT, 5 } }
    for _ = 1, 20 do
      steps[#steps + 1] = { "send", "t:nar\t", 0 }
      steps[#steps + 1] = { "send", CTRL_C }
      steps[#steps + 1] = { "expect", AGAIN, 5 }
      steps[#steps + 1] = { "send", "t:nar\t" } -- and once the completion is on the screen
      steps[#steps + 1] = { "expect", "row", 5 }
      steps[#steps + 1] = { "send", CTRL_C }
      steps[#steps + 1] = { "expect", AGAIN, 5 }
    end
    drive_ok(steps)
  end)

  it("Ctrl-C at random small delays after the prompt appears, with and without typing, 40 times", function()
    local seed = os.time()
    math.randomseed(seed)
    -- a parallel product first, so that OpenMP's workers exist too
    local steps = { { "expect", "> ", 20 }, { "send", "m = pivq.ones(256, 256):matmul(pivq.ones(256, 256));\r" },
      { "expect", PROMPT, 10 } }
    for i = 1, 40 do
      if i % 2 == 0 then steps[#steps + 1] = { "send", "abc", 0 } end
      steps[#steps + 1] = { "sleep", math.random(0, 30) / 1000 }
      steps[#steps + 1] = { "send", CTRL_C }
      steps[#steps + 1] = { "expect", AGAIN, 5 }
    end
    drive_ok(steps, "seed " .. seed .. ": ")
  end)

  it("Enter then Ctrl-C at once, 20 times: each entry runs or is dropped, and the session goes on", function()
    local steps = { { "expect", "> ", 20 } }
    for i = 1, 20 do
      steps[#steps + 1] = { "send", "n = " .. i .. "\r", 0 }
      steps[#steps + 1] = { "send", CTRL_C }
      steps[#steps + 1] = { "expect", "(interrupted|\\^C)\r\n> $", 5 }
    end
    drive_ok(steps)
  end)

  it("a SIGINT that another thread of the host takes clears the prompt and interrupts a computation", function()
    -- a parallel product first: OpenMP's workers take SIGINT (OpenBLAS's threads block it)
    local steps = { { "expect", "> ", 20 }, { "send", "m = pivq.ones(256, 256):matmul(pivq.ones(256, 256));\r" },
      { "expect", PROMPT, 10 } }
    for _ = 1, 5 do
      steps[#steps + 1] = { "send", "abc" }
      steps[#steps + 1] = { "signal_thread" }
      steps[#steps + 1] = { "expect", "abc\\^C\r\n> $", 5 }
    end
    for _, s in ipairs({ { "send", "for i = 1, 1e12 do end\r" }, { "sleep", 0.2 }, { "mark" }, { "signal_thread" },
      { "expect", "interrupted\r\n> $", 5 } }) do
      steps[#steps + 1] = s
    end
    local r = drive_ok(steps)
    assert.are.equal(1, #r.timings)
    assert.is_true(r.timings[1] < 1, string.format("the interrupt took %.2f s", r.timings[1]))
  end)
end)
