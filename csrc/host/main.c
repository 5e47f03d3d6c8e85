/* pivq — the host executable: LuaJIT embedded, the pivq Lua package on its path.
 *
 * The host stays small: it finds the Lua sources (the build tree's or the installed ones),
 * offers line editing (libedit) and Ctrl-C handling to Lua as the module `pivq.host`, and
 * hands argv to lua/pivq/display/cli.lua, which implements the REPL, `-e`, scripts and recipes.
 * This file is the only place that includes the Lua C API; libpivq itself never does.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include <editline/readline.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "pivq.h"

static lua_State *global_L;

/* ---- Ctrl-C --------------------------------------------------------------------------------
 * "raise": like lua.c, set a hook that raises "interrupted" at the next Lua instruction the
 *          interpreter runs, so a long REPL computation stops and the REPL survives. A hook does
 *          not fire inside a JIT-compiled trace (LuaJIT only checks hooks in the interpreter), so
 *          the REPL runs the chunks typed at it with the JIT off for them (lua/README.md, "The
 *          REPL": the mechanism and its limits); C code is interrupted when it returns to Lua.
 *          A second Ctrl-C while the first is still pending says so on stderr.
 * "flag":  remember it; a training loop polls host.interrupted() to checkpoint and stop.
 * "default": the process dies as usual.
 * At the REPL's prompt (host.readline on a terminal), Ctrl-C in any mode clears the line being
 * edited: the handler only sets the flag, which interrupts the prompt's select().
 * Threads: the host is not single-threaded (OpenBLAS starts its thread pool when it loads,
 * OpenMP its workers at the first parallel op, and none of them blocks SIGINT), and a Ctrl-C is
 * a process-directed signal, which the kernel hands to any thread that does not block it. A
 * handler running in another thread could not end the main thread's wait at the prompt (the
 * flag it set was seen only at the next key), nor safely set a hook on a Lua state that the main
 * thread is running; so on_sigint, whichever thread it runs in, forwards the signal to the main
 * thread (pthread_kill), and does its work there only. */
static pthread_t main_thread;
static volatile sig_atomic_t interrupted_flag = 0;
static volatile sig_atomic_t hook_pending = 0;
static volatile sig_atomic_t at_prompt = 0;
static int interrupt_mode = 0; /* 0 default, 1 raise, 2 flag */

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    interrupted_flag = 0;
    hook_pending = 0;
    luaL_error(L, "interrupted");
}

static void on_sigint(int sig)
{
    int saved_errno = errno;
    if (!pthread_equal(pthread_self(), main_thread)) {
        pthread_kill(main_thread, sig); /* async-signal-safe (POSIX.1-2008 TC1) */
        errno = saved_errno;
        return;
    }
    interrupted_flag = 1;
    if (at_prompt || interrupt_mode != 1 || !global_L) {
        errno = saved_errno;
        return;
    }
    if (hook_pending) {
        static const char msg[] =
            "\npivq: still in compiled code or a C call; it stops when it returns "
            "to the interpreter (Ctrl-\\ quits the session)\n";
        ssize_t ignored = write(2, msg, sizeof msg - 1);
        (void)ignored;
        errno = saved_errno;
        return;
    }
    hook_pending = 1;
    lua_sethook(global_L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    errno = saved_errno;
}

static void install_sigint(int on)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on ? on_sigint : SIG_DFL;
    sa.sa_flags = 0; /* no SA_RESTART: the prompt's select() must return on Ctrl-C */
    sigaction(SIGINT, &sa, NULL);
}

/* set_interrupt_mode(mode) -> the previous mode, so a caller (a training loop) can restore it */
static int host_set_interrupt_mode(lua_State *L)
{
    static const char *const names[] = {"default", "raise", "flag"};
    const char *mode = luaL_checkstring(L, 1);
    int previous = interrupt_mode;
    if (strcmp(mode, "raise") == 0)
        interrupt_mode = 1;
    else if (strcmp(mode, "flag") == 0)
        interrupt_mode = 2;
    else if (strcmp(mode, "default") == 0)
        interrupt_mode = 0;
    else
        return luaL_error(L, "set_interrupt_mode: unknown mode '%s' (raise, flag, default)", mode);
    interrupted_flag = 0;
    if (hook_pending) {
        lua_sethook(L, NULL, 0, 0);
        hook_pending = 0;
    }
    install_sigint(interrupt_mode != 0);
    lua_pushstring(L, names[previous]);
    return 1;
}

