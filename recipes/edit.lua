-- edit: attribute editing by exchanging codes — the n codes of an image that speak most against an
-- attribute (the per-attribute probe's weights) exchanged for the n that speak most for it;
-- with --measure, the share of held-out images whose attribute classifier output flips, against
-- as many random code exchanges, and the PSNR of the edits
local argparse = require "argparse"
local json = require "dkjson"
local pivq = require "pivq"
local recipe = require "pivq.display.recipe"

local parser = argparse("pivq edit", "Edit an image towards an attribute by exchanging codes: the --strength n codes\n"
  .. "that speak most against it (weights of the per-attribute probe, fitted on training codes) give way to the n\n"
  .. "codes not in the image that speak most for it. Writes a strip: original | reconstruction | edits of\n"
  .. "strength 1..n. With --measure: on held-out images without the attribute, the share whose attribute\n"
  .. "classifier (`pivq train-features`) output flips, against n random exchanges, and PSNR (JSON + PNG).")
parser:option("--ckpt", "model checkpoint"):args(1)
parser:option("--image", "a held-out image's index (1-based) or an image file", "1")
parser:option("--attribute", "attribute name (the dataset's attribute file), or a class of Fashion-MNIST "
  .. "(Trouser, Bag, ... or 1..10)")
parser:option("--strength", "codes exchanged", "4"):convert(tonumber)
parser:option("--dataset", "--image indices and --measure images from this dataset's held-out split "
  .. "(default: the model's own)")
parser:option("--train-images", "training images whose codes the probe's weights are fitted on", "5000")
  :convert(tonumber)
parser:option("--l2", "L2 weight of the probe", "1e-3"):convert(tonumber)
parser:flag("--measure", "measure flips and PSNR on held-out images instead of editing one")
parser:option("--images", "--measure: edited held-out images (those without the attribute)", "500"):convert(tonumber)
parser:option("--pool", "--measure: held-out images searched for them", "2000"):convert(tonumber)
parser:option("--features-ckpt", "--measure: the attribute classifier (default: the dataset's, from "
  .. "`pivq train-features`)")
parser:option("--seed", "seed of the random exchanges", "1"):convert(tonumber)
parser:option("--scale", "pixel scale of the PNG", "3"):convert(tonumber)
parser:option("--out", "PNG to write (--measure: the JSON; its PNG beside it) (default: edit.png, or "
  .. "edit-ATTRIBUTE.json beside the checkpoint)")
local args = parser:parse(arg)
require("pivq.core.argcheck").counts("pivq edit", args, { "strength", "train_images", "images", "pool", "scale" })

local function fail(code, ...)
  io.stderr:write("pivq edit: ", ...)
  io.stderr:write("\n")
  return code
end
-- an error raised below, as one line: without its position and the function's own prefix
local function message(err)
  return (tostring(err):gsub("^[^:]*:%d+: ", ""):gsub("^attribute_weights: ", ""):gsub("^edit: ", ""))
end
if not args.attribute then return fail(2, "--attribute is required (a name of the dataset's attributes or classes)") end

local model, err_code = recipe.load_model("pivq edit", args.ckpt)
if not model then return err_code end
local layouts = require "pivq.data.layouts"
local desc, derr = layouts.for_model(model, args.dataset)
if not desc then return fail(1, derr) end
local wopts = { images = args.train_images, l2 = args.l2 }

-- the probe's weights first: an unknown attribute or a constant one is a one-line error
local ok, w, name = pcall(model.attribute_weights, model, args.attribute, wopts)
if not ok then return fail(1, message(w)) end

if args.measure then
  local test, terr = layouts.open(desc, "test")
  if not test then return fail(1, terr) end
  local fpath = args.features_ckpt or pivq.features.default_path(desc)
  local fx, ferr = pivq.features.extractor("classifier", { path = fpath })
  if not fx then return fail(1, ferr) end
  local t0 = pivq.clock()
  local mok, r = pcall(pivq.edit.measure, model, { test = test, attribute = args.attribute, strength = args.strength,
    classifier = fx, images = args.images, pool = args.pool, seed = args.seed, weights = wopts })
  if not mok then return fail(1, message(r)) end
  if r.images == 0 then
    return fail(1, string.format("none of the first %d held-out images is without %s by the classifier", r.pool,
      name))
  end
  print(string.format("%s model (%s readout, L = %d, K = %d), attribute %s, strength %d: %d held-out images "
    .. "without it (of the first %d), classifier %s", r.quantizer, r.readout, r.L, r.K, r.attribute, r.strength,
    r.images, r.pool, fx.describe))
  print(string.format("  flips: edit %.1f%%, random exchanges %.1f%%", 100 * r.flip_edit, 100 * r.flip_random))
  print(string.format("  PSNR to the original: edit %.2f dB, random %.2f dB, reconstruction %.2f dB; edit to the "
    .. "reconstruction %.2f dB   (%.1f s)", r.psnr_edit, r.psnr_random, r.psnr_recon, r.psnr_edit_to_recon,
    pivq.clock() - t0))
  local out = args.out or string.format("%s/edit-%s.json", args.ckpt:match("^(.*)/[^/]*$") or ".",
    (r.attribute:gsub("[^%w_%-]", "_")))
  local ex = r.examples
  r.examples, r.indices = nil, nil
  r.checkpoint, r.checkpoint_hash, r.dataset = args.ckpt, pivq.bank.file_hash(args.ckpt), desc.path
  r.features, r.features_hash, r.train_images, r.l2 = fx.describe, fx.hash, args.train_images, args.l2
  pivq.files.write_or_fail("edit", out, json.encode(r, { indent = true }) .. "\n")
  local png = (out:gsub("%.json$", "")) .. ".png"
  -- rows: originals, reconstructions, edits, random exchanges
  local grid = pivq.image.grid(pivq.cat({ ex.original, ex.recon, ex.edit:clamp(0, 1), ex.random:clamp(0, 1) }, 1),
    { nrow = ex.original:size(1), padding = 2, scale = args.scale })
  local sok, serr = pivq.image.save(png, grid)
  if not sok then return fail(1, serr) end
  print("wrote " .. out .. " and " .. png .. " (rows: original, reconstruction, edit, random exchange)")
  return 0
end

local x, ierr = recipe.load_image(model, desc, args.image)
if not x then return fail(1, ierr) end
local codes = model:encode(x)
local frames = { x, model:decode(codes) }
local rows = {}
for s = 1, args.strength do
  local eok, edited, info = pcall(model.edit, model, codes, args.attribute, s, wopts)
  if not eok then return fail(1, message(edited)) end
  frames[#frames + 1] = model:decode(edited):clamp(0, 1)
  rows[s] = info[1]
end
local last, wl = rows[#rows], w:totable()
local function with_weights(list)
  local t = {}
  for _, k in ipairs(list) do t[#t + 1] = string.format("%d (%+.2f)", k, wl[k]) end
  return table.concat(t, ", ")
end
print(string.format("%s, strength %d: removes %s; adds %s (code (weight))", name, args.strength,
  with_weights(last.removed), with_weights(last.added)))
local out = args.out or "edit.png"
local sok, serr = pivq.image.save(out, pivq.image.grid(pivq.cat(frames, 1), { nrow = #frames, padding = 2,
  scale = args.scale }))
if not sok then return fail(1, serr) end
print(string.format("wrote %s: original | reconstruction | edits of strength 1..%d", out, args.strength))
return 0
