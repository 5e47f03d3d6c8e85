/* io/proc.c — running a program without a shell: argv goes to execvp as it is, so no user
 * text is ever parsed by /bin/sh (a folder named "x';touch y;'" is just a folder name). */
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int pivq_run(const char *const *argv, char *out, size_t out_cap, size_t *out_len)
{
    if (out_len) *out_len = 0;
    if (!argv || !argv[0] || !*argv[0]) return pivq_set_error("run: argv[0] is empty");
    if (out_cap && !out) return pivq_set_error("run: out is NULL with out_cap %zu", out_cap);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return pivq_set_error("run: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return pivq_set_error("run: fork: %s", strerror(e));
    }
    if (pid == 0) {
        /* the child: stdout and stderr into the pipe, stdin from /dev/null */
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        execvp(argv[0], (char *const *)argv);
        const char *msg = "run: cannot execute the program\n";
        (void)!write(2, msg, strlen(msg));
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    char sink[4096];
    for (;;) {
        char *dst = got < out_cap ? out + got : sink;
        size_t room = got < out_cap ? out_cap - got : sizeof sink;
        ssize_t n = read(fds[0], dst, room);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (got < out_cap) got += (size_t)n; /* output past out_cap is read and dropped */
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return pivq_set_error("run: waitpid: %s", strerror(errno));
    if (out_len) *out_len = got;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