static int host_interrupted(lua_State *L)
{
    lua_pushboolean(L, interrupted_flag);
    interrupted_flag = 0;
    return 1;
}

/* ---- line editing ---------------------------------------------------------------------------
 * On a terminal the prompt uses libedit's callback interface, and libedit reads every byte
 * through host_getc (rl_getc_function), which waits for a key in pselect(), so Ctrl-C (which
 * interrupts the wait) clears the line instead of ending the session. Tab completion asks the
 * Lua function registered with host.set_completer(fn): fn(word, line) -> list of completions. */

static lua_State *completion_L;
static int completer_ref = LUA_NOREF;
static char *line_read;
static int line_done;
static int input_ended;      /* the terminal went away (end of input, or an error) */
static int prompt_fd = -1;   /* at the prompt: the terminal opened again, non-blocking */
static sigset_t prompt_mask; /* at the prompt: the signal mask inside the wait (SIGINT open) */

/* One byte of input: 1, or 0 at end of input, or -1 when Ctrl-C came (at the prompt).
   At the prompt this thread blocks SIGINT except inside pselect(), which unblocks it atomically,
   and it never waits anywhere else: a Ctrl-C landing at any moment either ends the wait or is
   seen at the flag before the next one. The read must not wait either. A Ctrl-C makes the
   terminal discard its pending input (ISIG without NOFLSH), so a key that pselect reported may
   be gone when it is read, and a blocking read would then sleep, SIGINT blocked, until the next
   key. Hence the prompt reads prompt_fd, a second, non-blocking open of the terminal (O_NONBLOCK
   on fd 0 itself would change the open file the shell shares). Should neither /proc/self/fd/0
   nor ttyname(0) open, it reads fd 0 once pselect reports a key, with that small window. */
static int read_byte(FILE *stream, unsigned char *c)
{
    int fd = fileno(stream);
    for (;;) {
        ssize_t r;
        if (!at_prompt) {
            r = read(fd, c, 1);
            if (r < 0 && errno == EINTR) continue;
            return r == 1 ? 1 : 0;
        }
        if (interrupted_flag) return -1;
        if (prompt_fd >= 0) {
            r = read(prompt_fd, c, 1);
            if (r == 1) return 1;
            if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return 0;
        }
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(fd, &fds);
        int ready = pselect(fd + 1, &fds, NULL, NULL, NULL, &prompt_mask);
        if (ready < 0 && errno != EINTR) return 0;
        if (ready > 0 && prompt_fd < 0 && !interrupted_flag) {
            r = read(fd, c, 1);
            if (r == 1) return 1;
            if (r == 0 || errno != EINTR) return 0;
        }
    }
}

static int open_prompt_fd(void)
{
    int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    int fd = open("/proc/self/fd/0", flags);
    const char *name = fd < 0 ? ttyname(0) : NULL;
    return name ? open(name, flags) : fd;
}

/* libedit's character reader (rl_getc_function; set before libedit initialises): a character,
   or -1 (EOF to libedit) at end of input and when Ctrl-C came. Multibyte input is decoded as
   libedit's own reader does it (mbrtowc in the current locale; an invalid byte is dropped). */
static int host_getc(FILE *stream)
{
    char buf[MB_LEN_MAX];
    size_t n = 0;
    for (;;) {
        unsigned char c;
        int got = read_byte(stream, &c);
        if (got <= 0) {
            if (got == 0) input_ended = 1;
            return -1;
        }
        buf[n++] = (char)c;
        for (;;) {
            wchar_t wc;
            mbstate_t state;
            memset(&state, 0, sizeof state);
            size_t k = mbrtowc(&wc, buf, n, &state);
            if (k == (size_t)-2 && n < sizeof buf) break; /* incomplete: one more byte */
            if (k != (size_t)-1 && k != (size_t)-2) return (int)wc;
            if (n == 1) { /* invalid: dropped; the last byte may begin the next character */
                n = 0;
                break;
            }
            buf[0] = buf[n - 1];
            n = 1;
        }
    }
}

