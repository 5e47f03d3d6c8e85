-- Dataset layouts (pivq.data.layouts): byte-exact miniature replicas of CelebA, CelebA-HQ
-- (CelebAMask-HQ) and FFHQ, and a plain folder, each detected, described and opened with its
-- official files and split.
local pivq = require "pivq"
local craft = require "io.craft"
local layouts = require "pivq.data.layouts"

local CELEBA_ATTRS = { "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald",
  "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
  "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
  "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
  "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
  "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young" }

-- The real first row of list_attr_celeba.txt (000001.jpg), as the file spells it
local ROW1 = "-1  1  1 -1 -1 -1 -1 -1 -1 -1 -1  1 -1 -1 -1 -1 -1 -1  1  1 -1  1 -1 -1  1 -1 -1  1 -1 -1 -1  1  1"
  .. " -1  1 -1  1 -1 -1  1"

local function mkdir(p) assert(os.execute("mkdir -p '" .. p .. "'") == 0) end

-- values +-1 for row r: attribute a is +1 when (r + a) % 3 == 0 (Male = attribute 21)
local function row_values(r)
  local v = {}
  for a = 1, 40 do v[a] = (r + a) % 3 == 0 and 1 or -1 end
  return v
end

-- CelebA's spacing: each value right-aligned in 2 columns, one space between ("-1  1")
local function celeba_row(name, v)
  local cells = {}
  for a = 1, #v do cells[a] = string.format("%2d", v[a]) end
  return name .. " " .. table.concat(cells, " ")
end

-- a 178 x 218 photograph: a flat colour inside the centred 148 x 148 square, red outside
local function photo(inner)
  local img = pivq.full({ 3, 218, 178 }, 0)
  img:select(1, 1):fill_(1)
  local sq = pivq.image.center_crop(img, 148, 148)
  for k = 1, 3 do sq:select(1, k):fill_(inner[k]) end
  return img
end

