-- pivq.optim: optimizers (each step one fused C call over all parameters), gradient clipping,
-- learning-rate schedules and an exponential moving average of weights.
--
--   local opt = pivq.optim.AdamW(model:parameters(), {lr = 1e-3, weight_decay = 0.01})
--   loss:backward(); pivq.optim.clip_grad_norm(model:parameters(), 1.0); opt:step(); opt:zero_grad()
--
-- The learning rate lives in opt.lr; schedules set it. State (step count, buffers) is saved by
-- opt:state_dict() as plain tables of tensors and restored by opt:load_state_dict().
local ffi = require "ffi"
local state = require "pivq.core.ffi"
local tensor = require "pivq.core.tensor"
local argcheck = require "pivq.core.argcheck"
local gc = require "pivq.core.gc"

local C = state.C
local check_rc = gc.check_rc
local ptr_array = ffi.typeof("pivq_tensor*[?]")

local M = {}

local function fail(msg, level) error(msg, level + 1) end

local function param_list(fname, params, level)
  if type(params) ~= "table" or #params == 0 then
    fail(fname .. ": expected a non-empty list of parameter tensors", level + 1)
  end
  for i = 1, #params do -- not ipairs: a hole must be reported, not end the list
    local p = params[i]
    if not tensor.is_tensor(p) then
      fail(string.format("%s: parameter %d is %s, not a tensor", fname, i, type(p)), level + 1)
    end
  end
  return params
end

