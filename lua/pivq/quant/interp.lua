-- pivq.interp: interpolation between two images' code sets, as a registry of strategies.
--
-- A strategy is fn(A, B, opts) -> path, where A and B are CodeSets of equal size L and the
-- path is a list of CodeSets from A (first) to B (last). Codes common to A and B never move.
-- opts: steps (number of transitions; default one swap per step), seed, and whatever the
-- strategy needs (model, codebook, latents). Share a strategy as a Lua file that calls
-- pivq.interp.register(name, fn, doc); `pivq interpolate --strategy-file FILE` loads it.
--
-- Built-ins:
--   random     replace A's codes by B's one at a time in a random order (seeded)
--   paired     pair A's codes with B's by optimal assignment on their embeddings; closest first
--   smoothest  greedy: each step takes the swap whose decoded image changes least
--   lerp       interpolate the continuous latents and re-quantize (a contrast; frames may
--              change several codes at once)
local CodeSet = require "pivq.quant.CodeSet"
local random = require "pivq.core.random"
local tensor = require "pivq.core.tensor"

local M = {}

local strategies = require("pivq.quant.Registry").new("interp")
local argcheck = require "pivq.core.argcheck"

-- register(name, fn, doc [, {replace = true}]): a taken name (a built-in too) needs replace
function M.register(name, fn, doc, opts) strategies:register(name, fn, doc, opts) end
function M.list() return strategies:list() end
function M.get(name) return strategies:get(name) end
-- Load a user's strategy file (it registers itself). Returns the names it added, or nil, err.
function M.load_file(path) return strategies:load_file(path) end

-- Group sizes for `total` swaps in `steps` transitions: as even as possible, larger first.
function M.plan_steps(total, steps)
  argcheck.number("plan_steps", "total", total, nil, true)
  argcheck.number("plan_steps", "steps", steps, total, true)
  steps = math.max(1, math.min(steps or total, math.max(total, 1)))
  local sizes = {}
  for i = 1, steps do sizes[i] = math.floor(total / steps) + (i <= total % steps and 1 or 0) end
  return sizes
end