static void on_line(char *line)
{
    line_read = line;
    line_done = 1;
    rl_callback_handler_remove();
}

static char **complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1; /* never fall back to file names */
    lua_State *L = completion_L;
    if (!L || completer_ref == LUA_NOREF) return NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, completer_ref);
    lua_pushstring(L, text);
    lua_pushlstring(L, rl_line_buffer, (size_t)rl_end);
    if (lua_pcall(L, 2, 1, 0) != 0 || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    size_t n = lua_objlen(L, -1);
    if (n == 0) {
        lua_pop(L, 1);
        return NULL;
    }
    /* matches[0] is the longest common prefix, then the n matches, then NULL (readline's rule) */
    char **matches = calloc(n + 2, sizeof *matches);
    if (!matches) {
        lua_pop(L, 1);
        return NULL;
    }
    size_t common = 0;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (int)i);
        const char *s = lua_tostring(L, -1);
        matches[i] = strdup(s ? s : "");
        lua_pop(L, 1);
        if (!matches[i]) break;
        if (i == 1)
            common = strlen(matches[1]);
        else
            while (common > 0 && strncmp(matches[1], matches[i], common) != 0)
                common--;
    }
    lua_pop(L, 1);
    matches[0] = strndup(matches[1] ? matches[1] : "", common);
    if (n == 1) rl_completion_append_character = '\0';
    return matches;
}

static int host_set_completer(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (completer_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, completer_ref);
    lua_pushvalue(L, 1);
    completer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    rl_attempted_completion_function = complete;
    /* a word for completion runs through '.' and ':' (pivq.ra, m:code_) */
    rl_completer_word_break_characters = " \t\n\"'`><=;+-*/%^~#{}()[],";
    return 0;
}

/* readline(prompt) -> the line; nil at end of input; false when Ctrl-C cleared the line */
static int host_readline(lua_State *L)
{
    const char *prompt = luaL_optstring(L, 1, "> ");
    if (!isatty(0)) {
        char *line = readline(prompt);
        if (!line) return 0; /* EOF */
        lua_pushstring(L, line);
        free(line);
        return 1;
    }
    completion_L = L;
    line_read = NULL;
    line_done = 0;
    input_ended = 0;
    interrupted_flag = 0;
    /* SIGINT stays blocked in this thread except inside read_byte's pselect(), which unblocks it
       atomically: a Ctrl-C that comes after the flag is checked but before the wait starts (the
       prompt has just been printed) is delivered by pselect and ends the wait, instead of setting
       the flag while the loop sleeps until the next key. */
    sigset_t sigint_only, saved_mask;
    sigemptyset(&sigint_only);
    sigaddset(&sigint_only, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigint_only, &saved_mask);
    prompt_mask = saved_mask;
    sigdelset(&prompt_mask, SIGINT);
    prompt_fd = open_prompt_fd();
    at_prompt = 1;
    rl_callback_handler_install(prompt, on_line);
    /* At the prompt SIGINT is on_sigint's alone. rl_callback_handler_install has libedit install
       its own handlers (read_prepare -> sig_set; they stay for the other signals: Ctrl-Z, window
       size), and libedit's SIGINT handler restores the terminal, puts back the handler it
       replaced and raises the signal again with kill(0, SIGINT). That second SIGINT is
       process-directed and comes while this thread blocks SIGINT (inside the handler), so the
       kernel gives it to another thread (OpenBLAS's), where on_sigint used to set the flag: when
       that landed after this thread's last look at the flag, pselect slept on until the next key,
       the lost Ctrl-C of the CI flake. on_sigint forwards to this thread now, and with our
       handler here one Ctrl-C is one signal, handled here. rl_callback_handler_remove puts back
       what libedit saved (ours, or SIG_DFL) and the terminal's cooked mode. */
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    sigemptyset(&ours.sa_mask);
    ours.sa_handler = on_sigint; /* no SA_RESTART, as in install_sigint */
    sigaction(SIGINT, &ours, NULL);
    while (!line_done && !interrupted_flag && !input_ended)
        rl_callback_read_char(); /* one key (or key sequence); host_getc waits for it */
    if (!line_done) rl_callback_handler_remove();
    completion_L = NULL;
    /* The caller's mask back (not a blanket unblock), still at the prompt: a Ctrl-C that came
       after the last look at the flag is delivered here and only sets the flag. It is not
       dropped: it cancels the entry, as it would have a moment earlier (left pending, it would
       raise "interrupted" at whatever Lua instruction runs next, maybe outside the REPL's
       protection). */
    pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
    int cancelled = interrupted_flag != 0;
    if (cancelled) {
        free(line_read);
        line_read = NULL;
    }
    at_prompt = 0;
    interrupted_flag = 0;
    if (prompt_fd >= 0) close(prompt_fd);
    prompt_fd = -1;
    if (cancelled) {
        fputs("^C\n", stdout);
        fflush(stdout);
        lua_pushboolean(L, 0);
        return 1;
    }
    if (!line_read) return 0; /* Ctrl-D on an empty line */
    lua_pushstring(L, line_read);
    free(line_read);
    return 1;
}

