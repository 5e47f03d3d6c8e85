-- pivq.nn: modules, one class per file. pivq.nn.Linear(3, 4), pivq.nn.Sequential(...), ...
local names = { "Module", "Sequential", "Linear", "Conv2d", "ConvTranspose2d", "LayerNorm",
  "GroupNorm", "Embedding", "Dropout", "ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "LeakyReLU",
  "Flatten", "MaxPool2d", "AvgPool2d", "Upsample", "MultiheadAttention", "MLP",
  "TransformerBlock", "Quantizer", "PatchDiscriminator" }

local nn = {}
for _, name in ipairs(names) do nn[name] = require("pivq.nn." .. name) end
return nn
