-- luacheck: no globals anywhere in the package, recipes or specs (busted's are declared).
std = "luajit"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["spec/helpers/strict_globals.lua"] = { globals = { "_G" } }
-- busted's output-handler interface passes arguments a handler may ignore
files["spec/helpers/summary_output.lua"] = { unused_args = false }
files[".busted"] = { std = "max" }
exclude_files = { "build", "build-*" }
-- The foundation's five unused-argument warnings made `.ci/task lint` fail on main; these keep
-- the signatures (a busted handler's callbacks, two helpers) and silence only those names.
files["spec/helpers/summary_output.lua"] = { ignore = { "212/options", "212/element", "212/parent" } }
files["lua/pivq/printing.lua"] = { ignore = { "212/t" } }
files["lua/pivq/random.lua"] = { ignore = { "212/fname" } }
