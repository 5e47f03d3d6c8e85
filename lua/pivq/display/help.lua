-- pivq.help: what the REPL and the Jupyter kernel know about a value, from one source.
--
--   help(f) / ?f           (REPL) a function's signature and documentation; a module's header
--   M.doc(v, name)         the text help prints: for a Lua function, its signature and the
--                          comment block just above its definition in the source (the same text
--                          a reader of the file sees; the docstrings are the code's comments);
--                          for a module table, its file's header comment and its fields; else
--                          the value as the REPL prints it (two levels deep)
--   M.signature(f)         "name(a, b, ...)" from the definition line, or nil
--   M.complete(src, cursor [, env])  Tab completion (Jupyter's protocol: 0-based cursor;
--                          returns start, end and the sorted matches); the REPL uses it too
--   M.inspect(src, cursor [, env])   Shift-Tab in Jupyter: M.doc of the name at the cursor
--   M.suggest(word, names) the closest name ("did you mean"), or nil
-- Nothing here calls a value it inspects: it only reads fields and source files.
local pretty = require "pivq.display.pretty"

local M = {}

-- ---- completion ------------------------------------------------------------------------------

local function keys_of(v, out, seen)
  seen = seen or {}
  if seen[v] then return out end
  seen[v] = true
  if type(v) == "table" then
    for k in pairs(v) do
      if type(k) == "string" then out[k] = true end
    end
  end
  local mt = (type(v) == "table" or type(v) == "userdata") and getmetatable(v) or nil
  if type(mt) == "table" and type(mt.__index) == "table" then keys_of(mt.__index, out, seen) end
  return out
end

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
  "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

-- Names completing the dotted/colon path before the cursor (0-based cursor, as Jupyter's).
-- Returns start, end (0-based, of the text to replace) and the sorted matches.
function M.complete(src, cursor, env)
  env = env or _G
  local before = src:sub(1, cursor)
  local path = before:match("[%w_%.:]*$") or ""
  local prefix_path, sep, partial = path:match("^(.-)([%.:]?)([%w_]*)$")
  local matches = {}
  if sep == "" then
    local names = keys_of(env, {})
    for _, k in ipairs(KEYWORDS) do names[k] = true end
    for k in pairs(names) do
      if k:sub(1, #partial) == partial then matches[#matches + 1] = k end
    end
  else
    local v = env
    for name in prefix_path:gmatch("[^%.:]+") do
      local ok, next_v = pcall(function() return v[name] end)
      if not ok or next_v == nil then
        v = nil
        break
      end
      v = next_v
    end
    if v ~= nil then
      local names = {}
      if type(v) == "cdata" then
        -- tensors: their methods (a cdata's metatable is hidden; ask the package)
        local ok, tensor = pcall(require, "pivq.core.tensor")
        if ok and tensor.is_tensor(v) then keys_of(tensor.methods, names) end
      else
        keys_of(v, names)
      end
      for k in pairs(names) do
        if k:sub(1, #partial) == partial and k:match("^[%a_][%w_]*$") then
          if sep == ":" then
            local ok, member = pcall(function() return v[k] end)
            if ok and type(member) == "function" then matches[#matches + 1] = k end
          else
            matches[#matches + 1] = k
          end
        end
      end
    end
  end
  table.sort(matches)
  return cursor - #partial, cursor, matches
end

-- What Shift-Tab (Jupyter) shows for the dotted name at or before the cursor: M.doc of its value. The name is only
-- looked up (fields read), never called. Returns the text, or nil when nothing is found.
function M.inspect(src, cursor, env)
  env = env or _G
  local before = src:sub(1, cursor):match("[%w_%.:]*$") or ""
  local after = src:sub(cursor + 1):match("^[%w_]*") or ""
  local path = (before .. after):gsub("^[%.:]+", ""):gsub("[%.:]+$", "")
  if path == "" then return nil end
  local v = env
  for name in path:gmatch("[^%.:]+") do
    local ok, next_v = pcall(function() return v[name] end)
    if not ok or next_v == nil then return nil end
    v = next_v
  end
  return M.doc(v, path)
end


-- ---- documentation ---------------------------------------------------------------------------

local source_cache = {}

-- the lines of a Lua source file (cached), or nil
local function source_lines(info)
  local src = info.source
  if type(src) ~= "string" or src:sub(1, 1) ~= "@" then return nil end
  local path = src:sub(2)
  if source_cache[path] == nil then
    local f = io.open(path, "r")
    local lines = false
    if f then
      lines = {}
      for line in f:lines() do lines[#lines + 1] = line end
      f:close()
    end
    source_cache[path] = lines
  end
  return source_cache[path] or nil
end

-- "name(args)" as the definition line spells it: `function M.randn(...)`, `function T:size(d)`,
-- `M.pick = function(g, n)`, `local function f(x)`
function M.signature(f)
  if type(f) ~= "function" then return nil end
  local info = debug.getinfo(f, "S")
  local lines = info.what == "Lua" and source_lines(info)
  local line = lines and lines[info.linedefined]
  if not line then return nil end
  local name, params = line:match("function%s+([%w_%.:]+)%s*(%b())")
  if not name then
    name, params = line:match("([%w_%.%[%]\"']+)%s*=%s*function%s*(%b())")
  end
  if not name then return nil end
  return name:gsub("^M[%.:]", "") .. params
end

-- the comment block directly above line n (the `--` lines, without the dashes)
local function comment_above(lines, n)
  local out = {}
  local i = n - 1
  while i >= 1 and lines[i]:match("^%s*%-%-") do
    table.insert(out, 1, (lines[i]:gsub("^%s*%-%-+ ?", "")))
    i = i - 1
  end
  return out
end

-- the file's header comment (its first comment block)
local function header_of(lines)
  local out = {}
  for _, line in ipairs(lines) do
    if not line:match("^%s*%-%-") then break end
    out[#out + 1] = (line:gsub("^%s*%-%-+ ?", ""))
  end
  return out
end

local function describe_function(f, name)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then return (name or "function") .. ": function (built in)" end
  local lines = source_lines(info)
  local sig = M.signature(f)
  local parts = { string.format("%s%s  -- %s:%d", name and (name .. ": ") or "", sig or "function(...)",
    info.short_src, info.linedefined) }
  if lines then
    local doc = comment_above(lines, info.linedefined)
    if #doc > 0 then parts[#parts + 1] = table.concat(doc, "\n") end
  end
  return table.concat(parts, "\n")
end

-- the source file a table's functions are defined in (the first found), or nil
local function file_of_table(t)
  for _, v in pairs(t) do
    if type(v) == "function" then
      local info = debug.getinfo(v, "S")
      if info.what == "Lua" then return info end
    end
  end
  return nil
end

function M.doc(v, name)
  if type(v) == "function" then return describe_function(v, name) end
  local head = (name and (name .. ": ") or "") .. type(v)
  local mt = type(v) == "table" and getmetatable(v)
  local info = type(v) == "table" and not (type(mt) == "table" and mt.__tostring) and file_of_table(v)
  if info then -- a module or a class: its file's header and its fields
    local lines = info and source_lines(info)
    local header = lines and header_of(lines) or {}
    local names = {}
    for k, field in pairs(v) do
      if type(k) == "string" and k:sub(1, 2) ~= "__" then
        names[#names + 1] = k .. (type(field) == "function" and "()" or "")
      end
    end
    table.sort(names)
    local text = head .. (info and ("  -- " .. info.short_src) or "")
    if #header > 0 then text = text .. "\n" .. table.concat(header, "\n") end
    if #names > 0 then text = text .. "\nfields: " .. table.concat(names, " ") end
    return text
  end
  return head .. "\n" .. pretty.format(v, { depth = 2 })
end

-- ---- did you mean ----------------------------------------------------------------------------

local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a:byte(i) == b:byte(j) and 0 or 1))
    end
    prev = cur
  end
  return prev[#b]
end

-- the name closest to word (edit distance at most a third of its length, at least 2), or nil
function M.suggest(word, names)
  if type(word) ~= "string" then return nil end
  local best, best_d = nil, math.max(2, math.floor(#word / 3)) + 1
  for _, n in ipairs(names) do
    local d = distance(word:lower(), n:lower())
    -- ties: the same length first (a typo more often swaps a letter than drops one), then A-Z
    local better = d < best_d or (d == best_d and best and
      ((#n == #word) ~= (#best == #word) and #n == #word or ((#n == #word) == (#best == #word) and n < best)))
    if better then best, best_d = n, d end
  end
  return best
end

-- A Lua error about a nil field or method ("attempt to call method 'code_set' (a nil value)")
-- with " (did you mean 'code_sets'?)" added when a close name exists: among the globals, the
-- fields and methods of the globals' values (their classes included) and the tensor methods.
function M.with_suggestion(msg, env)
  env = env or _G
  local first = msg:match("^[^\n]*")
  local name = first:match("attempt to call %a+ '([%w_]+)' %(a nil value%)")
    or first:match("attempt to index %a+ '([%w_]+)' %(a nil value%)")
    or first:match("attempt to call global '([%w_]+)'")
    or first:match("has no method or field '([%w_]+)'")
  if not name then return msg end
  local names = keys_of(env, {})
  for _, v in pairs(env) do
    if type(v) == "table" then keys_of(v, names) end
  end
  local ok, tensor = pcall(require, "pivq.core.tensor")
  if ok then keys_of(tensor.methods, names) end
  local list = {}
  for k in pairs(names) do
    if type(k) == "string" and k ~= name and k:sub(1, 2) ~= "__" then list[#list + 1] = k end
  end
  local best = M.suggest(name, list)
  if not best then return msg end
  return first .. string.format(" (did you mean '%s'?)", best) .. msg:sub(#first + 1)
end

return M
