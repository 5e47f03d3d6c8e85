-- luacheck: no globals anywhere in the package, recipes or specs (busted's are declared).
std = "luajit"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["spec/helpers/strict_globals.lua"] = { globals = { "_G" } }
-- busted's output-handler interface passes arguments a handler may ignore
files["spec/helpers/summary_output.lua"] = { unused_args = false }
files[".busted"] = { std = "max" }
exclude_files = { "build", "build-*" }