local function c_array(list)
  local arr = ptr_array(math.max(#list, 1))
  for i, t in ipairs(list) do arr[i - 1] = t.c end
  return arr
end

local function zeros_like_all(params)
  local out = {}
  for i, p in ipairs(params) do out[i] = tensor.zeros(p:size()) end
  return out
end

local function number_opt(fname, opts, key, default, level)
  if type(opts) ~= "table" then
    fail(string.format("%s: options must be a table, got %s", fname, type(opts)), level + 1)
  end
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" then
    fail(string.format("%s: option %s must be a number, got %s", fname, key, type(v)), level + 1)
  end
  return v
end

-- ---- the optimizer base --------------------------------------------------------------------------

local Optimizer = {}
Optimizer.__index = Optimizer

function Optimizer:zero_grad()
  for _, p in ipairs(self.params) do p:zero_grad() end
end

-- {step =, lr =, buffers = {name = {tensor per parameter}}}: tensors are copies, unless
-- {shared = true}: then the live buffers themselves (for writing a checkpoint at once — copying
-- the whole optimizer state for that doubled it in memory at every checkpoint)
function Optimizer:state_dict(opts)
  local shared = argcheck.options("state_dict", opts, { "shared" }).shared
  local sd = { step = self.step_count, lr = self.lr, kind = self.kind, buffers = {} }
  for name, list in pairs(self.buffers) do
    local copies = {}
    for i, t in ipairs(list) do copies[i] = shared and t or t:clone() end
    sd.buffers[name] = copies
  end
  return sd
end

function Optimizer:load_state_dict(sd)
  if type(sd) ~= "table" or sd.kind ~= self.kind then
    fail(string.format("load_state_dict: expected a %s state, got %s", self.kind,
      type(sd) == "table" and tostring(sd.kind) or type(sd)), 2)
  end
  -- a state read back from a checkpoint: a key it does not know is refused, not ignored
  argcheck.keys("load_state_dict", sd, { "step", "lr", "kind", "buffers" }, "state key")
  if sd.buffers ~= nil and type(sd.buffers) ~= "table" then
    fail("load_state_dict: buffers must be a table", 2)
  end
  for name, list in pairs(self.buffers) do
    local src = sd.buffers and sd.buffers[name]
    if type(src) ~= "table" or #src ~= #list then
      fail(string.format("load_state_dict: buffer '%s' needs %d tensors", name, #list), 2)
    end
    for i, t in ipairs(list) do
      if not tensor.is_tensor(src[i]) or argcheck.shape_string(src[i]) ~= argcheck.shape_string(t) then
        fail(string.format("load_state_dict: buffer '%s' entry %d must have shape %s", name, i,
          argcheck.shape_string(t)), 2)
      end
      t:copy(src[i])
    end
  end
  self.step_count = argcheck.number("load_state_dict", "step", sd.step, 0)
  self.lr = argcheck.number("load_state_dict", "lr", sd.lr, self.lr)
end

local function new_optimizer(kind, params, fields)
  local o = setmetatable(fields, Optimizer)
  o.kind = kind
  o.params = params
  o.c_params = c_array(params)
  o.step_count = 0
  o.initial_lr = o.lr
  return o
end

-- ---- SGD -------------------------------------------------------------------------------------

-- SGD(params, {lr = 0.01, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false})
function M.SGD(params, opts)
  opts = argcheck.options("SGD", opts, { "lr", "momentum", "dampening", "weight_decay", "nesterov" })
  param_list("SGD", params, 2)
  local o = new_optimizer("SGD", params, {
    lr = number_opt("SGD", opts, "lr", 0.01, 2),
    momentum = number_opt("SGD", opts, "momentum", 0, 2),
    dampening = number_opt("SGD", opts, "dampening", 0, 2),
    weight_decay = number_opt("SGD", opts, "weight_decay", 0, 2),
    nesterov = opts.nesterov and true or false,
  })
  o.buffers = {}
  if o.momentum > 0 then
    o.buffers.momentum = zeros_like_all(params)
    o.c_momentum = c_array(o.buffers.momentum)
  end
  o.step = function(self)
    self.step_count = self.step_count + 1
    check_rc(C.pivq_sgd_step(self.c_params, self.c_momentum, #self.params, self.lr,
      self.momentum, self.dampening, self.weight_decay, self.nesterov and 1 or 0,
      self.step_count))
  end
  return o
end

-- ---- Adam / AdamW ------------------------------------------------------------------------------

local function adam(kind, decoupled, default_wd, params, opts)
  opts = argcheck.options(kind, opts, { "lr", "betas", "eps", "weight_decay" })
  param_list(kind, params, 3)
  local betas = opts.betas or { 0.9, 0.999 }
  if type(betas) ~= "table" or type(betas[1]) ~= "number" or type(betas[2]) ~= "number" then
    fail(kind .. ": betas must be a pair of numbers {beta1, beta2}", 3)
  end
  local o = new_optimizer(kind, params, {
    lr = number_opt(kind, opts, "lr", 1e-3, 3),
    beta1 = betas[1], beta2 = betas[2],
    eps = number_opt(kind, opts, "eps", 1e-8, 3),
    weight_decay = number_opt(kind, opts, "weight_decay", default_wd, 3),
  })
  o.buffers = { exp_avg = zeros_like_all(params), exp_avg_sq = zeros_like_all(params) }
  o.c_m, o.c_v = c_array(o.buffers.exp_avg), c_array(o.buffers.exp_avg_sq)
  o.step = function(self)
    self.step_count = self.step_count + 1
    check_rc(C.pivq_adam_step(self.c_params, self.c_m, self.c_v, #self.params, self.lr,
      self.beta1, self.beta2, self.eps, self.weight_decay, decoupled, self.step_count))
  end
  return o
end

-- Adam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0})
function M.Adam(params, opts) return adam("Adam", 0, 0, params, opts) end
-- AdamW(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0.01})
function M.AdamW(params, opts) return adam("AdamW", 1, 0.01, params, opts) end

-- ---- clipping --------------------------------------------------------------------------------

-- Scale gradients so their global norm is at most max_norm; returns the norm before clipping.
function M.clip_grad_norm(params, max_norm, norm_type)
  param_list("clip_grad_norm", params, 2)
  local total = ffi.new("double[1]")
  max_norm = argcheck.number("clip_grad_norm", "max_norm", max_norm)
  norm_type = argcheck.number("clip_grad_norm", "norm_type", norm_type, 2)
  if C.pivq_clip_grad_norm(c_array(params), #params, max_norm, norm_type, total) ~= 0 then
    fail((ffi.string(C.pivq_last_error()):gsub("^grad_norm:", "clip_grad_norm:")), 2) -- it speaks as grad_norm
  end
  return total[0]
end

function M.grad_norm(params, norm_type)
  param_list("grad_norm", params, 2)
  local total = ffi.new("double[1]")
  check_rc(C.pivq_grad_norm(c_array(params), #params, argcheck.number("grad_norm", "norm_type", norm_type, 2),
    total))
  return total[0]
end

-- ---- schedules ---------------------------------------------------------------------------------
-- A schedule is a function of the step (0-based count of sched:step() calls) giving a factor of
-- the optimizer's initial lr; sched:step() advances and sets opt.lr.

local Schedule = {}
Schedule.__index = Schedule
function Schedule:step()
  self.last = self.last + 1
  self.opt.lr = self.opt.initial_lr * self.factor(self.last)
  return self.opt.lr
end
function Schedule:state_dict() return { last = self.last } end
function Schedule:load_state_dict(sd)
  if type(sd) ~= "table" or type(sd.last) ~= "number" then
    fail("load_state_dict: expected a schedule state {last = step}", 2)
  end
  argcheck.keys("load_state_dict", sd, { "last" }, "state key")
  self.last = sd.last
  self.opt.lr = self.opt.initial_lr * self.factor(self.last)
end

local function check_optimizer(fname, opt)
  if getmetatable(opt) ~= Optimizer then
    fail(string.format("%s: opt must be an optimizer (pivq.optim.SGD, Adam, AdamW), got %s", fname, type(opt)), 3)
  end
end

local function schedule(opt, factor)
  local s = setmetatable({ opt = opt, factor = factor, last = 0 }, Schedule)
  opt.lr = opt.initial_lr * factor(0)
  return s
end

M.schedules = {}

-- lr rises linearly from 0 to its initial value over `warmup` steps, then stays.
function M.schedules.linear_warmup(opt, warmup)
  check_optimizer("linear_warmup", opt)
  argcheck.number("linear_warmup", "warmup", warmup)
  return schedule(opt, function(t) return math.min(1, (t + 1) / warmup) end)
end

-- Cosine decay to min_lr over total steps, after an optional linear warm-up.
function M.schedules.cosine(opt, total, opts)
  check_optimizer("cosine", opt)
  argcheck.number("cosine", "total", total)
  opts = argcheck.options("cosine", opts, { "warmup", "min_lr" })
  local warm = argcheck.number("cosine", "warmup", opts.warmup, 0)
  local min_factor = argcheck.number("cosine", "min_lr", opts.min_lr, 0) / opt.initial_lr
  return schedule(opt, function(t)
    if t < warm then return (t + 1) / warm end
    local p = math.min(1, (t - warm) / math.max(1, total - warm))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * p))
  end)
