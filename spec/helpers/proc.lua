-- Processes, signals and limits for the crash-safety specs, through libc (LuaJIT FFI): start a
-- command without waiting (posix_spawn, so its pid is ours to kill and wait for), SIGKILL it,
-- watch a folder for new files (inotify, to kill a writer while its temporary file exists),
-- and set a file-size limit or a different effective user around a call.
local ffi = require "ffi"
local clock = require "pivq.core.clock"

local registry = debug.getregistry()
if not registry["spec.proc.cdef"] then
  ffi.cdef [[
    typedef struct spec_pollfd { int fd; short events; short revents; } spec_pollfd;
    typedef struct spec_rlimit { unsigned long cur, max; } spec_rlimit;
    typedef void (*spec_sighandler)(int);
  ]]
  -- one by one: another module may have declared some of them already
  for _, decl in ipairs({
    "int posix_spawn(int *pid, const char *path, const void *actions, const void *attr, char *const argv[], "
      .. "char *const envp[]);",
    "extern char **environ;",
    "int waitpid(int pid, int *status, int options);",
    "int kill(int pid, int sig);",
    "int poll(spec_pollfd *fds, unsigned long nfds, int timeout);",
    "int inotify_init1(int flags);",
    "int inotify_add_watch(int fd, const char *path, uint32_t mask);",
    "long read(int fd, void *buf, size_t count);",
    "int close(int fd);",
    "int getrlimit(int resource, spec_rlimit *rlim);",
    "int setrlimit(int resource, const spec_rlimit *rlim);",
    "spec_sighandler signal(int sig, spec_sighandler handler);",
    "unsigned int geteuid(void);",
    "int seteuid(unsigned int euid);",
    "int mount(const char *source, const char *target, const char *type, unsigned long flags, const void *data);",
    "int umount(const char *target);",
    "char *strerror(int errnum);",
    "int setenv(const char *name, const char *value, int overwrite);",
    "int unsetenv(const char *name);",
  }) do pcall(ffi.cdef, decl) end
  registry["spec.proc.cdef"] = true
end
local C = ffi.C

local M = {}

local SIGKILL, SIGXFSZ, WNOHANG = 9, 25, 1
local IN_CREATE, IN_MOVED_TO, IN_NONBLOCK, POLLIN = 0x100, 0x80, 0x800, 1
local RLIMIT_FSIZE = 1

local function errstr() return ffi.string(C.strerror(ffi.errno())) end

-- Run fn() with environment variables set (a value of false unsets), restoring them after;
-- returns fn's results, re-raising its error.
function M.with_env(vars, fn)
  local saved = {}
  for k, v in pairs(vars) do
    saved[k] = os.getenv(k) or false
    if v then C.setenv(k, v, 1) else C.unsetenv(k) end
  end
  local ok, a, b = pcall(fn)
  for k, v in pairs(saved) do
    if v then C.setenv(k, v, 1) else C.unsetenv(k) end
  end
  if not ok then error(a, 0) end
  return a, b
end

function M.shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Output (stdout and stderr) and exit status of a shell command.
function M.run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

