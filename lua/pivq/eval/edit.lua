-- pivq.edit: attribute editing by exchanging codes (notebooks/METHOD.md, "Attribute editing").
--
-- The per-attribute probe (pivq.probe: an L2-regularised logistic regression from a bag of codes)
-- fitted on training images gives each code a weight: how much one occurrence of it moves the
-- probe's logit towards the attribute. An edit of strength n takes out the n codes of an image
-- that speak most against the attribute (the lowest weights) and puts in the n codes not already
-- there that speak most for it (the highest), so a matching model's set stays a set.
--
--   local w = pivq.edit.code_weights(codes, values, K)     -- K weights from N x L codes, N of +1/-1
--   local row, removed, added = pivq.edit.apply(row, w, n) -- one image's codes (a Lua list)
--   m:edit(codes, "Smiling", 3)                            -- a CodeSet, a list of them, or (B, L)
--   pivq.edit.measure(m, {...})                            -- flips and PSNR against random exchanges
local tensor = require "pivq.core.tensor"
local random = require "pivq.core.random"
local argcheck = require "pivq.core.argcheck"
local probe = require "pivq.eval.probe"

local M = {}

M.DEFAULT_TRAIN_IMAGES = 5000 -- training images the weights are fitted on
M.DEFAULT_L2 = 1e-3 -- as `pivq probe`

-- The attribute's column of a dataset (+1 has it, -1 not; N int64), its name and what it is:
-- a binary attribute by name (list_attr_celeba.txt), or for a labelled dataset (Fashion-MNIST)
-- a class, by name or 1-based number, as "this class or not". Case is ignored.
function M.attribute_column(ds, attribute)
  if type(attribute) ~= "string" and type(attribute) ~= "number" then
    error("edit: attribute must be a name (or a class number), got " .. type(attribute), 3)
  end
  if type(ds) ~= "table" then error("edit: the dataset must be a table {attributes =, attribute_names =} or "
    .. "{labels =}, got " .. type(ds), 3) end
  local want = tostring(attribute):lower()
  if ds.attributes ~= nil or ds.attribute_names ~= nil then
    local names = ds.attribute_names
    if not tensor.is_tensor(ds.attributes) or ds.attributes:dim() ~= 2 or type(names) ~= "table"
      or #names ~= ds.attributes:size(2) then
      error("edit: the dataset's attributes must be an N x A tensor with A attribute_names", 3)
    end
    for i = 1, #names do
      if type(names[i]) ~= "string" then error(string.format("edit: attribute name %d is not a string", i), 3) end
    end
    for a, name in ipairs(ds.attribute_names) do
      if name:lower() == want then return ds.attributes:select(2, a):long(), name, { attribute = a } end
    end
    error(string.format("edit: unknown attribute '%s' (the dataset's: %s)", tostring(attribute),
      table.concat(ds.attribute_names, ", ")), 3)
  end
  if ds.labels ~= nil then
    if not tensor.is_tensor(ds.labels) or ds.labels:dim() ~= 1 or ds.labels:numel() == 0
      or (ds.labels:dtype() ~= "int64" and ds.labels:dtype() ~= "int32") then
      error("edit: the dataset's labels must be a non-empty 1-D integer tensor", 3)
    end
    local names = require("pivq.data.datasets").FASHION_MNIST_CLASSES
    local C = ds.labels:max()
    if ds.labels:min() < 1 or C > 100000 then
      error(string.format("edit: the dataset's labels must be classes 1..C (C <= 100000), got %d..%d",
        ds.labels:min(), C), 3)
    end
    for c = 1, C do
      local name = names[c] or tostring(c)
      if name:lower() == want or tostring(c) == want then
        return ds.labels:eq(c):long():mul(2):sub(1), name, { class = c }
      end
    end
    local list = {}
    for c = 1, C do list[c] = names[c] or tostring(c) end
    error(string.format("edit: unknown class '%s' (the classes: %s, or their numbers 1..%d)", tostring(attribute),
      table.concat(list, ", "), C), 3)
  end
  error("edit: the dataset has neither attributes nor class labels to edit by", 3)
