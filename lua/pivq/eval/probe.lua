-- pivq.probe: the linear probe (notebooks/METHOD.md, "Evaluation"; Fig. 5 of the paper) — multinomial
-- logistic regression from a bag of codes to labels, L2-regularised and trained to convergence
-- by L-BFGS, with k-fold cross-validation beside the majority-class baseline.
--
--   local X = pivq.probe.bag_of_codes(codes, K)            -- N x K counts (or {binary = true})
--   local r = pivq.probe.cross_validate(X, labels, {folds = 5, l2 = 1e-4, seed = 1})
--   -- r.accuracy_mean, r.accuracy_std, r.baseline_mean, r.baseline_std, r.per_fold
local random = require "pivq.core.random"
local tensor = require "pivq.core.tensor"
local argcheck = require "pivq.core.argcheck"

local M = {}

-- N x K float32 bag of codes from N x L 1-based codes: counts, or indicators with binary=true.
function M.bag_of_codes(codes, K, opts)
  opts = argcheck.options("bag_of_codes", opts, { "binary" })
  K = argcheck.number("bag_of_codes", "K", K, nil, true)
  if not tensor.is_tensor(codes) or codes:dim() ~= 2 or (codes:dtype() ~= "int64" and codes:dtype() ~= "int32") then
    error("bag_of_codes: codes must be an N x L integer tensor of 1-based codes", 2)
  end
  if K < 1 or (codes:numel() > 0 and (codes:min() < 1 or codes:max() > K)) then
    error(string.format("bag_of_codes: codes must lie in 1..K with K >= 1 (K = %d)", K), 2)
  end
  local N, L = codes:size(1), codes:size(2)
  local bag = tensor.zeros(N, K)
  local ones = tensor.ones(N, L)
  bag = bag:scatter_add(2, codes:long(), ones)
  if opts.binary then bag = bag:gt(0):float() end
  return bag
end

-- ---- the model: softmax regression ------------------------------------------------------

-- Loss and gradient at W (d x C) and b (C) for X (N x d), one-hot Y (N x C), L2 weight l2.
local function loss_and_grad(X, Y, W, b, l2)
  local N = X:size(1)
  local logits = X:matmul(W) + b:view(1, -1)
  local mx = logits:max(2, true)
  local shifted = logits - mx
  local lse = shifted:exp():sum(2, true):log()
  local logp = shifted - lse
  local nll = -(logp * Y):sum():item() / N
  local wnorm = (W * W):sum():item()
  local P = logp:exp()
  local G = P - Y -- N x C
  local gW = X:t():matmul(G) * (1 / N) + W * l2
  local gb = G:sum(1) * (1 / N)
  return nll + 0.5 * l2 * wnorm, gW, gb
end

