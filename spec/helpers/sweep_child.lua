-- One process of the bad-argument sweep (spec/lua/sweep_spec.lua runs it):
--   luajit spec/helpers/sweep_child.lua GROUP FIRST
-- makes the calls of GROUP from number FIRST on, and reports on stderr, one line each:
--   @@ CALL n id      before call n (so a crash or a hang names the call that caused it)
--   @@ FAIL n id: why the call raised an error that does not name the function
--   @@ DONE calls rss_kib
local ffi = require "ffi"
local targets = require "helpers.sweep_targets"
local pivq = require "pivq"

local group, first = arg[1], tonumber(arg[2] or 1)
-- `sweep_child.lua GROUP misspelt`: instead of bad values, one misspelt key in each options table
local misspelt = arg[2] == "misspelt"
if misspelt then first = 1 end
pivq.manual_seed(1)

-- Absurd allocations fail instead of succeeding lazily (not under ASan: its shadow memory
-- needs terabytes of address space; test-asan sets allocator_may_return_null instead).
ffi.cdef [[
struct sweep_rlimit { uint64_t cur, max; };
int setrlimit(int resource, const struct sweep_rlimit *rlim);
struct sweep_rusage { long t[4]; long maxrss; long rest[13]; };
int getrusage(int who, struct sweep_rusage *usage);
]]
if not (os.getenv("LD_PRELOAD") or ""):find("asan") then
  local limit = ffi.new("struct sweep_rlimit", 6 * 2 ^ 30, 6 * 2 ^ 30)
  ffi.C.setrlimit(9, limit) -- RLIMIT_AS
end

-- The calls of a group, in a fixed order: (target, position, bad value) where a position is an
-- argument number or {argument, key} for a field of a table argument.
local function calls_of(list)
  local nbad = #targets.bad_values()
  local out = {}
  for _, t in ipairs(list) do
    local args, n = t.args()
    -- every argument but a method's object; for a call without arguments, an unexpected one
    for i = (t.self and 2 or 1), math.max(n, t.self and 2 or 1) do
      local positions = { i }
      -- the fields of plain tables (options, lists), not of objects (their state is not an argument)
      if type(args[i]) == "table" and getmetatable(args[i]) == nil then
        local keys = {}
        for k in pairs(args[i]) do keys[#keys + 1] = k end
        table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
        for _, k in ipairs(keys) do positions[#positions + 1] = { i, k } end
      end
      for _, p in ipairs(positions) do
        for b = 1, nbad do out[#out + 1] = { t, p, b } end
      end
    end
  end
  return out
end

local function describe_call(t, p, bad_name)
  local where = type(p) == "table" and string.format("arg %d .%s", p[1], tostring(p[2])) or "arg " .. p
  return string.format("%s(%s = %s)", t.names[1], where, bad_name)
end

-- An error names the function when one of its names appears in it, the "file:line:" prefix aside.
local function names_function(err, names)
  if type(err) ~= "string" then return false end
  local msg = err:gsub("^[^%s:]+:%d+: ", ""):lower()
  for _, n in ipairs(names) do
    -- an in-place op (add_) may speak as its op (add)
    if msg:find(n:lower(), 1, true) or msg:find(n:lower():gsub("_$", ""), 1, true) then return true end
  end
  return false
end

-- Work in a scratch folder (see sweep_targets.lua), so that bad paths touch nothing else; the
-- module path made absolute first, for the modules required later.
local cwd = io.popen("pwd"):read("*l")
package.path = package.path:gsub("[^;]+", function(p) return p:sub(1, 1) == "/" and p or cwd .. "/" .. p end)
ffi.cdef "int chdir(const char *path);"
local scratch = os.tmpname()
os.remove(scratch)
assert(os.execute("mkdir " .. scratch) == 0 and ffi.C.chdir(scratch) == 0, "sweep: no scratch folder")
targets.prepare()

local list = calls_of((targets.groups[group] or targets.canary_groups[group])())
if misspelt then
  -- every plain table argument with string keys only (an options or config table) gets its first
  -- key doubled in its last letter ("stride" -> "stridee"): the call must raise naming the
  -- function, the misspelt key and the original as the closest ("did you mean 'stride'?")
  local seen, count = {}, 0
  for _, t in ipairs((targets.groups[group] or targets.canary_groups[group])()) do
    local args, n = t.args()
    for i = (t.self and 2 or 1), n do
      local a = args[i]
      local keys = {}
      if type(a) == "table" and getmetatable(a) == nil and not (t.data_args and t.data_args[i]) then
        for k in pairs(a) do keys[#keys + 1] = k end
      end
      local all_strings = #keys > 0
      for _, k in ipairs(keys) do all_strings = all_strings and type(k) == "string" end
      if all_strings then
        table.sort(keys)
        local args2 = t.args()
        local orig = keys[1]
        local bad = orig .. orig:sub(-1)
        args2[i][bad] = args2[i][orig]
        local id = string.format("%s(arg %d .%s)", t.names[1], i, bad)
        if not seen[id] then
          seen[id] = true
          count = count + 1
          local ok, err = pcall(t.fn, unpack(args2, 1, n))
          err = tostring(err)
          local want = "unknown [%w ]+ '" .. bad:gsub("%p", "%%%0") .. "' %(did you mean '" .. orig:gsub("%p", "%%%0")
            .. "'%?%)"
          if ok or not err:find(want) or not names_function(err, t.names) then
            io.stderr:write("@@ MISS ", id, ": ", ok and "accepted" or err:gsub("\n", " "), "\n")
          end
        end
      end
    end
  end
  io.stderr:write("@@ DONE ", count, " 0\n")
  os.execute("rm -rf " .. scratch)
  os.exit(0)
end
local max_pixels = pivq.image.max_pixels()
local out = io.stderr
local threads = pivq.get_num_threads()
for n = first, #list do
  local t, p, b = list[n][1], list[n][2], list[n][3]
  local bad = targets.bad_values()[b]
  local id = describe_call(t, p, bad[1])
  out:write("@@ CALL ", n, " ", id, "\n")
  local args, nargs = t.args()
  if type(p) == "table" then
    args[p[1]][p[2]] = bad[2]
  else
    args[p] = bad[2]
    nargs = math.max(nargs, p)
  end
  local ok, err = pcall(t.fn, unpack(args, 1, nargs))
  if not ok and not names_function(err, t.names) then
    out:write("@@ FAIL ", n, " ", id, ": ", tostring(err):gsub("\n", " "), "\n")
  end
  -- undo the global state a call may have changed
  pivq.set_grad_enabled(true)
  pivq.set_num_threads(threads)
  pivq.image.max_pixels(max_pixels)
end
os.execute("rm -rf " .. scratch)
local usage = ffi.new("struct sweep_rusage")
ffi.C.getrusage(0, usage)
out:write("@@ DONE ", #list, " ", tonumber(usage.maxrss), "\n")
