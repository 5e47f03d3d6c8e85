-- pivq.models.presets: named model/training settings, and the defaults chosen by image size for
-- image folders (`pivq train --preset NAME`; "auto" picks by --image-size for a folder and
-- leaves Fashion-MNIST on the plain defaults). A preset only fills options the user left at
-- their defaults. The figures behind each choice are in recipes/README.md ("Colour images").
local M = {}

M.list = {
  -- 64x64 colour (aligned faces, emoji): 8x8 patches, a convolutional upsampling head (no patch
  -- grid), L = 64 codes from K = 1024, a Laplacian-pyramid term for edges
  face64 = { image_size = 64, patch = 8, width = 128, enc_depth = 3, dec_depth = 3, heads = 4,
    L = 64, K = 1024, c = 32, head = "conv", head_width = 64, w_lap = 1.0, batch = 32,
    quant_start = 500, steps = 6000 },
  -- 32x32 colour: 4x4 patches, the same family
  colour32 = { image_size = 32, patch = 4, width = 128, enc_depth = 3, dec_depth = 3, heads = 4,
    L = 64, K = 1024, c = 32, head = "conv", head_width = 64, w_lap = 1.0, batch = 32,
    quant_start = 500, steps = 6000 },
  -- 128x128 colour: 16x16 patches
  colour128 = { image_size = 128, patch = 16, width = 192, enc_depth = 3, dec_depth = 3, heads = 6,
    L = 128, K = 4096, c = 32, head = "conv", head_width = 64, w_lap = 1.0, batch = 16,
    quant_start = 500, steps = 8000 },
}

local BY_SIZE = { [32] = "colour32", [64] = "face64", [128] = "colour128" }

-- The preset for an image folder of this side (nil: none fits; the plain defaults apply).
function M.name_for_size(size) return BY_SIZE[size] end

-- The settings of a size's preset ({} when none).
function M.for_size(size)
  local name = BY_SIZE[size]
  local out = {}
  for k, v in pairs(name and M.list[name] or {}) do out[k] = v end
  return out
end

return M