end

-- Each code's weight for an attribute: the probe (two-class softmax regression on standardised
-- bags of codes, pivq.probe.fit) fitted on codes (N x L, 1-based) against values (N of +1/-1),
-- as the change of its logit for one more occurrence of the code: (W[k,2] - W[k,1]) / std_k.
-- A code no image uses gets 0. Returns a K float32 tensor and the fit.
function M.code_weights(codes, values, K, opts)
  opts = argcheck.options("edit.code_weights", opts, { "l2", "max_iter" })
  local l2 = argcheck.number("edit.code_weights", "l2", opts.l2, M.DEFAULT_L2)
  if not (l2 >= 0 and l2 < math.huge) then error("edit.code_weights: l2 must be a finite number >= 0", 2) end
  if not tensor.is_tensor(values) or values:dim() ~= 1 or not tensor.is_tensor(codes) or codes:dim() ~= 2
    or codes:size(1) ~= values:size(1) then
    error("edit.code_weights: need codes (N x L) and values (N of +1/-1) tensors", 2)
  end
  local v = values:long()
  if v:ne(1):mul(v:ne(-1)):sum():item() > 0 then error("edit.code_weights: values must be +1 or -1", 2) end
  local positive = v:eq(1):sum():item()
  if positive == 0 or positive == v:numel() then
    error(string.format("edit.code_weights: the attribute is %s on all %d images: nothing to rank codes by",
      positive == 0 and "absent" or "present", v:numel()), 2)
  end
  local X = probe.bag_of_codes(codes, K)
  local fit = probe.fit(X, v:gt(0):long():add(1), { classes = 2, l2 = l2,
    max_iter = opts.max_iter })
  local w = (fit.W:select(2, 2) - fit.W:select(2, 1)) / fit.std:view(-1)
  return w:contiguous(), fit
end

-- As a Lua list w[k] (1-based), from a tensor or a list.
local function weight_list(fname, w, level)
  if tensor.is_tensor(w) then
    if w:dim() ~= 1 then error(fname .. ": weights must be a 1-D tensor of K weights", level + 1) end
    w = w:float():totable()
  end
  if type(w) ~= "table" or #w == 0 then error(fname .. ": weights must be a K tensor or list", level + 1) end
  for k = 1, #w do
    local v = w[k]
    if type(v) ~= "number" or v ~= v then
      error(string.format("%s: weight %d is %s, not a number", fname, k, tostring(v)), level + 1)
    end
  end
  return w
end

local function check_row(fname, row, K, level)
  if type(row) ~= "table" or #row == 0 then error(fname .. ": the codes must be a non-empty list", level + 1) end
  for i = 1, #row do
    local k = row[i]
    if type(k) ~= "number" or k % 1 ~= 0 or k < 1 or k > K then
      error(string.format("%s: code %s (entry %d) is not in 1..%d", fname, tostring(k), i, K), level + 1)
    end
  end
end