-- Frames from an ordered list of swaps {{remove = a, add = b}, ...}.
function M.path_from_swaps(A, swaps, steps)
  if not CodeSet.is_codeset(A) then error("path_from_swaps: A must be a CodeSet, got " .. type(A), 2) end
  if type(swaps) ~= "table" then error("path_from_swaps: swaps must be a list {{remove =, add =}, ...}", 2) end
  argcheck.number("path_from_swaps", "steps", steps, #swaps, true)
  for i = 1, #swaps do
    if type(swaps[i]) ~= "table" then
      error(string.format("path_from_swaps: swap %d is %s, not {remove =, add =}", i, type(swaps[i])), 2)
    end
    if type(swaps[i].remove) ~= "number" or type(swaps[i].add) ~= "number" then
      error(string.format("path_from_swaps: swap %d needs codes remove = and add = (numbers), got %s and %s", i,
        type(swaps[i].remove), type(swaps[i].add)), 2)
    end
  end
  local path = { A }
  local cur, at = A, 0
  if #swaps == 0 then return path end
  for _, n in ipairs(M.plan_steps(#swaps, steps)) do
    for i = at + 1, at + n do cur = cur:replace(swaps[i].remove, swaps[i].add) end
    at = at + n
    path[#path + 1] = cur
  end
  return path
end

local function generator(opts) return random.Generator(opts.seed or 0) end

local function shuffled(list, g)
  if #list == 0 then return {} end
  local perm = random.randperm(#list, { generator = g })
  local out = {}
  for i = 1, #list do out[i] = list[perm[i]] end
  return out
end

-- Validate a strategy's output: A first, B last, every frame of size L.
local function check_path(name, A, B, path)
  if type(path) ~= "table" or #path < 1 then
    error(string.format("interp '%s': the strategy returned no path", name), 3)
  end
  for i, frame in ipairs(path) do
    if not CodeSet.is_codeset(frame) then
      error(string.format("interp '%s': frame %d is not a CodeSet", name, i), 3)
    end
    if frame:size() ~= A:size() then
      error(string.format("interp '%s': frame %d has %d codes, expected %d", name, i, frame:size(), A:size()), 3)
    end
  end
  if not path[1]:equals(A) or not path[#path]:equals(B) then
    error(string.format("interp '%s': the path must start at A and end at B", name), 3)
  end
end

-- pivq.interp.path(name, A, B, opts): run a registered strategy and check its path.
function M.path(name, A, B, opts)
  opts = argcheck.options("interp.path", opts)
  argcheck.number("interp.path", "steps", opts.steps, 1, true)
  if not CodeSet.is_codeset(A) or not CodeSet.is_codeset(B) then
    error("interp.path: A and B must be CodeSets (pivq.CodeSet(codes))", 2)
  end
  if A:size() ~= B:size() then
    error(string.format("interp.path: A has %d codes but B has %d", A:size(), B:size()), 2)
  end
  local path = strategies:call(name, A, B, opts) -- an error or os.exit inside fails here
  check_path(name, A, B, path)
  return path
end

-- Options for running any built-in strategy between images xa and xb (1 x C x H x W each) of a
-- model: opts (steps, seed, ...) plus the model, and for lerp the two images' latents and the
-- model's quantizer as `quantize`.
function M.model_options(model, xa, xb, opts)
  if type(model) ~= "table" or type(model.latents) ~= "function" then
    error("interp.model_options: model must be a pivq model, got " .. type(model), 2)
  end
  for _, arg in ipairs({ { "xa", xa }, { "xb", xb } }) do
    local c = model.config
    if not tensor.is_tensor(arg[2]) or arg[2]:dim() ~= 4 or arg[2]:size(1) ~= 1
      or (c and (arg[2]:size(2) ~= c.channels or arg[2]:size(3) ~= c.image_size or arg[2]:size(4) ~= c.image_size)) then
      error(string.format("interp.model_options: %s must be one image (1 x C x H x W), got %s", arg[1],
        tensor.is_tensor(arg[2]) and argcheck.shape_string(arg[2]) or type(arg[2])), 2)
    end
  end
  local out = {}
  for k, v in pairs(argcheck.options("interp.model_options", opts)) do out[k] = v end
  out.model = model
  local z = require("pivq.core.autograd").no_grad(function() return model:latents(tensor.cat({ xa, xb }, 1)) end)
  out.latents_a, out.latents_b = z[1], z[2]
  out.quantize = function(lat) return model.quantizer:assign(lat:view(1, model.config.L, -1)) end
  return out
end

-- ---- built-ins --------------------------------------------------------------------------

-- the built-in "random" (pivq.sample compares against it: while it is the registered "random",
-- sampling draws the one point it needs without building the path; the two must stay in step)
function M._random_path(A, B, opts)
  local removals, additions = A:diff(B)
  local g = generator(opts)
  removals, additions = shuffled(removals, g), shuffled(additions, g)
  local swaps = {}
  for i = 1, #removals do swaps[i] = { remove = removals[i], add = additions[i] } end
  return M.path_from_swaps(A, swaps, opts.steps)
end
M.register("random", M._random_path,
  "replace A's codes by B's one at a time in a random order (different seeds, different paths)")

-- The codebook: opts.codebook (K x c), or the model's.
local function codebook_of(opts, name)
  local cb = opts.codebook or (opts.model and opts.model.codebook and opts.model:codebook())
  if not tensor.is_tensor(cb) then
    error(string.format("interp '%s' needs opts.codebook (K x c) or opts.model with :codebook()", name), 4)
  end
  return cb
end

M.register("paired", function(A, B, opts)
  local removals, additions = A:diff(B)
  if #removals == 0 then return { A } end
  local cb = codebook_of(opts, "paired")
  local ea = cb:index_select(1, tensor.tensor(removals, "int64"))
  local eb = cb:index_select(1, tensor.tensor(additions, "int64"))
  local cost = require("pivq.quant.vq").sq_distances(ea, eb)
  local match = require("pivq.quant.vq").assign(cost) -- optimal pairing, 1-based columns
  local swaps = {}
  for i = 1, #removals do
    local j = match[i]
    swaps[i] = { remove = removals[i], add = additions[j], cost = cost:get(i, j) }
  end
  table.sort(swaps, function(x, y)
    if x.cost ~= y.cost then return x.cost < y.cost end
    return x.remove < y.remove
  end)
  return M.path_from_swaps(A, swaps, opts.steps)
end, "pair A's codes with B's by optimal assignment on code embeddings; swap the closest pairs first")

M.register("smoothest", function(A, B, opts)
  local model = opts.model
  if not (model and model.decode) then
    error("interp 'smoothest' needs opts.model with :decode(codes)", 3)
  end
  local removals, additions = A:diff(B)
  local swaps = {}
  local cur = A
  while #removals > 0 do
    -- decode the current frame and every candidate swap in one batch
    local frames, cand = { cur }, {}
    for i, r in ipairs(removals) do
      for j, a in ipairs(additions) do
        if r ~= a then
          frames[#frames + 1] = cur:replace(r, a)
          cand[#cand + 1] = { i = i, j = j }
        end
      end
    end
    local images = model:decode(CodeSet.to_rows(frames))
    local n = images:size(1)
    local flat = images:reshape(n, -1)
    local delta = (flat:narrow(1, 2, n - 1) - flat:narrow(1, 1, 1)):pow(2):mean(2)
    local _, best = delta:min(1)
    local pick = cand[best:item()]
    local r, a = removals[pick.i], additions[pick.j]
    swaps[#swaps + 1] = { remove = r, add = a }
    cur = cur:replace(r, a)
    table.remove(removals, pick.i)
    table.remove(additions, pick.j)
  end
  return M.path_from_swaps(A, swaps, opts.steps)
end, "greedy: at each step the swap whose decoded image changes least (needs a model)")

M.register("lerp", function(A, B, opts)
  local za, zb, quantize = opts.latents_a, opts.latents_b, opts.quantize
  if not (tensor.is_tensor(za) and tensor.is_tensor(zb) and type(quantize) == "function") then
    error("interp 'lerp' needs opts.latents_a, opts.latents_b (L x c) and opts.quantize(z) -> codes", 3)
  end
  local steps = opts.steps or 8
  local path = { A }
  for s = 1, steps - 1 do
    local t = s / steps
    local codes = quantize(za * (1 - t) + zb * t)
    path[#path + 1] = CodeSet.new(tensor.is_tensor(codes) and codes:view(-1) or codes,
      { K = A.K, multiset = A.multiset })
  end
  path[#path + 1] = B
  return path
end, "interpolate the continuous latents and re-quantize (a contrast; needs latents and a quantizer)")

return M
