-- lua/README.md's REPL walkthrough is a transcript, and this runs it: the block after
-- "<!-- transcript -->" is split into what is typed (lines after "> ") and what prints (the
-- rest), the typed lines go to the pivq REPL, and its output must match line by line. In an
-- expected line "..." stands for any text; a line that is only "..." for any number of lines.
-- The checkpoint is an untrained default model (L = 64, K = 512), saved where the walkthrough
-- expects runs/default/model.safetensors; pivq.show draws in ASCII (PIVQ_SHOW=ascii).
local pivq = require "pivq"
local proc = require "spec.helpers.proc"

local BIN = (os.getenv("PIVQ_BUILD_DIR") or "build") .. "/pivq"

local function transcript()
  local text = assert(pivq.files.read_text("lua/README.md"))
  local block = text:match("<!%-%- transcript %-%->\n```lua\n(.-)\n```")
  assert(block, "lua/README.md has no <!-- transcript --> block")
  local typed, expected = {}, {}
  for line in (block .. "\n"):gmatch("(.-)\n") do
    if line:sub(1, 2) == "> " then typed[#typed + 1] = line:sub(3) else expected[#expected + 1] = line end
  end
  return typed, expected
end

-- Does `line` match the expected line `want` ("..." matches any text)?
local function line_matches(want, line)
  local pattern = "^" .. want:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"):gsub("%%%.%%%.%%%.", ".*") .. "$"
  return line:match(pattern) ~= nil
end

-- Match output lines against expected ones, a lone "..." taking any number of lines.
local function matches(expected, lines, i, j)
  i, j = i or 1, j or 1
  if i > #expected then return j > #lines end
  if expected[i] == "..." then
    for k = j, #lines + 1 do
      if matches(expected, lines, i + 1, k) then return true end
    end
    return false
  end
  return j <= #lines and line_matches(expected[i], lines[j]) and matches(expected, lines, i + 1, j + 1)
end

describe("lua/README.md's REPL walkthrough", function()
  it("prints what the transcript says", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. proc.shell_quote(dir .. "/runs/default")) == 0)
    pivq.manual_seed(1)
    local model = pivq.PIVQ {}
    assert(model:save(dir .. "/runs/default/model.safetensors"))
    local typed, expected = transcript()
    local input = dir .. "/input.lua"
    local f = assert(io.open(input, "w"))
    f:write(table.concat(typed, "\n"), "\n")
    f:close()
    local cmd = string.format("cd %s && PIVQ_SHOW=ascii COLUMNS=100 %s < input.lua 2>/dev/null", proc.shell_quote(dir),
      proc.shell_quote(assert(io.popen("realpath " .. BIN)):read("*l")))
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    os.execute("rm -rf " .. proc.shell_quote(dir))
    local lines = {}
    for line in out:gmatch("(.-)\n") do lines[#lines + 1] = line end
    table.remove(lines, 1) -- the banner
    while lines[#lines] == "" do lines[#lines] = nil end -- the newline printed at end of input
    assert.is_true(matches(expected, lines), "the REPL printed:\n" .. out)
  end)

  it("matches as documented: ... within a line and as lines", function()
    assert.is_true(line_matches("set{...}", "set{1, 2}"))
    assert.is_false(line_matches("set{...}", "multiset{1}"))
    assert.is_true(line_matches("64\ttrue", "64\ttrue"))
    assert.is_true(matches({ "a", "...", "b" }, { "a", "x", "y", "b" }))
    assert.is_true(matches({ "a", "...", "b" }, { "a", "b" }))
    assert.is_false(matches({ "a", "b" }, { "a", "x", "b" }))
  end)
end)
