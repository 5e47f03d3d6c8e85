-- .ci/check_shell.lua FILE...: no shell strings built from variables in the package or the
-- recipes. Every os.execute / io.popen call must take one string literal ("...", '...' or
-- [[...]]), optionally followed by a literal mode for io.popen: a concatenation or a variable
-- could carry user text (a folder name "x';touch y;'") into /bin/sh. Programs that need
-- arguments run through pivq.files.run (execvp, no shell). Prints FILE:LINE: ... per finding
-- and exits 1 if there is any. spec/ is not checked (spec/README.md: specs build commands from
-- their own constants and temporary paths, through spec/helpers/proc.lua's quoting).
local bad = 0
local literal = "^%s*(['\"])" -- a quoted literal's opening
local function literal_end(s, i)
  -- i at the opening quote: the index after the literal, or nil
  local q = s:sub(i, i)
  local j = i + 1
  while j <= #s do
    local c = s:sub(j, j)
    if c == "\\" then j = j + 2
    elseif c == q then return j + 1
    elseif c == "\n" then return nil
    else j = j + 1 end
  end
  return nil
end
for _, path in ipairs(arg) do
  local f = assert(io.open(path, "rb"))
  local src = f:read("*a")
  f:close()
  local pos = 1
  while true do
    local s, e, name = src:find("([%w_]*%.?[%w_]+)%s*%(", pos)
    if not s then break end
    pos = e + 1
    if name == "os.execute" or name == "io.popen" then
      local line = select(2, src:sub(1, s):gsub("\n", "")) + 1
      local rest = src:sub(e + 1)
      local ok = false
      local q = rest:match(literal)
      local after
      if q then
        after = literal_end(rest, rest:find(q, 1, true))
      elseif rest:match("^%s*%[%[") then
        local _, close = rest:find("]]", 1, true)
        after = close and close + 1
      end
      if after then
        local tail = rest:sub(after)
        ok = tail:match("^%s*%)") ~= nil or tail:match("^%s*,%s*['\"][rw]b?['\"]%s*%)") ~= nil
      end
      if not ok then
        print(string.format("%s:%d: %s with a non-constant argument (user text could reach a shell; "
          .. "use pivq.files.run or pivq.files.mkdir_p)", path, line, name))
        bad = bad + 1
      end
    end
  end
end
os.exit(bad == 0 and 0 or 1)