local function check_strength(fname, n, row, K, level)
  local present, distinct = {}, 0
  for _, k in ipairs(row) do
    if not present[k] then distinct = distinct + 1 end
    present[k] = true
  end
  if type(n) ~= "number" or n % 1 ~= 0 or n < 0 or n > #row or n > K - distinct then
    error(string.format("%s: the strength n must be an integer in 0..%d (the image's %d codes; %d codes are not "
      .. "in it), got %s", fname, math.min(#row, K - distinct), #row, K - distinct, tostring(n)), level + 1)
  end
  return present
end

-- apply(row, w, n [, {positional =}]) -> the edited row, the removed codes, the added codes.
-- row: one image's codes (a Lua list, 1-based); w: K weights. The n positions holding the
-- lowest weights (ties: the lower code, then the earlier position) get the n codes not in the
-- row with the highest weights (ties: the lower code), the lowest position the highest code.
-- The result is sorted, as pivq's encode gives a set or multiset, unless positional (slot
-- order kept: each removed slot gets its replacement).
function M.apply(row, w, n, opts)
  opts = argcheck.options("edit.apply", opts, { "positional" })
  w = weight_list("edit.apply", w, 2)
  local K = #w
  check_row("edit.apply", row, K, 2)
  local present = check_strength("edit.apply", n, row, K, 2)
  local pos = {}
  for i = 1, #row do pos[i] = i end
  table.sort(pos, function(a, b)
    local wa, wb = w[row[a]], w[row[b]]
    if wa ~= wb then return wa < wb end
    if row[a] ~= row[b] then return row[a] < row[b] end
    return a < b
  end)
  local candidates = {}
  for k = 1, K do
    if not present[k] then candidates[#candidates + 1] = k end
  end
  table.sort(candidates, function(a, b)
    if w[a] ~= w[b] then return w[a] > w[b] end
    return a < b
  end)
  local out, removed, added = {}, {}, {}
  for i, k in ipairs(row) do out[i] = k end
  for i = 1, n do
    removed[i], added[i] = row[pos[i]], candidates[i]
    out[pos[i]] = candidates[i]
  end
  if not opts.positional then table.sort(out) end
  return out, removed, added
end

-- The baseline: n random positions of row get n random distinct codes not in it (generator g).
-- Returns the row (sorted unless opts.positional), the removed and the added codes.
function M.random_exchange(row, n, K, g, opts)
  opts = argcheck.options("edit.random_exchange", opts, { "positional" })
  argcheck.number("edit.random_exchange", "K", K, nil, true)
  if g ~= nil and not random.is_generator(g) then
    error("edit.random_exchange: g must be a pivq.Generator (or nil: the global one), got " .. type(g), 2)
  end
  check_row("edit.random_exchange", row, K, 2)
  local present = check_strength("edit.random_exchange", n, row, K, 2)
  local perm = random.randperm(#row, { generator = g }):totable()
  local out, removed, added, taken = {}, {}, {}, {}
  for i, k in ipairs(row) do out[i] = k end
  for i = 1, n do
    local k
    repeat
      k = random.randint(1, K + 1, { 1 }, { generator = g })[1]
    until not present[k] and not taken[k]
    taken[k] = true
    removed[i], added[i] = row[perm[i]], k
    out[perm[i]] = k
  end
  if not opts.positional then table.sort(out) end
  return out, removed, added
end

-- ---- the model's side (m:attribute_weights, m:edit) ---------------------------------------------

-- weights_for(model, attribute, {images =, l2 =}) -> K weights, the attribute's name. Fitted on
-- the codes of the first `images` training images of the model's own data (its code bank,
-- cached beside the checkpoint) and cached on the model per attribute.
function M.weights_for(model, attribute, opts)
  opts = argcheck.options("attribute_weights", opts, { "images", "l2", "progress" })
  local n = argcheck.number("attribute_weights", "images", opts.images, M.DEFAULT_TRAIN_IMAGES, true)
  local layouts = require "pivq.data.layouts"
  local key = string.format("%s|%d|%g", tostring(attribute):lower(), n, opts.l2 or M.DEFAULT_L2)
  model._edit_weights = model._edit_weights or {}
  local hit = model._edit_weights[key]
  if hit then return hit.w, hit.name end
  local desc, err = layouts.of_model(model)
  local ds
  if desc then ds, err = layouts.open(desc, "train") end
  if not ds then error("attribute_weights: cannot open the model's training data: " .. tostring(err), 3) end
  local values, name = M.attribute_column(ds, attribute)
  n = math.min(n, values:size(1))
  -- the model's own bank (cut from the cached one, or the first n images encoded and cached)
  local bank, berr = require("pivq.quant.bank").load(model, { limit = n, progress = opts.progress })
  if not bank then error("attribute_weights: " .. tostring(berr), 3) end
  local w = M.code_weights(bank.codes:narrow(1, 1, n), values:narrow(1, 1, n), model.config.K, { l2 = opts.l2 })
  model._edit_weights[key] = { w = w, name = name }
  return w, name
end

-- edit(model, codes, attribute, n) -> the edited codes in the kind given (a CodeSet, a list of
-- CodeSets, or a (B, L) int64 tensor: sorted rows, or slot order for a positional model) and,
-- per image, {removed =, added =} (one table for a CodeSet, a list otherwise). attribute: a name,
-- or a K tensor of weights to rank the codes by.
function M.edit(model, codes, attribute, n, opts)
  local CodeSet = require "pivq.quant.CodeSet"
  -- an attribute, or the K weights themselves (a tensor: your own ranking of the codes)
  local w = tensor.is_tensor(attribute) and attribute or M.weights_for(model, attribute, opts)
  if w:dim() ~= 1 or w:numel() ~= model.config.K then
    error(string.format("PIVQ:edit: weights must be a tensor of K = %d numbers, got %s", model.config.K,
      argcheck.shape_string(w)), 3)
  end
  local wl = w:float():totable()
  local positional = model.config.mode == "positional"
  local function one(row)
    local out, removed, added = M.apply(row, wl, n, { positional = positional })
    return out, { removed = removed, added = added }
  end
  if CodeSet.is_codeset(codes) then
    local out, info = one(codes:totable())
    return CodeSet.new(out, { K = codes.K or model.config.K, multiset = codes.multiset }), info
  end
  local is_tensor = tensor.is_tensor(codes)
  if is_tensor and (codes:dim() ~= 2 or codes:size(2) ~= model.config.L) then
    error(string.format("PIVQ:edit: expected codes (B, %d), got %s", model.config.L, argcheck.shape_string(codes)), 3)
  end
  if not is_tensor and (type(codes) ~= "table" or #codes == 0 or not CodeSet.is_codeset(codes[1])) then
    error("PIVQ:edit: codes must be a CodeSet, a list of CodeSets or a (B, L) tensor, got " .. type(codes), 3)
  end
  local rows, infos = {}, {}
  for b = 1, is_tensor and codes:size(1) or #codes do
    local row = is_tensor and codes:select(1, b):totable() or codes[b]:totable()
    rows[b], infos[b] = one(row)
  end
  if is_tensor then return tensor.tensor(rows, "int64"), infos end
  local sets = {}
  for b, row in ipairs(rows) do sets[b] = CodeSet.new(row, { K = codes[b].K, multiset = codes[b].multiset }) end
  return sets, infos
end

-- ---- the classifier's verdict and the measurement -----------------------------------------------

-- A function(images) -> Lua list of booleans: whether the attribute classifier (an extractor of
-- pivq.features with logits) finds the attribute: its class wins (a label classifier), or its
-- logit is positive (an attribute classifier).
function M.verdict(fx, ds, attribute)
  if not fx.logits then error("edit: the feature space " .. tostring(fx.name) .. " has no classifier head", 3) end
  local _, name, where = M.attribute_column(ds, attribute)
  if where.class and fx.targets ~= "classes" or where.attribute and fx.targets ~= "attributes" then
    error(string.format("edit: the classifier %s was trained on %s, not on the %s of this dataset", fx.path or "",
      fx.targets or "?", where.class and "classes" or "attributes"), 3)
  end
  return function(images)
    local logits = fx.logits(images)
    local out = {}
    if where.class then
      local _, pred = logits:max(2)
      for i, c in ipairs(pred:view(-1):totable()) do out[i] = c == where.class end
    else
      for i, v in ipairs(logits:select(2, where.attribute):totable()) do out[i] = v > 0 end
    end
    return out
  end, name
end

-- Per-image PSNR (dB) of a against b, images (N, C, H, W) in [0, 1]: a Lua list.
local function psnr_each(a, b)
  local mse = (a - b):pow(2):reshape(a:size(1), -1):mean(2):totable()
  local out = {}
  for i, m in ipairs(mse) do out[i] = 10 * math.log10(1 / math.max(m, 1e-10)) end
  return out
end

local function mean(list)
  local s = 0
  for _, v in ipairs(list) do s = s + v end
  return #list > 0 and s / #list or 0 / 0
end

-- measure(model, {test =, attribute =, strength =, classifier =, images = 500, pool = 2000,
-- seed = 1, weights = {images =, l2 =}}) -> a table: of the first `pool` held-out images, those
-- whose reconstruction the classifier finds without the attribute (up to `images`) are edited
-- towards it with the probe's codes, and by as many random code exchanges; reported: the share
-- whose classifier output flips (edit and random), mean PSNR of each to the original image and
-- of the reconstruction, and the images used.
function M.measure(model, opts)
  opts = argcheck.options("edit.measure", opts, { "test", "attribute", "strength", "classifier", "images", "pool",
    "seed", "weights", "batch" })
  local test, fx = opts.test, opts.classifier
  local n = argcheck.number("edit.measure", "strength", opts.strength, 4, true)
  local want = argcheck.number("edit.measure", "images", opts.images, 500, true)
  local pool = math.min(argcheck.number("edit.measure", "pool", opts.pool, 2000, true), test.images:size(1))
  local batch = opts.batch or 250
  local says, name = M.verdict(fx, test, opts.attribute)
  local w = M.weights_for(model, opts.attribute, opts.weights)
  local wl = w:totable()
  local positional = model.config.mode == "positional"
  local g = random.Generator(opts.seed or 1)
  local chosen, originals, recons, edits, randoms = {}, {}, {}, {}, {}
  for s = 1, pool, batch do
    if #chosen >= want then break end
    local x = test.images:narrow(1, s, math.min(batch, pool - s + 1))
    if x:dtype() == "uint8" then x = x:float() / 255 end
    local codes = model:encode(x)
    local y = model:decode(codes)
    local has = says(y)
    local keep, rows_e, rows_r = {}, {}, {}
    for i = 1, x:size(1) do
      if not has[i] and #chosen < want then
        chosen[#chosen + 1] = s + i - 1
        keep[#keep + 1] = i
        local row = codes:select(1, i):totable()
        rows_e[#rows_e + 1] = M.apply(row, wl, n, { positional = positional })
        rows_r[#rows_r + 1] = M.random_exchange(row, n, model.config.K, g, { positional = positional })
      end
    end
    if #keep > 0 then
      local idx = tensor.tensor(keep, "int64")
      originals[#originals + 1] = x:index_select(1, idx)
      recons[#recons + 1] = y:index_select(1, idx)
      edits[#edits + 1] = model:decode(tensor.tensor(rows_e, "int64"))
      randoms[#randoms + 1] = model:decode(tensor.tensor(rows_r, "int64"))
    end
  end
  local r = { attribute = name, strength = n, images = #chosen, pool = pool, quantizer = model.config.mode,
    readout = model.config.readout, L = model.config.L, K = model.config.K, indices = chosen }
  if #chosen == 0 then return r end
  local x, y = tensor.cat(originals, 1), tensor.cat(recons, 1)
  local e, rnd = tensor.cat(edits, 1), tensor.cat(randoms, 1)
  local function share(list)
    local c = 0
    for _, v in ipairs(list) do if v then c = c + 1 end end
    return c / #list
  end
  r.flip_edit, r.flip_random = share(says(e)), share(says(rnd))
  r.psnr_edit, r.psnr_random, r.psnr_recon = mean(psnr_each(e, x)), mean(psnr_each(rnd, x)), mean(psnr_each(y, x))
  r.psnr_edit_to_recon = mean(psnr_each(e, y))
  r.examples = { original = x:narrow(1, 1, math.min(8, x:size(1))), recon = y:narrow(1, 1, math.min(8, x:size(1))),
    edit = e:narrow(1, 1, math.min(8, x:size(1))), random = rnd:narrow(1, 1, math.min(8, x:size(1))) }
  return r
end

return M
