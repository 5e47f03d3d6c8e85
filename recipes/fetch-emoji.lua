-- fetch-emoji: a real colour dataset — aligned 64x64 RGBA emoji images with category attributes
-- (CelebA's list_attr_celeba.txt format), fetched from the npm registry with Debian's npm.
--
-- The images are Twemoji (emoji-datasource-twitter: the package is MIT, the Twemoji graphics are
-- CC BY 4.0, (c) Twitter, Inc and other contributors: attribute them when you publish results)
-- or OpenMoji (openmoji: CC BY-SA 4.0). Nothing is committed to the repository: the data lands
-- in --out. Programs run without a shell (posix_spawnp), so no path reaches one.
local argparse = require "argparse"
local ffi = require "ffi"
local json = require "dkjson"
local pivq = require "pivq"

local SETS = {
  twitter = { package = "emoji-datasource-twitter", version = "16.0.0", flag = "has_img_twitter",
    dir = "package/img/twitter/64", licence = "CC BY 4.0 (Twemoji graphics, (c) Twitter, Inc and other "
      .. "contributors, https://creativecommons.org/licenses/by/4.0/); package data MIT" },
}

local parser = argparse("pivq fetch-emoji", "Fetch aligned 64x64 RGBA emoji images from npm into --out, with a\n"
  .. "CelebA-format list_attr_celeba.txt of their categories (one +1/-1 attribute per category,\n"
  .. "and Skin_Tone for the skin-tone variants). Licence: see LICENCE.txt in --out.")
parser:option("--out", "dataset folder to create", "data/emoji")
parser:option("--set", "emoji set: twitter", "twitter")
local args = parser:parse(arg)

local set = SETS[args.set]
if not set then
  io.stderr:write("pivq fetch-emoji: --set must be twitter, got ", args.set, "\n")
  return 2
end

for _, decl in ipairs({ "int posix_spawnp(int *pid, const char *file, const void *actions, const void *attr, "
  .. "char *const argv[], char *const envp[]);", "extern char **environ;",
  "int waitpid(int pid, int *status, int options);", "char *strerror(int errnum);" }) do
  pcall(ffi.cdef, decl)
end

-- run argv (no shell); true, or nil and why
local function run(argv)
  local cargv = ffi.new("char *[?]", #argv + 1)
  local keep = {}
  for i, s in ipairs(argv) do
    keep[i] = ffi.new("char[?]", #s + 1, s)
    cargv[i - 1] = keep[i]
  end
  local pid = ffi.new("int[1]")
  local rc = ffi.C.posix_spawnp(pid, argv[1], nil, nil, cargv, ffi.C.environ)
  if rc ~= 0 then return nil, argv[1] .. ": " .. ffi.string(ffi.C.strerror(rc)) end
  local st = ffi.new("int[1]")
  if ffi.C.waitpid(pid[0], st, 0) < 0 then return nil, argv[1] .. ": waitpid failed" end
  if st[0] ~= 0 then return nil, string.format("%s exited with status %d", table.concat(argv, " "), st[0]) end
  return true
end

local function fail(...)
  io.stderr:write("pivq fetch-emoji: ", ...)
  io.stderr:write("\n")
  return 1
end

local mkdirs = pivq.files.mkdir_p
local download = args.out .. "/.download"
local ok, err = mkdirs(download)
if not ok then return fail(err) end
local tgz = string.format("%s/%s-%s.tgz", download, set.package, set.version)
if not io.open(tgz, "rb") then
  print(string.format("npm pack %s@%s -> %s", set.package, set.version, download))
  ok, err = run({ "npm", "pack", "--silent", "--pack-destination", download, set.package .. "@" .. set.version })
  if not ok then return fail(err, " (is npm installed and the registry reachable?)") end
end
ok, err = run({ "tar", "-xzf", tgz, "-C", download, "package/emoji.json", set.dir })
if not ok then return fail(err) end

local f = assert(io.open(download .. "/package/emoji.json", "rb"))
local list = json.decode(f:read("*a"))
f:close()
if type(list) ~= "table" then return fail("package/emoji.json is not a JSON list") end

-- every image with its category (base emoji and skin-tone variants)
local items, cats, seen = {}, {}, {}
local function add(image, category, skin)
  if type(image) ~= "string" or not image:match("^[%w%-]+%.png$") or seen[image] then return end
  seen[image] = true
  items[#items + 1] = { image = image, category = category, skin = skin }
  cats[category] = true
end
for _, e in ipairs(list) do
  if e[set.flag] and type(e.category) == "string" then
    add(e.image, e.category, false)
    for _, v in pairs(e.skin_variations or {}) do
      if v[set.flag] then add(v.image, e.category, true) end
    end
  end
end
table.sort(items, function(a, b) return a.image < b.image end)
local names = {}
for c in pairs(cats) do names[#names + 1] = c end
table.sort(names)
local attr_names = {}
for i, c in ipairs(names) do attr_names[i] = c:gsub("%s*&%s*", "_"):gsub("%s+", "_") end
attr_names[#attr_names + 1] = "Skin_Tone"

ok, err = mkdirs(args.out .. "/images")
if not ok then return fail(err) end
local rows = { tostring(#items), table.concat(attr_names, " ") .. " " }
local copied = 0
for _, it in ipairs(items) do
  local src = io.open(download .. "/" .. set.dir .. "/" .. it.image, "rb")
  if src then
    local bytes = src:read("*a")
    src:close()
    ok, err = pivq.files.write_text(args.out .. "/images/" .. it.image, bytes)
    if not ok then return fail(err) end
    copied = copied + 1
    local cells = {}
    for i, c in ipairs(names) do cells[i] = string.format("%2d", c == it.category and 1 or -1) end
    cells[#cells + 1] = string.format("%2d", it.skin and 1 or -1)
    rows[#rows + 1] = "images/" .. it.image .. " " .. table.concat(cells, " ")
  end
end
rows[1] = tostring(copied)
ok, err = pivq.files.write_text(args.out .. "/list_attr_celeba.txt", table.concat(rows, "\n") .. "\n")
if not ok then return fail(err) end
ok, err = pivq.files.write_text(args.out .. "/LICENCE.txt", string.format("Images from the npm package %s@%s.\n"
  .. "Licence: %s.\nlist_attr_celeba.txt (categories as +1/-1 attributes) was written by `pivq fetch-emoji`.\n",
  set.package, set.version, set.licence))
if not ok then return fail(err) end
print(string.format("%d images of 64x64 RGBA in %s/images, %d attributes (%s) in %s/list_attr_celeba.txt",
  copied, args.out, #attr_names, table.concat(attr_names, ", "), args.out))
print("licence: " .. set.licence)
return 0