describe("pivq.data.layouts", function()
  local root
  setup(function() root = craft.tmpdir() end)
  teardown(function() craft.rmdir(root) end)

  describe("CelebA", function()
    local dir
    setup(function()
      dir = root .. "/celeba"
      mkdir(dir .. "/img_align_celeba")
      local lines = { "5", table.concat(CELEBA_ATTRS, " ") .. " " } -- the names line ends in a space
      local parts = {}
      for r = 1, 5 do
        local name = string.format("%06d.jpg", r)
        assert(pivq.image.save(dir .. "/img_align_celeba/" .. name, photo({ 0, r / 5, 1 - r / 5 }),
          { quality = 98 }))
        lines[#lines + 1] = r == 1 and (name .. " " .. ROW1) or celeba_row(name, row_values(r))
        -- 000001-000003 train (0), 000004 validation (1), 000005 test (2)
        parts[#parts + 1] = string.format("%s %d", name, r <= 3 and 0 or r - 3)
      end
      craft.write(dir .. "/list_attr_celeba.txt", table.concat(lines, "\r\n") .. "\r\n")
      craft.write(dir .. "/list_eval_partition.txt", table.concat(parts, "\r\n") .. "\r\n")
    end)

    it("the replica spells the official formats", function()
      local text = craft.read(dir .. "/list_attr_celeba.txt")
      assert.are.equal("5\r\n5_o_Clock_Shadow Arched_Eyebrows Attractive ", text:sub(1, 47))
      assert.is_truthy(text:find("\r\n000001.jpg -1  1  1 -1 -1", 1, true))
      assert.are.equal("000001.jpg 0\r\n000002.jpg 0\r\n", craft.read(dir .. "/list_eval_partition.txt"):sub(1, 28))
    end)

    it("is detected and opened with the official partition, attributes and the 148 crop", function()
      assert.are.equal("celeba", layouts.detect(dir))
      local desc = assert(layouts.describe(dir, { image_size = 4 }))
      assert.are.equal(148, desc.crop)
      assert.are.same({ kind = "official", file = desc.path .. "/list_eval_partition.txt" }, desc.split)
      local train = assert(layouts.open(desc, "train", { cache = false }))
      local test = assert(layouts.open(desc, "test", { cache = false }))
      assert.are.same({ "000001.jpg", "000002.jpg", "000003.jpg" }, train.files)
      assert.are.same({ "000005.jpg" }, test.files) -- partition 2; 000004 (validation) is in neither
      assert.are.same({ 3, 3, 4, 4 }, train.images:size())
      assert.are.same(CELEBA_ATTRS, train.attribute_names)
      -- row 1 is the real file's first row: Arched_Eyebrows +1, 5_o_Clock_Shadow -1, Young +1
      local a = train.attributes
      assert.are.same({ -1, 1, 1 }, { a:get(1, 1), a:get(1, 2), a:get(1, 40) })
      assert.are.same(row_values(5), test.attributes[1]:totable())
      -- the crop removed the red frame: image 2 is (0, 0.4, 0.6) everywhere (JPEG's chroma
      -- subsampling lets the frame bleed a few levels in: within 10/255)
      for k, want in ipairs({ 0, 102, 153 }) do
        local plane = train.images[2][k]:float()
        assert.is_true(math.abs(plane:max() - want) <= 10 and math.abs(plane:min() - want) <= 10,
          "channel " .. k .. ": " .. plane:min() .. ".." .. plane:max())
      end
      -- without the crop the red frame comes in
      local nocrop = assert(layouts.open(assert(layouts.describe(dir, { image_size = 4, crop = 0 })), "train",
        { cache = false }))
      assert.is_true(nocrop.images[2][1]:float():max() > 100)
    end)

    it("the official archive's sub-folders (Img/, Anno/, Eval/) work too", function()
      local d2 = root .. "/celeba-archive"
      mkdir(d2 .. "/Img")
      mkdir(d2 .. "/Anno")
      mkdir(d2 .. "/Eval")
      assert(os.execute(string.format("cp -r '%s/img_align_celeba' '%s/Img/' && cp '%s/list_attr_celeba.txt' "
        .. "'%s/Anno/' && cp '%s/list_eval_partition.txt' '%s/Eval/'", dir, d2, dir, d2, dir, d2)) == 0)
      assert.are.equal("celeba", layouts.detect(d2))
      local test = assert(layouts.open(assert(layouts.describe(d2, { image_size = 4 })), "test", { cache = false }))
      assert.are.same({ "000005.jpg" }, test.files)
    end)
  end)

  describe("CelebA-HQ (CelebAMask-HQ)", function()
    local dir
    setup(function()
      dir = root .. "/CelebAMask-HQ"
      mkdir(dir .. "/CelebA-HQ-img")
      local lines = { "12", table.concat(CELEBA_ATTRS, " ") }
      for i = 0, 11 do
        assert(pivq.image.save(string.format("%s/CelebA-HQ-img/%d.jpg", dir, i), pivq.full({ 3, 16, 16 }, i / 11)))
        local v = row_values(i)
        for a = 1, 40 do v[a] = tostring(v[a]) end
        lines[#lines + 1] = i .. ".jpg " .. table.concat(v, " ")
      end
      craft.write(dir .. "/CelebAMask-HQ-attribute-anno.txt", table.concat(lines, "\n") .. "\n")
    end)

    it("is detected; attributes by file name; a seeded random held-out split", function()
      assert.is_truthy(craft.read(dir .. "/CelebAMask-HQ-attribute-anno.txt"):find("\n0.jpg -1 -1 1 -1", 1, true))
      assert.are.equal("celeba-hq", layouts.detect(dir))
      local desc = assert(layouts.describe(dir, { image_size = 8, held_out = 0.25, seed = 3 }))
      local train = assert(layouts.open(desc, "train", { cache = false }))
      local test = assert(layouts.open(desc, "test", { cache = false }))
      assert.are.equal(9, train.n)
      assert.are.equal(3, test.n)
      local seen = {}
      for _, f in ipairs(train.files) do seen[f] = true end
      for _, f in ipairs(test.files) do
        assert.is_nil(seen[f])
        seen[f] = true
      end
      for i = 0, 11 do assert.is_true(seen[i .. ".jpg"]) end
      -- the attributes follow the files
      local i = tonumber(test.files[1]:match("^(%d+)"))
      assert.are.same(row_values(i), test.attributes[1]:totable())
      -- the same seed, the same split; another seed, (here) another
      local again = assert(layouts.open(assert(layouts.describe(dir, { image_size = 8, held_out = 0.25, seed = 3 })),
        "test", { cache = false }))
      assert.are.same(test.files, again.files)
      local other = assert(layouts.open(assert(layouts.describe(dir, { image_size = 8, held_out = 0.25, seed = 4 })),
        "test", { cache = false }))
      assert.are_not.same(test.files, other.files)
    end)
  end)

  describe("FFHQ", function()
    it("numbered folders, at the top or in thumbnails128x128/; 60000+ held out", function()
      local dir = root .. "/ffhq"
      for _, f in ipairs({ "00000/00000.png", "00000/00001.png", "00000/00999.png", "01000/01000.png",
        "60000/60000.png", "60000/60001.png" }) do
        mkdir(dir .. "/thumbnails128x128/" .. f:match("^(%d+)/"))
        assert(pivq.image.save(dir .. "/thumbnails128x128/" .. f, pivq.full({ 3, 128, 128 }, 0.5)))
      end
      craft.write(dir .. "/LICENSE.txt", "Creative Commons BY-NC-SA 4.0\n")
      assert.are.equal("ffhq", layouts.detect(dir))
      local desc = assert(layouts.describe(dir, { image_size = 16 }))
      assert.are.equal(desc.path .. "/thumbnails128x128", desc.images)
      local test = assert(layouts.open(desc, "test", { cache = false }))
      assert.are.same({ "60000/60000.png", "60000/60001.png" }, test.files)
      local train = assert(layouts.open(desc, "train", { cache = false }))
      assert.are.same({ "00000/00000.png", "00000/00001.png", "00000/00999.png", "01000/01000.png" }, train.files)
      assert.are.same({ 4, 3, 16, 16 }, train.images:size())
    end)
  end)

  describe("any folder", function()
    local dir
    setup(function()
      dir = root .. "/icons"
      for c, cat in ipairs({ "animals", "food", "flags" }) do
        mkdir(dir .. "/" .. cat)
        for i = 1, 10 do
          assert(pivq.image.save(string.format("%s/%s/%02d.png", dir, cat, i), pivq.full({ 4, 8, 8 }, c / 4)))
        end
      end
    end)

    it("a seeded random held-out split (not the last files by name)", function()
      assert.are.equal("folder", layouts.detect(dir))
      local desc = assert(layouts.describe(dir, { image_size = 8 }))
      local test = assert(layouts.open(desc, "test", { cache = false }))
      assert.are.equal(3, test.n)
      local train = assert(layouts.open(desc, "train", { cache = false }))
      assert.are.equal(27, train.n)
      -- not the last files by name (the old rule, one category for many folders); over seeds,
      -- every category is held out somewhere
      assert.are_not.same({ "food/08.png", "food/09.png", "food/10.png" }, test.files)
      local cats = {}
      for seed = 1, 10 do
        local t = assert(layouts.open(assert(layouts.describe(dir, { image_size = 8, seed = seed })), "test",
          { cache = false }))
        for _, f in ipairs(t.files) do cats[f:match("^(%a+)/")] = true end
      end
      assert.are.same({ animals = true, flags = true, food = true }, cats)
    end)

    it("a split file and an attribute file", function()
      local names = { "animals/01.png 0", "animals/02.png 2", "food/01.png 0", "flags/10.png 2" }
      craft.write(root .. "/split.txt", table.concat(names, "\n") .. "\n")
      local attr = { "30", "Is_Animal Is_Food" }
      for c, cat in ipairs({ "animals", "food", "flags" }) do
        for i = 1, 10 do
          attr[#attr + 1] = string.format("%s/%02d.png %2d %2d", cat, i, c == 1 and 1 or -1, c == 2 and 1 or -1)
        end
      end
      craft.write(dir .. "/list_attr_celeba.txt", table.concat(attr, "\n") .. "\n")
      local desc = assert(layouts.describe(dir, { image_size = 8, split_file = root .. "/split.txt" }))
      local test = assert(layouts.open(desc, "test", { cache = false }))
      assert.are.same({ "animals/02.png", "flags/10.png" }, test.files)
      assert.are.same({ "Is_Animal", "Is_Food" }, test.attribute_names)
      assert.are.same({ { 1, -1 }, { -1, -1 } }, test.attributes:totable())
      os.remove(dir .. "/list_attr_celeba.txt")
    end)

    it("descriptions survive a checkpoint round trip (JSON) and reopen the same data", function()
      local desc = assert(layouts.describe(dir, { image_size = 8, background = { 0.5, 0.25, 1 } }))
      local json = require "dkjson"
      local back = json.decode(json.encode(desc))
      assert.are.same(desc, back)
      local a = assert(layouts.open(desc, "test", { cache = false }))
      local b = assert(layouts.open(back, "test", { cache = false }))
      assert.are.same(a.images:totable(), b.images:totable())
      assert.are.equal("0.5,0.25,1", desc.background)
    end)

    it("clear errors: not a folder, bad options, an empty split", function()
      local d, err = layouts.describe(root .. "/nope")
      assert.is_nil(d)
      assert.are.equal("dataset: " .. root .. "/nope is not a folder", err)
      assert.has_error(function() layouts.describe(dir, { colour = true }) end,
        "layouts.describe: unknown option 'colour'")
      assert.has_error(function() layouts.describe(dir, { held_out = 1 }) end,
        "layouts.describe: held_out must be a fraction in (0, 1), got 1")
      assert.has_error(function() layouts.open({}, "train") end,
        "layouts.open: desc must be a dataset description (layouts.describe)")
      craft.write(root .. "/empty-split.txt", "animals/01.png 0\n")
      local desc = assert(layouts.describe(dir, { image_size = 8, split_file = root .. "/empty-split.txt" }))
      local ds
      ds, err = layouts.open(desc, "test", { cache = false })
      assert.is_nil(ds)
      assert.are.equal("dataset: the test split of " .. desc.path .. " is empty", err)
    end)
  end)
end)