static int host_add_history(lua_State *L)
{
    add_history(luaL_checkstring(L, 1));
    return 0;
}

static int host_read_history(lua_State *L)
{
    read_history(luaL_checkstring(L, 1));
    return 0;
}

/* write_history(path) -> true, or nil and the reason */
static int host_write_history(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int rc = write_history(path);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot write history %s: %s", path, strerror(rc > 0 ? rc : errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int host_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* ---- paths ------------------------------------------------------------------------------------
 */

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Where the host finds its Lua code and recipes. */
typedef struct host_paths {
    char root[PATH_MAX];    /* the source tree (lua/, recipes/) or the install prefix */
    char lua[PATH_MAX];     /* the folder holding pivq/init.lua */
    char gen[PATH_MAX];     /* the folder holding the generated pivq/_build.lua */
    char recipes[PATH_MAX]; /* the bundled recipes */
} host_paths;

/* dst = where, or where relative to the executable's folder `bin` when it is a relative path. */
static void installed_path(char *dst, size_t len, const char *bin, const char *where)
{
    if (where[0] == '/')
        snprintf(dst, len, "%s", where);
    else
        snprintf(dst, len, "%s/%s", bin, where);
}

/* Fill p. Order: $PIVQ_HOME (a source tree with its build/ inside), the source tree when this
   binary is the build tree's, else the installed layout: PIVQ_INSTALLED_LUA_DIR and
   PIVQ_INSTALLED_RECIPES_DIR, relative to the executable's own folder (so an installed tree
   works wherever `cmake --install --prefix` put it, and from any directory) or absolute. */
static void find_paths(host_paths *p)
{
    const char *home = getenv("PIVQ_HOME");
    if (home && *home) {
        snprintf(p->root, sizeof p->root, "%s", home);
        snprintf(p->lua, sizeof p->lua, "%s/lua", home);
        snprintf(p->gen, sizeof p->gen, "%s/build/lua", home);
        snprintf(p->recipes, sizeof p->recipes, "%s/recipes", home);
        return;
    }
    char exe[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) exe[n] = '\0';
    char path[PATH_MAX], real_build[PATH_MAX];
    snprintf(path, sizeof path, "%s/pivq", PIVQ_BUILD_DIR);
    if (realpath(path, real_build) && strcmp(real_build, exe) == 0) {
        snprintf(p->root, sizeof p->root, "%s", PIVQ_SOURCE_DIR);
        snprintf(p->lua, sizeof p->lua, "%s/lua", PIVQ_SOURCE_DIR);
        snprintf(p->gen, sizeof p->gen, "%s/lua", PIVQ_BUILD_DIR);
        snprintf(p->recipes, sizeof p->recipes, "%s/recipes", PIVQ_SOURCE_DIR);
        return;
    }
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0'; /* the executable's folder, PREFIX/bin */
    snprintf(p->root, sizeof p->root, "%s/..", exe);
    installed_path(p->lua, sizeof p->lua, exe, PIVQ_INSTALLED_LUA_DIR);
    snprintf(p->gen, sizeof p->gen, "%s", p->lua); /* _build.lua is installed beside the package */
    installed_path(p->recipes, sizeof p->recipes, exe, PIVQ_INSTALLED_RECIPES_DIR);
}

/* Find pivq/init.lua through package.path (package table on the stack top) and set p->lua to
   the folder holding pivq/. Returns 1 if found. */
static int package_on_lua_path(lua_State *L, host_paths *p)
{
    lua_getfield(L, -1, "searchpath");
    lua_pushstring(L, "pivq");
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 1);
    const char *found = lua_tostring(L, -1);
    size_t n = found ? strlen(found) : 0;
    const char *tail = "/pivq/init.lua";
    size_t tn = strlen(tail);
    int ok = n > tn && strcmp(found + n - tn, tail) == 0 && n - tn < sizeof p->lua;
    if (ok) {
        memcpy(p->lua, found, n - tn);
        p->lua[n - tn] = '\0';
        snprintf(p->gen, sizeof p->gen, "%s", p->lua);
    }
    lua_pop(L, 1);
    return ok;
}

