#!/usr/bin/python3
"""Drive a program through a pseudo-terminal, as a person at a keyboard would (the REPL specs).

usage: pty_drive.py STEPS.json PROGRAM [ARGS...]

STEPS is a JSON list of steps, run in order:
  ["send", TEXT, PAUSE]        type TEXT (a "\\t" is Tab, "\\u0003" Ctrl-C, "\\u0004" Ctrl-D), then
                               wait PAUSE seconds (0.05 when left out; 0 sends the next step at once)
  ["sleep", SECONDS]           wait, reading nothing
  ["signal_thread"]            send SIGINT to one thread of the program other than its main thread
                               (tgkill): what the kernel does with a Ctrl-C while the main thread
                               blocks SIGINT. Fails the step when the program has one thread only.
  ["expect", REGEX, SECONDS]   wait until the output since the last expect matches REGEX
  ["mark"]                     start timing (the next expect's "seconds" is measured from here)
  ["eof"]                      wait (at most 20 s) for the program to exit
  ["kill"]                     SIGKILL the program (nothing it would do at exit happens)
Prints one JSON object: {"ok": bool, "failed": the step that timed out or null, "timings": [seconds
of each expect after a mark], "status": exit status or null, "output": everything the program wrote}.
The terminal is 200 columns by 50 rows and TERM=xterm-256color unless the environment says otherwise.
"""
import ctypes, fcntl, json, os, pty, re, select, signal, struct, sys, termios, time

def main():
    steps = json.load(open(sys.argv[1]))
    argv = sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.setdefault("TERM", "xterm-256color")
        os.execvp(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    out, since, mark, timings, failed = b"", 0, None, [], None

    def pump(deadline):
        nonlocal out
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([fd], [], [], min(left, 0.05))
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return True  # the program closed the terminal (exited)
                if not data:
                    return True
                out += data
                return None

    status = None
    for step in steps:
        kind = step[0]
        if kind == "send":
            os.write(fd, step[1].encode())
            time.sleep(step[2] if len(step) > 2 else 0.05)
        elif kind == "sleep":
            time.sleep(step[1])
        elif kind == "signal_thread":
            others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
            libc = ctypes.CDLL(None, use_errno=True)
            if not others or libc.tgkill(pid, others[0], signal.SIGINT) != 0:
                failed = step
                break
        elif kind == "mark":
            mark = time.monotonic()
        elif kind == "expect":
            rx = re.compile(step[1].encode(), re.S)
            deadline = time.monotonic() + step[2]
            while not rx.search(out, since):
                if pump(deadline) is not None:
                    break
            m = rx.search(out, since)
            if not m:
                failed = step
                break
            since = m.end()
            if mark is not None:
                timings.append(time.monotonic() - mark)
                mark = None
        elif kind == "kill":
            os.kill(pid, signal.SIGKILL)
        elif kind == "eof":
            deadline = time.monotonic() + 20
            while pump(deadline) is None:
                pass
    if failed is None:
        for _ in range(200):
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(st)
                break
            time.sleep(0.05)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(json.dumps({"ok": failed is None, "failed": failed, "timings": timings, "status": status,
                      "output": out.decode("utf-8", "replace")}))

main()
