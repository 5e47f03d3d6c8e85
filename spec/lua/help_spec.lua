-- What the REPL and the Jupyter kernel say about values (lua/pivq/display/help.lua): docstrings
-- read from the comment above a definition, signatures, "did you mean" (Tab completion of whole
-- words, `expr; expr` and a trailing `;`: repl_spec.lua).
local help = require "pivq.display.help"
local repl = require "pivq.display.repl"
local pretty = require "pivq.display.pretty"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("help.doc", function()
  local path = os.tmpname() .. ".lua"
  write(path, table.concat({
    "-- mod: a module for this spec.",
    "-- Second header line.",
    "local M = {}",
    "",
    "-- Add two numbers.",
    "-- Returns their sum.",
    "function M.add(a, b) return a + b end",
    "",
    "M.twice = function(x) return 2 * x end",
    "function M:method(k) return k end",
    "return M",
  }, "\n"))
  local mod = dofile(path)
  teardown(function() os.remove(path) end)

  it("shows a function's signature, location and the comment block above it", function()
    assert.are.equal("add(a, b)  -- " .. path .. ":7\nAdd two numbers.\nReturns their sum.", help.doc(mod.add))
    assert.are.equal("mod.twice: twice(x)  -- " .. path .. ":9", help.doc(mod.twice, "mod.twice"))
    assert.are.equal("method(k)", help.signature(mod.method)) -- the module's local name M is dropped
    assert.are.equal("<function add(a, b)>", pretty.format(mod.add))
    assert.are.equal("print: function (built in)", help.doc(print, "print"))
  end)

  it("shows a module's header and fields, and plain values as the REPL prints them", function()
    assert.are.equal("table  -- " .. path .. "\nmod: a module for this spec.\nSecond header line.\n"
      .. "fields: add() method() twice()", help.doc(mod))
    assert.are.equal("x: number\n3", help.doc(3, "x"))
    assert.matches("randn%(%.%.%.%)  %-%- .*random%.lua:%d+\n.*standard normal", help.doc(require("pivq").randn))
  end)
end)

describe("did you mean", function()
  it("finds the closest name, preferring a same-length one, and none when nothing is close", function()
    assert.are.equal("randn", help.suggest("randm", { "rand", "randn", "zeros" }))
    assert.are.equal("code_sets", help.suggest("code_set", { "code_sets", "code_usage", "encode" }))
    assert.is_nil(help.suggest("xyzzy", { "rand", "randn" }))
  end)

  it("adds the suggestion to a nil-field error", function()
    local env = { pivq = { randn = 1, zeros = 2 } }
    assert.are.equal("stdin:1: attempt to call field 'randm' (a nil value) (did you mean 'randn'?)",
      help.with_suggestion("stdin:1: attempt to call field 'randm' (a nil value)", env))
    assert.are.equal("stdin:1: boom", help.with_suggestion("stdin:1: boom", env))
    local lines = {}
    repl.eval("pivq.randm(3)", env, function(s) lines[#lines + 1] = s end)
    assert.matches("did you mean 'randn'%?", lines[1])
  end)
end)
