-- pivq.train.Adversarial: the adversarial term of the training loss (on when --w-adv > 0). From
-- step `adv_start` on, a PatchGAN discriminator is trained with the hinge loss and the decoder
-- gets w_adv * lambda * (-D(y)), lambda = |grad_W rec| / |grad_W gan| at the decoder's last
-- layer W (VQGAN's adaptive weight, clamped to [0, 1e4]).
--
--   local adv = Adversarial.new(opts, channels, dist)   -- nil when opts.w_adv is 0
--   adv:active(step)                                     -- is the term on at this step?
--   adv:surrogate(model, terms, rec, y, yr, features)    -- the generator's side (see below)
--   adv:disc_step(x, y)                                  -- one discriminator step
-- adv.disc is the discriminator, adv.opt its optimizer (Adam, betas 0.5/0.9); dist is the
-- trainer's data-parallel object (pivq.train.DataParallel or pivq.train.SingleProcess).
local F = require "pivq.nn.F"
local optim = require "pivq.nn.optim"
local random = require "pivq.core.random"
local PatchDiscriminator = require "pivq.nn.PatchDiscriminator"

local Adversarial = {}
Adversarial.__index = Adversarial

function Adversarial.new(opts, channels, dist)
  if opts.w_adv <= 0 then return nil end
  local self = setmetatable({ w_adv = opts.w_adv, start = opts.adv_start, dist = dist }, Adversarial)
  self.disc = PatchDiscriminator(channels, { width = opts.disc_width, layers = opts.disc_layers,
    generator = random.Generator(opts.seed + 104729) })
  self.opt = optim.Adam(self.disc:parameters(), { lr = opts.disc_lr > 0 and opts.disc_lr or opts.lr,
    betas = { 0.5, 0.9 } })
  return self
end

function Adversarial:active(step) return step >= self.start end

-- The generator's side of the adversarial term. rec: the reconstruction loss of yr (a detached
-- leaf copy of y). Adds terms.gan (-mean D(y)) and terms.adv_weight (w_adv * lambda); returns
-- sum(y * (dRec/dy + w_adv lambda dGan/dy)), whose backward through the model gives the
-- gradients of rec + w_adv lambda gan.
function Adversarial:surrogate(model, terms, rec, y, yr, features)
  rec:backward()
  local g_rec = yr:grad()
  local yg = y:detach():requires_grad(true)
  local gan = -self.disc(yg):mean()
  gan:backward()
  local g_gan = yg:grad()
  self.disc:zero_grad() -- the generator's pass must not train the discriminator
  -- lambda = |dRec/dW| / |dGan/dW| at the decoder's last layer W, through the last layer alone
  local modules, fd = model:head_modules(), features:detach()
  local head = modules[1]
  local function last_layer_norm(g)
    model:head(fd):backward(g)
    self.dist:average_gradients({ head.weight }) -- the global batch's lambda
    local n = head.weight:grad():norm():item()
    for _, m in ipairs(modules) do m:zero_grad() end
    return n
  end
  local lambda = math.min(math.max(last_layer_norm(g_rec) / (last_layer_norm(g_gan) + 1e-4), 0), 1e4)
  terms.gan, terms.adv_weight = gan, self.w_adv * lambda
  return (y * (g_rec + g_gan * terms.adv_weight)):sum()
end

-- One discriminator step (hinge loss) on real images x and reconstructions y.
function Adversarial:disc_step(x, y)
  local loss = F.relu(1 - self.disc(x)):mean() + F.relu(1 + self.disc(y:detach())):mean()
  loss:backward()
  self.dist:average_gradients(self.disc:parameters()) -- one discriminator on all ranks
  self.opt:step()
  self.opt:zero_grad()
  return loss
end

return Adversarial