/* ---- the OpenMP wait policy (startup) ---------------------------------------------------------
 * libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in its initializer, which runs before
 * main() because libpivq links it. Its default lets an idle thread spin ~300,000 iterations
 * (milliseconds) before sleeping: on an idle machine that saves a futex wake per parallel region,
 * but when other jobs keep the cores busy the spinning threads burn the time slices their
 * partners need, and 2 threads ran many times slower than 1. So when the user has set neither
 * variable, the host re-executes itself once with GOMP_SPINCOUNT=PIVQ_HOST_SPINCOUNT (and the
 * marker PIVQ_HOST_OMP) from the executable's .preinit_array, which runs before any shared
 * library's initializer (libc's and libgomp's included: getenv and setenv do not work yet, so it
 * reads and copies envp itself). main() removes both variables again, so programs the host starts
 * see the user's environment. Not under valgrind (its preload in LD_PRELOAD), which would not
 * follow the exec. The figures behind the value: recipes/README.md, "Benchmarks". */
#ifndef PIVQ_HOST_SPINCOUNT
#define PIVQ_HOST_SPINCOUNT "1000"
#endif
#define PIVQ_HOST_OMP_MARKER "PIVQ_HOST_OMP=1"
static const char *omp_wait = "libgomp default"; /* what pivq.host.omp_wait reports */

static int env_starts(const char *entry, const char *prefix)
{
    return strncmp(entry, prefix, strlen(prefix)) == 0;
}

static void choose_omp_wait(int argc, char **argv, char **envp)
{
    (void)argc;
    static char *env[4096 + 3]; /* static: no malloc before libc is initialised */
    size_t n = 0;
    for (char **e = envp; e && *e; e++, n++) {
        if (env_starts(*e, "OMP_WAIT_POLICY=") || env_starts(*e, "GOMP_SPINCOUNT=") ||
            env_starts(*e, "PIVQ_HOST_OMP=") ||
            (env_starts(*e, "LD_PRELOAD=") && strstr(*e, "vgpreload")) || n >= 4096)
            return; /* the user's choice, the second start, valgrind, or an absurd environment */
        env[n] = *e;
    }
    env[n] = "GOMP_SPINCOUNT=" PIVQ_HOST_SPINCOUNT;
    env[n + 1] = PIVQ_HOST_OMP_MARKER;
    env[n + 2] = NULL;
    execve("/proc/self/exe", argv, env);
    /* the exec failed (no /proc?): carry on with libgomp's default */
}
__attribute__((section(".preinit_array"),
               used)) static void (*const preinit_omp_wait)(int, char **,
                                                            char **) = choose_omp_wait;