end

-- Multiply the lr by gamma every step_size steps.
function M.schedules.step(opt, step_size, gamma)
  check_optimizer("step", opt)
  argcheck.number("step", "step_size", step_size)
  argcheck.number("step", "gamma", gamma, 0.1)
  return schedule(opt, function(t) return (gamma or 0.1) ^ math.floor(t / step_size) end)
end

-- ---- exponential moving average of weights ---------------------------------------------------

local EMA = {}
EMA.__index = EMA

-- EMA(params, decay = 0.999): shadow copies updated by ema:update() after each step.
function M.EMA(params, decay)
  param_list("EMA", params, 2)
  local shadow = {}
  for i, p in ipairs(params) do shadow[i] = p:detach():clone() end
  decay = argcheck.number("EMA", "decay", decay, 0.999)
  local e = setmetatable({ params = params, shadow = shadow, decay = decay }, EMA)
  e.c_params, e.c_shadow = c_array(params), c_array(shadow)
  return e
end

function EMA:update() check_rc(C.pivq_ema_update(self.c_shadow, self.c_params, #self.params, self.decay)) end

-- Copy the averaged weights into the parameters (e.g. for evaluation).
-- params (default: the EMA's own), checked against the shadow copies.
local function params_or(self, params)
  if params == nil then return self.params end
  param_list("copy_to", params, 3)
  if #params ~= #self.shadow then
    fail(string.format("copy_to: %d parameters for %d averaged ones", #params, #self.shadow), 3)
  end
  for i, p in ipairs(params) do
    if argcheck.shape_string(p) ~= argcheck.shape_string(self.shadow[i]) then
      fail(string.format("copy_to: parameter %d has shape %s, its average %s", i, argcheck.shape_string(p),
        argcheck.shape_string(self.shadow[i])), 3)
    end
  end
  return params
end

function EMA:copy_to(params)
  params = params_or(self, params)
  local autograd = require "pivq.core.autograd"
  autograd.no_grad(function()
    for i, p in ipairs(params) do p:copy(self.shadow[i]) end
  end)
end

function EMA:state_dict()
  local copies = {}
  for i, s in ipairs(self.shadow) do copies[i] = s:clone() end
  return { decay = self.decay, shadow = copies }
end

function EMA:load_state_dict(sd)
  if type(sd) ~= "table" or type(sd.shadow) ~= "table" or #sd.shadow ~= #self.shadow then
    fail(string.format("load_state_dict: expected an EMA state with %d shadow tensors", #self.shadow), 2)
  end
  argcheck.keys("load_state_dict", sd, { "decay", "shadow" }, "state key")
  for i = 1, #self.shadow do argcheck.tensor("load_state_dict", "shadow " .. i, sd.shadow[i]) end
  for i, s in ipairs(self.shadow) do s:copy(sd.shadow[i]) end
  self.decay = sd.decay or self.decay
end

return M
