-- pivq.nn.PatchDiscriminator(channels, {width = 32, layers = 2, slope = 0.2, generator =}): the PatchGAN
-- discriminator (Isola et al. 2017, as used by VQGAN) for the optional adversarial loss of
-- `pivq train`. Input (B, C, H, W) images in [0, 1]; output (B, 1, h, w) logits, one per
-- overlapping patch (real > 0 > fake under the hinge loss).
--
--   conv 4x4 s2 (C -> width), LeakyReLU(slope)
--   `layers - 1` times: conv 4x4 s2 (doubling the width, at most 8x), GroupNorm, LeakyReLU(slope)
--   conv 4x4 s1 p1 (the width doubled again), GroupNorm, LeakyReLU(slope); conv 4x4 s1 p1 -> 1 logit map
-- GroupNorm stands in for VQGAN's BatchNorm: it behaves the same in training and evaluation and
-- keeps a step independent of how the batch is split (data-parallel training).
-- A 28x28 input with layers = 2 gives a 5x5 map, each logit seeing a 22x22 receptive field.
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local Conv2d = require "pivq.nn.Conv2d"
local GroupNorm = require "pivq.nn.GroupNorm"
local F = require "pivq.nn.F"

local PatchDiscriminator = Module:extend("PatchDiscriminator")

local function groups(ch) return math.max(1, math.min(32, math.floor(ch / 4))) end

function PatchDiscriminator:__init(channels, opts)
  opts = argcheck.module_options("PatchDiscriminator", opts, { "width", "layers", "slope" })
  local width, layers = opts.width or 32, opts.layers or 2
  argcheck.size("PatchDiscriminator", "channels", channels)
  argcheck.size("PatchDiscriminator", "width", width)
  -- each layer halves the image: beyond 30, no image is large enough (and the loop would not end)
  if type(layers) == "number" and layers > 30 then
    error("PatchDiscriminator: layers must be at most 30, got " .. tostring(layers), 3)
  end
  if type(channels) ~= "number" or channels < 1 or channels % 1 ~= 0 then
    error("PatchDiscriminator: channels must be a positive integer, got " .. tostring(channels), 3)
  end
  if type(width) ~= "number" or width < 4 or width % 1 ~= 0 or type(layers) ~= "number" or layers < 1
    or layers % 1 ~= 0 then
    error(string.format("PatchDiscriminator: width >= 4 and layers >= 1 must be integers, got %s and %s",
      tostring(width), tostring(layers)), 3)
  end
  local g = opts.generator
  self.width, self.layers = width, layers
  self.slope = argcheck.finite("PatchDiscriminator", "slope", opts.slope, 0.2)
  self:add_module("conv1", Conv2d(channels, width, 4, { stride = 2, padding = 1, generator = g }))
  local ch = width
  for i = 2, layers do
    local out = width * math.min(2 ^ (i - 1), 8)
    self:add_module("conv" .. i, Conv2d(ch, out, 4, { stride = 2, padding = 1, bias = false, generator = g }))
    self:add_module("norm" .. i, GroupNorm(groups(out), out))
    ch = out
  end
  local out = width * math.min(2 ^ layers, 8)
  self:add_module("conv" .. layers + 1, Conv2d(ch, out, 4, { stride = 1, padding = 1, bias = false, generator = g }))
  self:add_module("norm" .. layers + 1, GroupNorm(groups(out), out))
  self:add_module("head", Conv2d(out, 1, 4, { stride = 1, padding = 1, generator = g }))
end

function PatchDiscriminator:forward(x)
  local h = F.leaky_relu(self:call_child("conv1", x), self.slope)
  for i = 2, self.layers + 1 do
    h = F.leaky_relu(self:call_child("norm" .. i, self:call_child("conv" .. i, h)), self.slope)
  end
  return self:call_child("head", h)
end

function PatchDiscriminator:extra_repr() return string.format("width %d, %d layers", self.width, self.layers) end

return PatchDiscriminator
