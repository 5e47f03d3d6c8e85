-- pivq.nn.Embedding(num, dim, {generator =}): rows looked up by 1-based indices.
-- Initialisation as PyTorch: N(0, 1).
local argcheck = require "pivq.core.argcheck"
local Module = require "pivq.nn.Module"
local F = require "pivq.nn.F"
local init = require "pivq.nn.init_weights"

local Embedding = Module:extend("Embedding")

function Embedding:__init(num_embeddings, embedding_dim, opts)
  opts = argcheck.module_options("Embedding", opts, {})
  argcheck.size("Embedding", "num_embeddings", num_embeddings)
  argcheck.size("Embedding", "embedding_dim", embedding_dim)
  argcheck.weight("Embedding", { num_embeddings, embedding_dim })
  self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
  self:register_parameter("weight", init.normal({ num_embeddings, embedding_dim }, 1, opts.generator))
end

function Embedding:forward(index) return F.embedding(index, self.weight) end

function Embedding:extra_repr() return string.format("%d, %d", self.num_embeddings, self.embedding_dim) end

return Embedding
