-- The fuzz seed corpus (csrc/fuzz/corpus) replayed through the readers, with every
-- truncation and a bit flip at every byte: a small deterministic fuzz run in every test run
-- (and under ASan in `.ci/task test-asan`), which also keeps the regress-* inputs checked.
local ffi = require "ffi"
local pivq = require "pivq"
local craft = require "io.craft"

local C = pivq.C
local ROOT = "csrc/fuzz/corpus"

-- Decode bytes with the reader for `kind`; true if it gave a result, false if an error.
local decoders = {
  idx = function(s)
    local t = C.pivq_idx_decode(s, #s, "corpus")
    C.pivq_tensor_release(t)
    return t ~= nil
  end,
  image = function(s)
    local t = C.pivq_image_decode(s, #s, "corpus")
    C.pivq_tensor_release(t)
    return t ~= nil
  end,
  safetensors = function(s)
    local set = C.pivq_safetensors_decode(s, #s, "corpus")
    C.pivq_tensor_set_free(set)
    return set ~= nil
  end,
}

describe("fuzz seed corpus", function()
  for kind, decode in pairs(decoders) do
    it(kind .. ": seeds decode, damaged variants fail cleanly", function()
      local files = {}
      local p = io.popen("ls -1 '" .. ROOT .. "/" .. kind .. "'")
      for name in p:lines() do files[#files + 1] = name end
      p:close()
      assert.is_true(#files >= 2)
      -- compare live bytes after full collections: garbage of earlier specs (or of decodes
      -- that succeed) must not count either way
      collectgarbage()
      collectgarbage()
      local before = pivq.heap_bytes()
      for _, name in ipairs(files) do
        local bytes = craft.read(ROOT .. "/" .. kind .. "/" .. name)
        local ok = decode(bytes)
        if not name:match("^regress%-") then
          assert.is_true(ok, name .. ": " .. ffi.string(C.pivq_last_error()))
        end
        for cut = 0, #bytes - 1 do decode(bytes:sub(1, cut)) end
        for at = 1, #bytes do
          local b = bytes:byte(at)
          decode(bytes:sub(1, at - 1) .. string.char(bit.bxor(b, bit.lshift(1, at % 8))) .. bytes:sub(at + 1))
        end
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(before, pivq.heap_bytes()) -- nothing kept alive by a failed decode
    end)
  end
end)