/* In main(): after the re-execution, drop the two variables and say what is in force. */
static void settle_omp_wait(void)
{
    static char text[200];
    const char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    if (getenv("PIVQ_HOST_OMP")) {
        omp_wait = "pivq: GOMP_SPINCOUNT=" PIVQ_HOST_SPINCOUNT;
        unsetenv("PIVQ_HOST_OMP");
        unsetenv("GOMP_SPINCOUNT");
    } else if (policy || spin) {
        snprintf(text, sizeof text, "user: %s%.60s%s%s%.60s", policy ? "OMP_WAIT_POLICY=" : "",
                 policy ? policy : "", policy && spin ? " " : "", spin ? "GOMP_SPINCOUNT=" : "",
                 spin ? spin : "");
        omp_wait = text;
    }
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = "(error object is not a string)";
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int main(int argc, char **argv)
{
    static host_paths paths; /* static: four PATH_MAX buffers are too large for the stack */
    char buf[3 * PATH_MAX + 256];
    /* A file-size limit (ulimit -f) must fail the write that exceeds it with EFBIG, which the
       writers report ("cannot write checkpoint ...: File too large"), rather than kill the
       process with SIGXFSZ in the middle of a training run. */
    signal(SIGXFSZ, SIG_IGN);
    main_thread = pthread_self(); /* on_sigint forwards Ctrl-C here (see "Ctrl-C") */
    rl_getc_function = host_getc; /* before libedit initialises (its first use) */
    settle_omp_wait();
    /* Progress lines reach a log file as they happen (`pivq train > log 2>&1 &`): stdout is
       line-buffered when it is not a terminal (the C library would buffer it in blocks). */
    if (!isatty(1)) setvbuf(stdout, NULL, _IOLBF, 0);
    find_paths(&paths);

    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "pivq: cannot create a Lua state (out of memory)\n");
        return 2;
    }
    global_L = L;
    luaL_openlibs(L);

    lua_getglobal(L, "package");
    snprintf(buf, sizeof buf, "%s/pivq/init.lua", paths.lua);
    if (is_file(buf)) {
        /* package.path: the package sources, the generated cdef, then whatever was there */
        lua_getfield(L, -1, "path");
        snprintf(buf, sizeof buf, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s", paths.lua, paths.lua,
                 paths.gen, lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_pushstring(L, buf);
        lua_setfield(L, -2, "path");
    } else if (!package_on_lua_path(L, &paths)) {
        /* A LuaRocks install moves the package into its tree's share/lua/5.1, which LUA_PATH
           names after `eval "$(luarocks path)"`: package_on_lua_path looked there. */
        fprintf(stderr,
                "pivq: cannot find the Lua package at %s, nor as pivq/init.lua on LUA_PATH "
                "(set PIVQ_HOME to a source tree, or LUA_PATH to an installed one)\n",
                buf);
        lua_close(L);
        return 2;
    }

    /* package.loaded["pivq.host"] */
    lua_getfield(L, -1, "loaded");
    lua_newtable(L);
    static const luaL_Reg fns[] = {{"readline", host_readline},
                                   {"add_history", host_add_history},
                                   {"read_history", host_read_history},
                                   {"write_history", host_write_history},
                                   {"isatty", host_isatty},
                                   {"set_interrupt_mode", host_set_interrupt_mode},
                                   {"interrupted", host_interrupted},
                                   {"set_completer", host_set_completer},
                                   {NULL, NULL}};
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    lua_pushstring(L, paths.root);
    lua_setfield(L, -2, "root");
    lua_pushstring(L, paths.lua);
    lua_setfield(L, -2, "lua_dir");
    lua_pushstring(L, paths.recipes);
    lua_setfield(L, -2, "recipes_dir");
    lua_pushstring(L, pivq_version());
    lua_setfield(L, -2, "version");
    lua_pushstring(L, omp_wait);
    lua_setfield(L, -2, "omp_wait");
    lua_setfield(L, -2, "pivq.host");
    lua_pop(L, 2);

    /* require("pivq.display.cli").main(argv) under a traceback handler */
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, "pivq.display.cli");
    int rc = lua_pcall(L, 1, 1, -3);
    if (rc == 0) {
        lua_getfield(L, -1, "main");
        lua_remove(L, -2);
        lua_newtable(L);
        for (int i = 1; i < argc; i++) {
            lua_pushstring(L, argv[i]);
            lua_rawseti(L, -2, i);
        }
        rc = lua_pcall(L, 1, 1, -3);
    }
    int status = 0;
    if (rc != 0) {
        fprintf(stderr, "pivq: %s\n", lua_tostring(L, -1));
        status = 1;
    } else if (lua_isnumber(L, -1)) {
        status = (int)lua_tointeger(L, -1);
    }
    lua_close(L);
    return status;
}