-- A whole file, or nil when it cannot be read.
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- pid of `sh -c command` (use `exec` in the command so the pid is the program's own)
function M.spawn(command)
  local argv = ffi.new("char *[4]")
  local strs = { "sh", "-c", command }
  local keep = {}
  for i, s in ipairs(strs) do
    keep[i] = ffi.new("char[?]", #s + 1, s)
    argv[i - 1] = keep[i]
  end
  local pid = ffi.new("int[1]")
  local rc = C.posix_spawn(pid, "/bin/sh", nil, nil, argv, C.environ)
  if rc ~= 0 then error("spawn: posix_spawn failed: " .. ffi.string(C.strerror(rc))) end
  return pid[0]
end

-- How a waited-for process ended: {signal = n} or {code = n}.
local function decode(status)
  local sig = bit.band(status, 0x7f)
  if sig ~= 0 then return { signal = sig } end
  return { code = bit.band(bit.rshift(status, 8), 0xff) }
end

-- nil while the process runs, else how it ended (and it is reaped)
function M.poll_exit(pid)
  local st = ffi.new("int[1]")
  local r = C.waitpid(pid, st, WNOHANG)
  if r == 0 then return nil end
  if r < 0 then error("poll_exit: waitpid failed: " .. errstr()) end
  return decode(st[0])
end

function M.wait(pid)
  local st = ffi.new("int[1]")
  if C.waitpid(pid, st, 0) < 0 then error("wait: waitpid failed: " .. errstr()) end
  return decode(st[0])
end

function M.kill9(pid) return C.kill(pid, SIGKILL) == 0 end

function M.sleep(seconds) C.poll(nil, 0, math.floor(seconds * 1000 + 0.5)) end

-- busy-wait (sleeping would take at least a scheduler tick, far longer than a small write)
function M.spin(seconds)
  local t = clock() + seconds
  while clock() < t do end
end

-- A watch on a folder: w.next(timeout) -> the name of the next file created in it or renamed
-- into it, and "create" or "rename"; nil after timeout seconds.
function M.watch(dir)
  local fd = C.inotify_init1(IN_NONBLOCK)
  if fd < 0 then error("watch: inotify_init1 failed: " .. errstr()) end
  if C.inotify_add_watch(fd, dir, bit.bor(IN_CREATE, IN_MOVED_TO)) < 0 then
    C.close(fd)
    error("watch: cannot watch " .. dir .. ": " .. errstr())
  end
  local buf = ffi.new("uint8_t[65536]")
  local pfd = ffi.new("spec_pollfd[1]")
  pfd[0].fd, pfd[0].events = fd, POLLIN
  local w, queue = {}, {} -- events read but not yet returned (one read may bring several)
  -- forget what happened so far
  function w.drain()
    while C.read(fd, buf, 65536) > 0 do end
    queue = {}
  end
  function w.next(timeout)
    local deadline = clock() + timeout
    while #queue == 0 do
      local left = deadline - clock()
      if left <= 0 then return nil end
      if C.poll(pfd, 1, math.max(1, math.floor(left * 1000))) > 0 then
        local n = tonumber(C.read(fd, buf, 65536))
        local off = 0
        while off + 16 <= n do -- struct inotify_event: wd, mask, cookie, len, then the name
          local head = ffi.cast("uint32_t *", buf + off)
          local kind = bit.band(head[1], IN_CREATE) ~= 0 and "create" or "rename"
          queue[#queue + 1] = { ffi.string(buf + off + 16), kind } -- the name is NUL-padded
          off = off + 16 + head[3]
        end
      end
    end
    local e = table.remove(queue, 1)
    return e[1], e[2]
  end
  function w.close() C.close(fd) end
  return w
end

-- Call fn() with a soft file-size limit of `bytes` and SIGXFSZ ignored (so a write past the
-- limit fails with EFBIG instead of killing this process); both restored afterwards.
function M.with_file_size_limit(bytes, fn)
  local old = ffi.new("spec_rlimit")
  assert(C.getrlimit(RLIMIT_FSIZE, old) == 0)
  local new = ffi.new("spec_rlimit")
  new.cur, new.max = bytes, old.max
  local prev = C.signal(SIGXFSZ, ffi.cast("spec_sighandler", 1)) -- SIG_IGN
  assert(C.setrlimit(RLIMIT_FSIZE, new) == 0, "setrlimit failed")
  local ok, a, b = pcall(fn)
  C.setrlimit(RLIMIT_FSIZE, old)
  C.signal(SIGXFSZ, prev)
  if not ok then error(a, 0) end
  return a, b
end

function M.is_root() return C.geteuid() == 0 end

-- Call fn() as user `uid` (the effective id only: root gets its rights back afterwards). Root
-- ignores permission bits, so a read-only folder needs an ordinary user to be read-only.
function M.as_user(uid, fn)
  assert(C.seteuid(uid) == 0, "seteuid failed: " .. errstr())
  local ok, a, b = pcall(fn)
  assert(C.seteuid(0) == 0, "seteuid(0) failed: " .. errstr())
  if not ok then error(a, 0) end
  return a, b
end

-- Mount a tmpfs of `kbytes` KiB at dir; true, or nil and why (not root, no CAP_SYS_ADMIN).
function M.mount_tmpfs(dir, kbytes)
  if C.mount("tmpfs", dir, "tmpfs", 0, "size=" .. kbytes .. "k") ~= 0 then return nil, errstr() end
  return true
end

function M.umount(dir) return C.umount(dir) == 0 end

return M
