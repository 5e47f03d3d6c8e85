-- The REPL's evaluation (lua/pivq/display/repl.lua): expressions print their values (nil included),
-- statements run, errors print without leaving, incomplete input is recognised.
local repl = require "pivq.display.repl"
local pivq = require "pivq"

local function eval(src, env)
  local lines = {}
  local ok = repl.eval(src, env, function(s) lines[#lines + 1] = s end)
  return ok, table.concat(lines, "\n")
end

describe("repl.eval", function()
  it("prints the values of an expression", function()
    assert.are.same({ true, "2" }, { eval("1 + 1") })
    assert.are.same({ true, "1\tnil\t3" }, { eval("1, nil, 3") })
    assert.are.same({ true, "nil" }, { eval("nil") })
    assert.are.same({ true, '"hi"' }, { eval("'hi'") })
    assert.are.same({ true, "{1, 2, k = {true}}" }, { eval("{1, 2, k = {true}}") })
  end)

  it("pretty-prints tensors", function()
    local ok, out = eval("pivq.ones(2, 2)", { pivq = pivq })
    assert.is_true(ok)
    assert.are.equal("\n 1 1\n 1 1\n[pivq.Tensor float32 of size 2x2]", out)
  end)

  it("runs statements in the given environment and prints nothing", function()
    local env = { pivq = pivq }
    assert.are.same({ true, "" }, { eval("x = pivq.arange(3)", env) })
    assert.is_true(pivq.is_tensor(env.x))
    assert.are.same({ true, "6" }, { eval("x:sum():item()", env) })
    assert.are.same({ true, "" }, { eval("for i = 1, 3 do y = (y or 0) + i end", env) })
    assert.are.equal(6, env.y)
  end)

  it("prints errors with their location and survives them", function()
    local ok, out = eval("pivq.ones(2, 3) + pivq.ones(4, 3)", { pivq = pivq })
    assert.is_false(ok)
    assert.matches("^stdin:1: add: shapes 2x3 and 4x3 cannot broadcast", out)
    assert.matches("stack traceback", out)
    assert.is_nil(out:find("xpcall", 1, true)) -- the REPL's own frames are dropped
    ok, out = eval("local t = {} ; t.x.y = 1")
    assert.is_false(ok)
    assert.matches("attempt to index field 'x'", out)
    assert.are.same({ true, "3" }, { eval("1 + 2") }) -- still working
  end)

  it("reports syntax errors, and recognises incomplete input", function()
    local ok, out = eval("x = = 1")
    assert.is_false(ok)
    assert.matches("unexpected symbol near '='", out)
    assert.are.equal("incomplete", select(2, repl.compile("1 +")))
    assert.are.equal("incomplete", select(2, repl.compile("for i = 1, 3 do")))
    assert.are.equal("incomplete", select(2, repl.compile("f(1,")))
    assert.is_function(repl.compile("for i = 1, 3 do end"))
    assert.are_not.equal("incomplete", select(2, repl.compile("x = = 1")))
  end)
end)

describe("the REPL's entries", function()
  it("runs `statements; expression` and prints the expression (the README's line)", function()
    local env = {}
    assert.are.same({ true, "20" }, { eval("s = {10, 20}; s[2]", env) })
    assert.are.same({ 10, 20 }, env.s)
    assert.are.same({ true, '"a;b"' }, { eval("t = 'a;b'; t", env) })
    assert.is_function(repl.compile("s = {1}; s[1]"))
  end)

  it("prints nothing for an entry ending in ;", function()
    local env = {}
    assert.are.same({ true, "" }, { eval("y = 5;", env) })
    assert.are.same({ true, "" }, { eval("y;", env) })
    assert.are.same({ true, "5" }, { eval("y", env) })
    assert.are.same({ true, "" }, { eval("y; -- a comment after the ;", env) })
    assert.are.same({ true, "5" }, { eval("y -- a comment", env) })
  end)

  it("completes whole words: globals, fields and methods", function()
    local saved = rawget(_G, "spec_obj")
    rawset(_G, "spec_obj", { alpha = 1, alps = 2, beta = function() end })
    assert.are.same({ "spec_obj.alpha", "spec_obj.alps" }, repl.complete_word("spec_obj.al"))
    assert.are.same({ "spec_obj:beta" }, repl.complete_word("spec_obj:b"))
    rawset(_G, "spec_obj", saved)
    rawset(_G, "spec_t", pivq.zeros(2))
    assert.are.same({ "spec_t:narrow" }, repl.complete_word("spec_t:narr"))
    rawset(_G, "spec_t", nil)
  end)
end)
