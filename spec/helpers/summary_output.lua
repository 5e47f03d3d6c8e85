-- luacheck: no unused args (busted calls output handlers with arguments they may ignore)
-- A busted output handler: a progress mark per test, the failures and errors with their
-- messages and places, pending tests by name (never hidden), and last the one line CI reads:
-- "N passed, N failed" (errors count as failures).
return function()
  local busted = require "busted"
  local handler = require("busted.outputHandlers.base")()

  local function place(t)
    local trace = t.trace or (t.element and t.element.trace) or {}
    return string.format("%s:%s", trace.short_src or "?", tostring(trace.currentline or "?"))
  end

  local function message(t)
    if type(t.message) == "string" then return t.message end
    return tostring(t.message)
  end

  handler.testEnd = function(_, _, status)
    local mark = ({ success = "+", failure = "-", error = "*", pending = "." })[status] or "?"
    io.write(mark)
    io.flush()
    return nil, true
  end

  handler.fileError = function()
    io.write("*")
    io.flush()
    return nil, true
  end

  handler.suiteEnd = function()
    io.write("\n")
    for _, p in ipairs(handler.pendings) do
      io.write(string.format("\nPENDING %s (%s)\n", p.name, place(p)))
    end
    for _, f in ipairs(handler.failures) do
      io.write(string.format("\nFAILED %s (%s)\n%s\n", f.name or "?", place(f), message(f)))
    end
    for _, e in ipairs(handler.errors) do
      io.write(string.format("\nERROR %s (%s)\n%s\n", e.name or "?", place(e), message(e)))
    end
    if handler.pendingsCount > 0 then
      io.write(string.format("%d pending (not run)\n", handler.pendingsCount))
    end
    io.write(string.format("%d passed, %d failed\n", handler.successesCount,
      handler.failuresCount + handler.errorsCount))
    io.flush()
    return nil, true
  end

  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  busted.subscribe({ "error", "file" }, handler.fileError)
  busted.subscribe({ "failure", "file" }, handler.fileError)
  busted.subscribe({ "error", "describe" }, handler.fileError)
  busted.subscribe({ "failure", "describe" }, handler.fileError)
  return handler
end
