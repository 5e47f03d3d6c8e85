-- pivq.nn.GELU({approximate = "none" | "tanh"}): exact x Phi(x) by default, as PyTorch.
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"

local GELU = Module:extend("GELU")

function GELU:__init(opts)
  self.approximate = argcheck.module_options("GELU", opts, { "approximate" }).approximate or "none"
  if self.approximate ~= "none" and self.approximate ~= "tanh" then
    error("GELU: approximate must be \"none\" or \"tanh\", got " .. tostring(self.approximate), 3)
  end
end

function GELU:forward(x) return F.gelu(x, { approximate = self.approximate }) end

function GELU:extra_repr() return self.approximate == "tanh" and "tanh" or "" end

return GELU
