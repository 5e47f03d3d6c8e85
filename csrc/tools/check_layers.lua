-- check_layers.lua CSRC_DIR "LAYER LAYER ..." FILE... : fail when a file of csrc/ includes a
-- layer above its own.
--
-- The layers are csrc/'s folders, named lowest first in the second argument (CMakeLists.txt
-- passes its PIVQ_LAYERS list, so the order is written down once). FILEs are paths relative to
-- CSRC_DIR (the build passes every .c/.h under it). A file in layer N may include
--   "pivq.h" (the public header), and "M/name.h" for any layer M at or below N.
-- The host (csrc/host/) includes only "pivq.h": it is a user of the public API like any other.
-- Fuzz targets (csrc/fuzz/) test internals and may include any layer's header.
-- Every .c and .h file of csrc/ must sit in a layer folder, host/, fuzz/ or tools/, except
-- pivq.h itself: a flat file would belong to no layer.
--
-- Prints one line per violation ("csrc/FILE:LINE: ...") and exits 1 if there is any; run by the
-- build (target pivq_layers) and by `.ci/task lint`.
local root, layer_list = arg[1], arg[2]
if not root or not layer_list or not arg[3] then
  io.stderr:write('usage: luajit check_layers.lua CSRC_DIR "LAYER ..." FILE... (lowest layer first)\n')
  os.exit(2)
end
local layers, rank = {}, {}
for name in layer_list:gmatch("[^%s;]+") do
  layers[#layers + 1] = name
  rank[name] = #layers
end
local free_folders = { host = true, fuzz = true, tools = true }
local files = {}
for i = 3, #arg do files[#files + 1] = (arg[i]:gsub("^%./", "")) end
table.sort(files) -- stable output

local violations = 0
local function report(file, line, msg)
  violations = violations + 1
  io.stdout:write(string.format("csrc/%s:%d: %s\n", file, line, msg))
end

local function below(name)
  local allowed = {}
  for i = 1, rank[name] do allowed[#allowed + 1] = layers[i] end
  return table.concat(allowed, ", ")
end

for _, file in ipairs(files) do
  local folder = file:match("^([^/]+)/")
  if not folder then
    if file ~= "pivq.h" then report(file, 1, "is in no layer: move it into one of " .. table.concat(layers, ", ")) end
  elseif not rank[folder] and not free_folders[folder] then
    report(file, 1, "folder '" .. folder .. "' is not a layer (" .. table.concat(layers, ", ") .. ")")
  else
    local n = 0
    local f, err = io.open(root .. "/" .. file, "r")
    if not f then
      io.stderr:write("check_layers: ", err, "\n")
      os.exit(2)
    end
    f:close()
    for line in io.lines(root .. "/" .. file) do
      n = n + 1
      local inc = line:match('^%s*#%s*include%s*"([^"]+)"')
      if inc and inc ~= "pivq.h" then
        local target = inc:match("^([^/]+)/")
        if folder == "host" then
          report(file, n, 'includes "' .. inc .. '": the host uses the public API only ("pivq.h")')
        elseif folder == "fuzz" or folder == "tools" then
          if not (target and rank[target]) then
            report(file, n, 'includes "' .. inc .. '": name the layer folder ("core/core.h", ...)')
          end
        elseif not target then
          report(file, n, 'includes "' .. inc .. '": name the layer folder ("' .. folder .. '/' .. inc .. '")')
        elseif not rank[target] then
          report(file, n, 'includes "' .. inc .. '": ' .. target .. " is not a layer")
        elseif rank[target] > rank[folder] then
          report(file, n, 'includes "' .. inc .. '": layer ' .. folder .. " may include only " .. below(folder)
            .. " (" .. target .. " is above it)")
        end
      end
    end
  end
end

if violations > 0 then
  io.stdout:write(string.format("check_layers: %d layer violation(s)\n", violations))
  os.exit(1)
end
