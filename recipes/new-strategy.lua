-- new-strategy: write a commented template for a sampling strategy (NAME.lua) to start from
local argparse = require "argparse"
local files = require "pivq.data.files"

local parser = argparse("pivq new-strategy", "Write NAME.lua: a sampling strategy to fill in, with the contract\n"
  .. "(what `bank` and `opts` hold) in its comments. Use it with\n"
  .. "  pivq sample --ckpt CKPT --strategy-file NAME.lua --strategy NAME\n"
  .. "  pivq eval --ckpt CKPT --strategy-file NAME.lua --strategy NAME,pair\n"
  .. "A strategy file is code: pivq runs it with your rights, like a recipe or a script.")
parser:argument("name", "the strategy's name (letters, digits, _ or -)")
parser:option("--out", "the file to write (default: NAME.lua in the current folder)")
local args = parser:parse(arg)

if not args.name:match("^[%w_%-]+$") then
  io.stderr:write("pivq new-strategy: the name must be letters, digits, _ or -, got '", args.name, "'\n")
  return 2
end
local out = args.out or (args.name .. ".lua")
local existing = io.open(out, "r")
if existing then
  existing:close()
  io.stderr:write("pivq new-strategy: ", out, " exists; not overwriting it (choose another --out)\n")
  return 1
end

local TEMPLATE = [=[
-- NAME: a sampling strategy for pivq (written by `pivq new-strategy NAME`; edit the body).
--
--   pivq sample --ckpt CKPT --strategy-file FILE --strategy NAME
--   pivq eval   --ckpt CKPT --strategy-file FILE --strategy NAME,pair   # PRDC beside a built-in
--
-- Trust: a strategy file is code. pivq runs it with your rights, like a recipe or a script; run
-- only files you wrote or have read. (Checkpoints are data: loading one never runs code.)
--
-- The contract: fn(bank, n, opts) returns an n x L int64 tensor of codes, one sample per row.
--   bank.codes     N x L int64 tensor, row i = training image i's codes; codes are 1-based (1..K)
--   bank.K         the codebook size (number)
--   bank.multiset  false for a matching model: a row must then hold L distinct codes
--   bank.labels    N int64 class labels, or nil
--   bank:size()    N, the number of training images;  bank:L() the codes per image
--   bank:codes_of(i)             image i's codes as a pivq.CodeSet (#s, s[j], s + t, s * t, s - t)
--   bank:random_parents(n, k, g) an n x k table of image indices (distinct within a row)
--   opts.seed      number;  opts.generator  a pivq.Generator seeded from it: draw from it only,
--                  so the same --seed gives the same samples
--   opts.parents   the --parents option (number), or nil
--   opts.model     the model (opts.model:decode(codes), opts.model.config), or nil
--   opts.codebook  the K x c codebook (float32 tensor), or nil
-- Optionally return the provenance as a second value: one entry per sample, {parents = {training
-- indices}, taken = {{codes from parent 1}, {codes from parent 2}, ...}} (parents = {} for none);
-- pivq.provenance.attribute(row, {parent rows}) credits each code to the first parent holding it.
-- `pivq sample --provenance FILE.json` and `--with-parents` use it.
-- pivq checks what you return (shape, 1..K, no repeated code in a set; parents in 1..N and
-- codes each parent really holds) and names this strategy in the error. Raise an error
-- (error("...")) to fail; never call os.exit.
local pivq = require "pivq"

pivq.sample.register("NAME", function(bank, n, opts)
  local g = opts.generator
  local L = bank:L()
  local rows, prov = {}, {}
  for s, parents in ipairs(bank:random_parents(n, 2, g)) do
    -- example: half of the first parent's codes, the rest from the second parent's
    local a, b = bank:codes_of(parents[1]), bank:codes_of(parents[2])
    local row = {}
    for j = 1, math.floor(L / 2) do row[#row + 1] = a[j] end
    local pool = bank.multiset and b or (b - pivq.CodeSet(row, { K = bank.K }))
    for j = 1, #pool do
      if #row == L then break end
      row[#row + 1] = pool[j]
    end
    for j = 1, #a do -- a set: top up from the first parent (its codes are not in row yet)
      if #row == L then break end
      if bank.multiset or not pivq.CodeSet(row, { K = bank.K }):contains(a[j]) then row[#row + 1] = a[j] end
    end
    rows[s] = row
    prov[s] = { parents = parents, taken = pivq.provenance.attribute(row, { a:totable(), b:totable() }) }
  end
  return pivq.tensor(rows, "int64"), prov -- the provenance is optional
end, "half of one parent's codes, the rest from another's (edit this line: it is what --list shows)")
]=]

local text = TEMPLATE:gsub("NAME", args.name)
local ok, err = files.write_text(out, text)
if not ok then
  io.stderr:write("pivq new-strategy: ", tostring(err), "\n")
  return 1
end
print(string.format("wrote %s: edit the strategy's body, then\n  pivq sample --ckpt CKPT --strategy-file %s "
  .. "--strategy %s", out, out, args.name))
return 0
