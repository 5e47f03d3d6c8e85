-- A shareable interpolation strategy: exchange the codes farthest apart first.
-- Trust: a strategy file is code. pivq runs it with your rights, like a recipe or a script; run
-- only files you wrote or have read. (Checkpoints are data: loading one never runs code.)
-- Use it with:  pivq interpolate --ckpt runs/x/model.safetensors --strategy-file recipes/strategies/outside_in.lua
--                                --strategy outside_in
-- The contract: a strategy is fn(A, B, opts) -> a list of pivq.CodeSet frames from A to B.
-- A and B are CodeSets of the same size; opts carries steps, seed, model (with :codebook() and
-- :decode()). pivq.interp.path_from_swaps turns an ordered list of {remove =, add =} swaps into
-- frames (opts.steps groups them); pivq.interp.path checks the result (A first, B last, sizes).
local pivq = require "pivq"

pivq.interp.register("outside_in", function(A, B, opts)
  local removals, additions = A:diff(B)
  local codebook = opts.model and opts.model:codebook() or opts.codebook
  -- pair codes in sorted order, then swap the pairs whose embeddings are farthest apart first
  local swaps = {}
  for i = 1, #removals do
    local d = 0
    if codebook then
      d = (codebook[removals[i]] - codebook[additions[i]]):pow(2):sum():item()
    end
    swaps[i] = { remove = removals[i], add = additions[i], d = d }
  end
  table.sort(swaps, function(x, y) return x.d > y.d end)
  return pivq.interp.path_from_swaps(A, swaps, opts.steps)
end, "swap the pairs of codes whose embeddings are farthest apart first")
