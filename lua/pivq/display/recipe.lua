-- pivq.recipe: what the bundled recipes share — loading the checkpoint named by --ckpt and a
-- --strategy-file, with one-line messages on stderr instead of tracebacks for a user's mistake.
local M = {}

local function say(prog, ...)
  io.stderr:write(prog, ": ", ...)
  io.stderr:write("\n")
end

-- model, or nil and the exit code after printing why
function M.load_model(prog, path)
  if not path then
    say(prog, "--ckpt is required")
    return nil, 2
  end
  local model, err = require("pivq.models.pivq").load(path)
  if not model then
    say(prog, err)
    return nil, 1
  end
  return model
end

-- true, or nil and the exit code after printing why; registry is pivq.interp or pivq.sample
function M.load_strategy_file(prog, registry, path)
  if not path then return true end
  local added, err = registry.load_file(path)
  if not added then
    say(prog, err)
    return nil, 1
  end
  return true
end

-- The strategy options both interpolate and sample take: load --strategy-file, then answer
-- --list. Returns nil to go on, or the exit code the recipe should return now.
function M.strategy_options(prog, registry, args)
  local ok, code = M.load_strategy_file(prog, registry, args.strategy_file)
  if not ok then return code end
  if args.list then
    local names = {}
    for name in pairs(registry.list()) do names[#names + 1] = name end
    table.sort(names)
    local docs = registry.list()
    for _, name in ipairs(names) do print(string.format("%-12s %s", name, docs[name])) end
    return 0
  end
  return nil
end

-- An image a recipe names by spec: an index (1-based) into the held-out split of the dataset
-- description desc, or an image file prepared as the dataset's images are (alpha over its
-- background, its centre crop, area resize, the model's channels). (1, C, H, W) float32 in
-- [0, 1], or nil, err. The split is opened once per desc.
local opened = setmetatable({}, { __mode = "k" })
function M.load_image(model, desc, spec)
  local layouts = require "pivq.data.layouts"
  local n = tonumber(spec)
  if n then
    local test = opened[desc]
    if not test then
      local terr
      test, terr = layouts.open(desc, "test")
      if not test then return nil, terr end
      opened[desc] = test
    end
    if n % 1 ~= 0 or n < 1 or n > test.images:size(1) then
      return nil, string.format("image index %s is outside 1..%d (the held-out split of %s)", spec,
        test.images:size(1), desc.path)
    end
    local x = test.images:narrow(1, n, 1)
    return x:dtype() == "uint8" and x:float() / 255 or x
  end
  local ds, ierr = require("pivq.data.datasets").image_folder(spec:match("^(.*)/[^/]*$") or ".",
    { files = { spec:match("([^/]*)$") }, size = model.config.image_size, channels = model.config.channels,
      crop = desc.crop or 0, background = layouts.background_of(desc.background), cache = false })
  if not ds then return nil, ierr end
  return ds.images:float() / 255
end

return M