-- flatten/unflatten between {W, b} tensors and a Lua array of doubles
local function flatten(W, b)
  local out = {}
  for _, t in ipairs({ W:contiguous():view(-1), b }) do
    local p = t:contiguous():data_ptr()
    for i = 0, t:numel() - 1 do out[#out + 1] = p[i] end
  end
  return out
end

local function unflatten(v, d, C)
  local W = tensor.empty(d, C)
  local b = tensor.empty(C)
  local pw, pb = W:data_ptr(), b:data_ptr()
  for i = 0, d * C - 1 do pw[i] = v[i + 1] end
  for i = 0, C - 1 do pb[i] = v[d * C + i + 1] end
  return W, b
end

local function dot(a, b)
  local s = 0
  for i = 1, #a do s = s + a[i] * b[i] end
  return s
end

-- L-BFGS (Nocedal & Wright, Alg. 7.4 two-loop recursion) with a backtracking Armijo search.
-- f(x) -> value, gradient (Lua arrays). Stops when max|g| < tol or progress stalls.
-- The options of lbfgs (memory, max_iter, tol), checked for fname (fit and cross_validate pass
-- theirs on).
local LBFGS_KEYS = { "memory", "max_iter", "tol", "ftol" }
local function lbfgs_options(fname, opts, extra)
  local valid = { unpack(LBFGS_KEYS) }
  for _, k in ipairs(extra or {}) do valid[#valid + 1] = k end
  opts = argcheck.options(fname, opts, valid)
  return opts, argcheck.number(fname, "memory", opts.memory, 10, true),
    argcheck.number(fname, "max_iter", opts.max_iter, 500, true), argcheck.number(fname, "tol", opts.tol, 1e-5)
end

function M.lbfgs(f, x, opts)
  local m, max_iter, tol
  opts, m, max_iter, tol = lbfgs_options("lbfgs", opts)
  if type(f) ~= "function" then error("lbfgs: f must be a function, got " .. type(f), 2) end
  if type(x) ~= "table" then error("lbfgs: x must be an array of numbers, got " .. type(x), 2) end
  local n = #x
  for i = 1, n do argcheck.number("lbfgs", "x[" .. i .. "]", x[i]) end
  local fx, g = f(x)
  if type(fx) ~= "number" or type(g) ~= "table" or #g ~= n then
    error(string.format("lbfgs: f must return a number and a gradient array of %d numbers", n), 2)
  end
  local S, Yh, rho = {}, {}, {}
  local iters, converged = 0, false
  for it = 1, max_iter do
    iters = it
    local gmax = 0
    for i = 1, n do gmax = math.max(gmax, math.abs(g[i])) end
    if gmax < tol then
      converged = true
      break
    end
    -- 1. direction d = -H g by the two-loop recursion
    local q = {}
    for i = 1, n do q[i] = g[i] end
    local alpha = {}
    for j = #S, 1, -1 do
      alpha[j] = rho[j] * dot(S[j], q)
      for i = 1, n do q[i] = q[i] - alpha[j] * Yh[j][i] end
    end
    local gamma = #S > 0 and dot(S[#S], Yh[#S]) / dot(Yh[#S], Yh[#S]) or 1 / math.max(gmax, 1)
    for i = 1, n do q[i] = q[i] * gamma end
    for j = 1, #S do
      local beta = rho[j] * dot(Yh[j], q)
      for i = 1, n do q[i] = q[i] + S[j][i] * (alpha[j] - beta) end
    end
    local dir = {}
    for i = 1, n do dir[i] = -q[i] end
    local slope = dot(g, dir)
    if slope >= 0 then -- not a descent direction (numerical trouble): restart from -g
      S, Yh, rho = {}, {}, {}
      for i = 1, n do dir[i] = -g[i] end
      slope = dot(g, dir)
    end
    -- 2. backtracking line search (Armijo, c1 = 1e-4)
    local step, xn, fn, gn = 1, {}, nil, nil
    for _ = 1, 40 do
      for i = 1, n do xn[i] = x[i] + step * dir[i] end
      fn, gn = f(xn)
      if fn <= fx + 1e-4 * step * slope then break end
      step = step * 0.5
    end
    if fn > fx then break end -- no progress possible at float32 precision
    -- 3. curvature pair
    local s, y = {}, {}
    for i = 1, n do
      s[i] = xn[i] - x[i]
      y[i] = gn[i] - g[i]
    end
    local sy = dot(s, y)
    if sy > 1e-12 then
      S[#S + 1], Yh[#Yh + 1], rho[#rho + 1] = s, y, 1 / sy
      if #S > m then
        table.remove(S, 1)
        table.remove(Yh, 1)
        table.remove(rho, 1)
      end
    end
    local rel = math.abs(fx - fn) / math.max(math.abs(fx), 1e-12)
    x, fx, g = xn, fn, gn
    if rel < (opts.ftol or 1e-10) then
      converged = true
      break
    end
  end
  return x, fx, { iterations = iters, converged = converged }
end

-- Fit softmax regression: X N x d float, labels N int64 in 1..C. Returns a predictor.
function M.fit(X, labels, opts)
  opts = lbfgs_options("probe.fit", opts, { "classes", "l2" })
  if not tensor.is_tensor(X) or X:dim() ~= 2 or not tensor.is_tensor(labels) or labels:dim() ~= 1
    or labels:size(1) ~= X:size(1) or X:size(1) == 0 then
    error("probe.fit: need X (N x d) and labels (N) tensors, N >= 1", 2)
  end
  argcheck.number("probe.fit", "classes", opts.classes, 1, true)
  if labels:dtype() ~= "int64" and labels:dtype() ~= "int32" then
    error("probe.fit: labels must be int64 or int32, got " .. labels:dtype(), 2)
  end
  if labels:min() < 1 or labels:max() > (opts.classes or labels:max()) then
    error("probe.fit: labels must lie in 1..classes", 2)
  end
  local N, d = X:size(1), X:size(2)
  local C = opts.classes or labels:max()
  local l2 = opts.l2 or 1e-4
  local Y = tensor.zeros(N, C):scatter_add(2, labels:long():view(N, 1), tensor.ones(N, 1))
  -- standardise features so one l2 and one tolerance suit counts and indicators alike
  local mean = X:mean(1, true)
  local std = (X:var(1, { keepdim = true, unbiased = false }) + 1e-8):sqrt()
  local Xs = (X - mean) / std
  local function f(v)
    local W, b = unflatten(v, d, C)
    local loss, gW, gb = loss_and_grad(Xs, Y, W, b, l2)
    return loss, flatten(gW, gb)
  end
  local x0 = flatten(tensor.zeros(d, C), tensor.zeros(C))
  local x, loss, info = M.lbfgs(f, x0, { memory = opts.memory, max_iter = opts.max_iter, tol = opts.tol,
    ftol = opts.ftol })
  local W, b = unflatten(x, d, C)
  return {
    W = W, b = b, loss = loss, info = info, mean = mean, std = std, -- W acts on (X - mean) / std
    predict = function(Xt)
      local _, idx = ((((Xt - mean) / std):matmul(W)) + b:view(1, -1)):max(2)
      return idx
    end,
  }
end

local function accuracy(pred, labels) return pred:eq(labels:long()):sum():item() / labels:numel() end

-- k-fold cross-validation of the probe beside the majority-class baseline.
function M.cross_validate(X, labels, opts)
  opts = lbfgs_options("probe.cross_validate", opts, { "folds", "seed", "l2" })
  if not tensor.is_tensor(X) or X:dim() ~= 2 or not tensor.is_tensor(labels) or labels:dim() ~= 1
    or labels:size(1) ~= X:size(1) then
    error("probe.cross_validate: need X (N x d) and labels (N) tensors", 2)
  end
  local folds = argcheck.number("probe.cross_validate", "folds", opts.folds, 5, true)
  local N = X:size(1)
  if N < folds then error("probe.cross_validate: fewer samples than folds", 2) end
  local C = labels:max()
  local perm = random.randperm(N, { generator = random.Generator(opts.seed or 1) })
  local accs, bases = {}, {}
  for f = 1, folds do
    local lo, hi = math.floor((f - 1) * N / folds) + 1, math.floor(f * N / folds)
    local test_idx = perm:narrow(1, lo, hi - lo + 1)
    local train_parts = {}
    if lo > 1 then train_parts[#train_parts + 1] = perm:narrow(1, 1, lo - 1) end
    if hi < N then train_parts[#train_parts + 1] = perm:narrow(1, hi + 1, N - hi) end
    local train_idx = tensor.cat(train_parts, 1)
    local Xtr, ytr = X:index_select(1, train_idx), labels:index_select(1, train_idx)
    local Xte, yte = X:index_select(1, test_idx), labels:index_select(1, test_idx)
    local model = M.fit(Xtr, ytr, { l2 = opts.l2, classes = C, max_iter = opts.max_iter, tol = opts.tol,
      memory = opts.memory, ftol = opts.ftol })
    accs[f] = accuracy(model.predict(Xte), yte)
    -- majority class of the training fold, scored on the test fold
    local counts = tensor.zeros(C):scatter_add(1, ytr:long(), tensor.ones(ytr:numel()))
    local _, majority = counts:max(1)
    bases[f] = yte:long():eq(majority:item()):sum():item() / yte:numel()
  end
  local function mean_std(v)
    local m = 0
    for _, x in ipairs(v) do m = m + x end
    m = m / #v
    local s = 0
    for _, x in ipairs(v) do s = s + (x - m) ^ 2 end
    return m, math.sqrt(s / math.max(#v - 1, 1))
  end
  local am, as = mean_std(accs)
  local bm, bs = mean_std(bases)
  return { accuracy_mean = am, accuracy_std = as, baseline_mean = bm, baseline_std = bs,
    per_fold = accs, baseline_per_fold = bases, folds = folds }
end

-- Figure 5: one L2-regularised logistic regression per binary attribute (a two-class softmax
-- regression, the same model), each k-fold cross-validated beside its majority-class baseline.
-- X: N x d features (a bag of codes); attributes: N x A of +1/-1 (CelebA's convention); names:
-- the A names. opts: folds (5), l2, seed, max_iter, tol. Returns {{name =, accuracy_mean =,
-- accuracy_std =, baseline_mean =, baseline_std =, positive = fraction of +1}, ...} in the
-- attributes' order.
function M.attributes(X, attributes, names, opts)
  opts = lbfgs_options("probe.attributes", opts, { "folds", "seed", "l2" })
  if not tensor.is_tensor(X) or X:dim() ~= 2 or not tensor.is_tensor(attributes) or attributes:dim() ~= 2
    or attributes:size(1) ~= X:size(1) then
    error("probe.attributes: need X (N x d) and attributes (N x A) tensors", 2)
  end
  if type(names) ~= "table" or #names ~= attributes:size(2) then
    error(string.format("probe.attributes: names must list the %d attributes, got %s", attributes:size(2),
      type(names) == "table" and (#names .. " names") or type(names)), 2)
  end
  local out = {}
  for a = 1, attributes:size(2) do
    local col = attributes:select(2, a):long()
    if col:ne(1):mul(col:ne(-1)):sum():item() > 0 then
      error(string.format("probe.attributes: attribute %s has values other than +1 and -1", names[a]), 2)
    end
    local labels = col:gt(0):long():add(1) -- -1 -> 1, +1 -> 2
    local ok, r = pcall(M.cross_validate, X, labels, { folds = opts.folds, l2 = opts.l2, seed = opts.seed,
      max_iter = opts.max_iter, tol = opts.tol })
    if not ok then error("probe.attributes: " .. tostring(r):gsub("^probe%.[%w_]+: ", ""), 2) end
    out[a] = { name = names[a], accuracy_mean = r.accuracy_mean, accuracy_std = r.accuracy_std,
      baseline_mean = r.baseline_mean, baseline_std = r.baseline_std,
      positive = labels:eq(2):sum():item() / labels:numel() }
  end
  return out
end

return M
