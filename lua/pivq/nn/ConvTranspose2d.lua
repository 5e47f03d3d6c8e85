-- pivq.nn.ConvTranspose2d(in, out, kernel, {stride = 1, padding = 0, output_padding = 0,
-- dilation = 1, groups = 1, bias = true, generator =}). Weight (in, out/groups, kH, kW).
-- Initialisation as PyTorch: U(-1/sqrt(fan_in), ...) with PyTorch's fan_in of this weight
-- layout, out/groups * kH * kW.
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"
local init = require "pivq.nn.init_weights"

local ConvTranspose2d = Module:extend("ConvTranspose2d")

function ConvTranspose2d:__init(in_channels, out_channels, kernel_size, opts)
  opts = argcheck.module_options("ConvTranspose2d", opts,
    { "stride", "padding", "output_padding", "dilation", "groups", "bias" })
  argcheck.size("ConvTranspose2d", "in_channels", in_channels)
  argcheck.size("ConvTranspose2d", "out_channels", out_channels)
  local k = argcheck.pair("ConvTranspose2d", "kernel_size", kernel_size)
  local groups = argcheck.size("ConvTranspose2d", "groups", opts.groups or 1)
  argcheck.weight("ConvTranspose2d", { in_channels, out_channels, k[1], k[2] })
  if in_channels % groups ~= 0 or out_channels % groups ~= 0 then
    error(string.format("ConvTranspose2d: channels %d -> %d are not divisible by groups %d",
      in_channels, out_channels, groups), 3)
  end
  self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
  self.opts = { stride = opts.stride or 1, padding = opts.padding or 0,
    output_padding = opts.output_padding or 0, dilation = opts.dilation or 1, groups = groups }
  local fan_in = out_channels / groups * k[1] * k[2]
  self:register_parameter("weight",
    init.kaiming_default({ in_channels, out_channels / groups, k[1], k[2] }, fan_in, opts.generator))
  if opts.bias ~= false then
    self:register_parameter("bias", init.kaiming_default({ out_channels }, fan_in, opts.generator))
  end
end

function ConvTranspose2d:forward(x) return F.conv_transpose2d(x, self.weight, self.bias, self.opts) end

local function fmt(v) return type(v) == "table" and (v[1] .. "x" .. v[2]) or tostring(v) end

function ConvTranspose2d:extra_repr()
  return string.format("%d -> %d, kernel %s, stride %s, padding %s", self.in_channels,
    self.out_channels, fmt(self.kernel_size), fmt(self.opts.stride), fmt(self.opts.padding))
end

return ConvTranspose2d
