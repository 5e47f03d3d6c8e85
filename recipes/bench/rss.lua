-- recipes/bench/rss.lua: the two halves of the flat-memory benchmark (recipes/bench/rss.sh runs both).
--   ./build/pivq recipes/bench/rss.lua train LOG.jsonl [PEAK_MB]
--       RSS of a training run at steps 100, 1000 and the last logged step, from the rss_mb that
--       `pivq train` records in each log.jsonl line; growth from step 100 to the end; the
--       mean images/s over the run (the log's per-record rates, weighted by steps).
--   ./build/pivq recipes/bench/rss.lua repl [OPS]
--       OPS (default 100,000) REPL-style operations, each a line of source evaluated as the REPL
--       evaluates it (compiled, run, its value formatted to a string, errors caught): small
--       tensors and temporaries, printing, indexing, small matmuls, autograd graphs with
--       backward, failing calls. RSS at 1k, 10k and 100k operations and the growth.
local pivq = require "pivq"
local json = require "dkjson"
local memory = require "pivq.core.memory"
local repl = require "pivq.display.repl"

local function growth(a, b) return string.format("%+.1f MB (%+.1f%%)", b - a, 100 * (b - a) / a) end

local function train_summary(path, peak)
  local f = assert(io.open(path))
  local recs, by_step = {}, {}
  for line in f:lines() do
    local r = json.decode(line)
    if type(r) == "table" and r.step and r.rss_mb then
      recs[#recs + 1] = r
      by_step[r.step] = r
    end
  end
  f:close()
  if #recs == 0 then error("rss: no records with rss_mb in " .. path) end
  local last = recs[#recs]
  local imgs, secs, prev = 0, 0, 0
  for _, r in ipairs(recs) do
    local n = (r.step - prev) * (r.batch or 64)
    imgs, secs, prev = imgs + n, secs + n / r.img_per_s, r.step
  end
  print(string.format("training, %d steps (RSS as the log records it every %d steps)", last.step, recs[1].step))
  local first = by_step[100] or recs[1]
  for _, r in ipairs({ first, by_step[1000], last }) do
    if r then print(string.format("  step %5d  RSS %7.1f MB", r.step, r.rss_mb)) end
  end
  local lo, hi = math.huge, 0
  for _, r in ipairs(recs) do
    if r.step >= first.step then lo, hi = math.min(lo, r.rss_mb), math.max(hi, r.rss_mb) end
  end
  print(string.format("  growth step %d -> %d: %s (range over the logged steps from %d: %.1f-%.1f MB)",
    first.step, last.step, growth(first.rss_mb, last.rss_mb), first.step, lo, hi))
  if peak then
    print(string.format("  peak RSS of the process (sampled each second, evaluation included): %.1f MB", peak))
  end
  print(string.format("  speed: %.1f images/s over the run", imgs / secs))
end

-- One REPL line per operation, cycled; `i` varies what the lines touch.
local LINES = {
  "a = pivq.randn(8, 8)",
  "b = (a + 1) * a:exp() - a:mean()",
  "a", -- printing: the REPL formats the 8x8 tensor into a string
  "a[3][2], a:narrow(1, 2, 3):select(2, 1), a:index_select(1, {1, 3}):t():contiguous()",
  "a:matmul(b):sum():item()",
  "m = pivq.randn(32, 32):matmul(pivq.randn(32, 32)); m:max(2)",
  "w = pivq.randn(8, 4):requires_grad(true)",
  "loss = (a:matmul(w):tanh() * 2):pow(2):mean(); loss:backward(); w:grad():sum():item()",
  "x = pivq.randn(4, 8):requires_grad(true); pivq.F.mse_loss(pivq.F.relu(x:matmul(b)), pivq.zeros(4, 8)):backward()",
  "x:grad()",
  "a + pivq.ones(3, 3)", -- a shape error, printed and survived (the only line that fails)
  "pivq.cat({ a, b }, 1):view(4, 32):sum(1):totable()",
  "tostring(pivq.arange(1, 9):float():reshape(3, 3))",
}

local function repl_loop(ops)
  local env = setmetatable({ pivq = pivq }, { __index = _G })
  local printed = 0
  local function out(s) printed = printed + #s end
  local marks = { [1000] = true, [10000] = true, [100000] = true, [ops] = true }
  local rss = {}
  local t0 = pivq.clock()
  print(string.format("REPL-style loop: %d operations (%d kinds of line)", ops, #LINES))
  for i = 1, ops do
    local line = LINES[(i - 1) % #LINES + 1]
    if repl.eval(line, env, out) ~= (line ~= "a + pivq.ones(3, 3)") then
      error("rss: the REPL line `" .. line .. "` did not behave as expected")
    end
    if marks[i] then
      local s = memory.stats()
      rss[#rss + 1] = { i, s.rss_mb }
      print(string.format("  %7d ops  RSS %6.1f MB  (live tensor bytes %.2f MB, %d storages, %d graph nodes, "
        .. "Lua heap %.1f MB)", i, s.rss_mb, s.heap_mb, s.storages, s.graph_nodes, s.lua_mb))
    end
  end
  local first, last = rss[1], rss[#rss]
  for _, r in ipairs(rss) do
    if r[1] == 10000 and last[1] > 10000 then
      print(string.format("  growth %d -> %d ops: %s", r[1], last[1], growth(r[2], last[2])))
    end
  end
  print(string.format("  growth %d -> %d ops: %s  (%.1f s, %.1f us per operation, %d characters printed)",
    first[1], last[1], growth(first[2], last[2]), pivq.clock() - t0, 1e6 * (pivq.clock() - t0) / ops, printed))
end

local mode = arg[1]
if mode == "train" then
  train_summary(assert(arg[2], "rss.lua train LOG.jsonl [PEAK_MB]"), tonumber(arg[3]))
elseif mode == "repl" then
  repl_loop(tonumber(arg[2] or "100000"))
else
  error("usage: rss.lua train LOG.jsonl [PEAK_MB] | rss.lua repl [OPS]")
end
