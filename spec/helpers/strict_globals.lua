-- Loaded by busted before the specs: catches accidental globals in the package under test.
-- busted's own globals (describe, it, assert, ...) are installed per file in the file's
-- environment, so guarding _G's new names only affects library code.
setmetatable(_G, {
  __newindex = function(_, name)
    error(string.format("assignment to undeclared global '%s'", tostring(name)), 2)
  end,
})
