-- pivq.memory: what the process holds, for logs and the memory benchmark (recipes/bench/rss.sh).
--
--   pivq.memory.rss_mb()   resident set size in MB (VmRSS of /proc/self/status), nil where the
--                          kernel gives no /proc (it is read per call: a file read, ~20 us)
--   pivq.memory.stats()    {rss_mb, peak_rss_mb, heap_mb (live tensor bytes libpivq counts),
--                          storages (live storages), graph_nodes, lua_mb (the Lua heap)}
--   pivq.memory.malloc()   the C allocator's view, in MB: {arena_mb (the heap's size), in_use_mb,
--                          free_mb (free inside the heap, resident until reused or trimmed),
--                          mmapped_mb}; nil where the allocator gives none (not glibc, or an
--                          AddressSanitizer build)
local ffi = require "ffi"
local C = require("pivq.core.ffi").C

local M = {}

-- The kB figure after `field:` in /proc/self/status, in MB.
local function status_mb(field)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local kb = text:match(field .. ":%s*(%d+)")
  return kb and tonumber(kb) / 1024 or nil
end

function M.rss_mb() return status_mb("VmRSS") end

function M.stats()
  return {
    rss_mb = status_mb("VmRSS"),
    peak_rss_mb = status_mb("VmHWM"),
    heap_mb = tonumber(C.pivq_heap_bytes()) / 2 ^ 20,
    storages = tonumber(C.pivq_heap_count()),
    graph_nodes = tonumber(C.pivq_graph_node_count()),
    lua_mb = collectgarbage("count") / 1024,
  }
end

function M.malloc()
  local st = ffi.new("pivq_malloc_stats")
  if C.pivq_malloc_stats_get(st) ~= 0 then return nil end
  local mb = 2 ^ 20
  return { arena_mb = tonumber(st.arena) / mb, in_use_mb = tonumber(st.in_use) / mb, free_mb = tonumber(st.free) / mb,
    mmapped_mb = tonumber(st.mmapped) / mb }
end

return M
