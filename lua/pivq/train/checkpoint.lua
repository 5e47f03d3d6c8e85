-- pivq.train.checkpoint: a training run's checkpoint, OUT/model.safetensors (pivq.files: written
-- atomically): the model's weights, the optimizers' buffers and, in the metadata, the schedule,
-- RNG and loader positions and the options, so that a resumed run continues exactly.
-- The functions take the pivq.train.Trainer whose state they write or restore.
local random = require "pivq.core.random"
local files = require "pivq.data.files"
local json = require "dkjson"

local M = {}

function M.path(self) return self.opts.out .. "/model.safetensors" end

-- An optimizer's buffers as checkpoint tensors PREFIX.<buffer>.<i>; returns its scalar state.
local function put_optimizer(extra, opt, prefix)
  local sd = opt:state_dict { shared = true } -- written out at once: no copies
  for name, list in pairs(sd.buffers) do
    for i, t in ipairs(list) do extra[string.format("%s.%s.%d", prefix, name, i)] = t end
  end
  return { step = sd.step, lr = sd.lr, kind = sd.kind }
end

-- The inverse: restore opt from its scalar state and the PREFIX.<buffer>.<i> tensors.
local function get_optimizer(tensors, opt, prefix, state)
  local sd = { step = state.step, lr = state.lr, kind = state.kind, buffers = {} }
  local pattern = "^" .. prefix:gsub("%p", "%%%0") .. "%.(.+)%.(%d+)$"
  for name, t in pairs(tensors) do
    local buf, i = name:match(pattern)
    if buf then
      sd.buffers[buf] = sd.buffers[buf] or {}
      sd.buffers[buf][tonumber(i)] = t
    end
  end
  opt:load_state_dict(sd)
end

-- A run killed in the middle of a checkpoint write (SIGKILL, power loss) leaves the previous
-- checkpoint intact and a temporary file beside it; the next trainer on the folder removes
-- those, once (this process is then the folder's only writer).
function M.remove_stale_temporaries(self)
  if self.swept then return end
  self.swept = true
  local n = files.remove_stale(M.path(self))
  if n and n > 0 and not self.opts.quiet then
    print(string.format("removed %d temporary file%s left by interrupted checkpoint writes in %s", n,
      n == 1 and "" or "s", self.opts.out))
  end
end

-- true, or nil and "train: cannot write checkpoint PATH: reason"; the previous checkpoint is
-- then untouched (pivq.save replaces it atomically) and no temporary file remains.
function M.save(self)
  M.remove_stale_temporaries(self)
  local extra = {}
  local optim_state = put_optimizer(extra, self.opt, "optim")
  local disc_state
  if self.adv then
    for name, t in pairs(self.adv.disc:state_dict()) do extra["disc." .. name] = t end
    disc_state = put_optimizer(extra, self.adv.opt, "disc_optim")
  end
  local state = {
    step = self.step, epoch = self.epoch, pos = self.pos,
    optim = optim_state,
    disc_optim = disc_state,
    schedule = self.sched:state_dict(),
    rng = random.get_rng_state(),
    model_rng = self.model.generator:get_state(),
    data_rng = self.data_gen:get_state(),
    bypassed = self.model.quantizer.bypassed,
    global_batch = self.loader.batch_size, -- pos counts batches of this many images
    options = self.opts,
  }
  local path = M.path(self)
  local ok, err = self.model:save(path, extra, { train = json.encode(state) })
  if ok then return true end
  -- the writer's message names the path too; keep only its reason (strerror)
  local at = err:find(path, 1, true)
  local reason = at and err:sub(at + #path):match("^: (.+)$") or err
  return nil, string.format("train: cannot write checkpoint %s: %s", path, reason)
end

-- The training options stored in the checkpoint at path, or nil, err.
function M.stored_options(path)
  local tensors, meta = files.load(path)
  if not tensors then return nil, meta end
  local state = meta.train and json.decode(meta.train)
  if type(state) ~= "table" or type(state.options) ~= "table" then
    return nil, path .. ": no training options in the checkpoint"
  end
  return state.options
end

-- The training state's fields and their types, as M.save writes them: a state edited by hand
-- or written by another program is refused naming the field, before anything is restored
-- (a half-restored run would train from a mixed state).
local STATE_FIELDS = {
  { "step", "count" }, { "epoch", "count" }, { "pos", "count" }, { "optim", "table" },
  { "schedule", "table" }, { "rng", "table" }, { "model_rng", "table" }, { "data_rng", "table" },
  { "bypassed", "boolean" }, { "global_batch", "count?" }, { "disc_optim", "table?" }, { "options", "table?" },
}

-- nil when state has every field M.save writes, with its type; else what is wrong
function M.check_state(state)
  for _, f in ipairs(STATE_FIELDS) do
    local name, want = f[1], f[2]
    local v, optional = state[name], want:sub(-1) == "?"
    want = optional and want:sub(1, -2) or want
    if v == nil then
      if not optional then return "no '" .. name .. "'" end
    elseif want == "count" then
      if type(v) ~= "number" or v < 0 or v % 1 ~= 0 then
        return string.format("'%s' must be a non-negative integer, got %s", name, tostring(v))
      end
    elseif type(v) ~= want then
      return string.format("'%s' must be a %s, got a %s", name, want, type(v))
    end
  end
end

function M.load(self)
  M.remove_stale_temporaries(self)
  local path = M.path(self)
  local tensors, meta = files.load(path)
  if not tensors then return nil, meta end
  local state = meta.train and json.decode(meta.train)
  if type(state) ~= "table" then return nil, path .. ": no training state in the checkpoint" end
  local bad = M.check_state(state)
  if bad then return nil, path .. ": bad training state: " .. bad end
  local sd = {}
  for name, t in pairs(tensors) do
    local short = name:match("^model%.(.+)$")
    if short then sd[short] = t end
  end
  self.model:load_state_dict(sd)
  get_optimizer(tensors, self.opt, "optim", state.optim)
  if self.adv then
    if not state.disc_optim then
      return nil, path .. ": no discriminator in the checkpoint (it was trained without --w-adv)"
    end
    local dsd = {}
    for name, t in pairs(tensors) do
      local short = name:match("^disc%.(.+)$")
      if short then dsd[short] = t end
    end
    self.adv.disc:load_state_dict(dsd)
    get_optimizer(tensors, self.adv.opt, "disc_optim", state.disc_optim)
  end
  self.sched:load_state_dict(state.schedule)
  random.set_rng_state(state.rng)
  self.model.generator:set_state(state.model_rng)
  self.data_gen:set_state(state.data_rng)
  self.model.quantizer.bypassed = state.bypassed
  self.step, self.epoch, self.pos = state.step, state.epoch, state.pos
  if state.global_batch and state.global_batch ~= self.loader.batch_size then
    -- resumed with another number of ranks or batch: the same place in the epoch, to a batch
    self.pos = math.floor(state.pos * state.global_batch / self.loader.batch_size)
  end
  return true
end

return M
