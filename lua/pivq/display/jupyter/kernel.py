"""The pivq Jupyter kernel: a thin ipykernel wrapper around one persistent `pivq` process.

Installed by `pivq jupyter install`, which writes a kernel.json whose argv is

    /usr/bin/python3 .../lua/pivq/display/jupyter/kernel.py --pivq /abs/path/to/pivq -f {connection_file}

Jupyter's messaging (ZeroMQ, the wire protocol, iopub, interrupts) is ipykernel's; this file only
maps execute/complete/is_complete/shutdown requests onto the pivq process, which runs
`pivq jupyter serve` (lua/pivq/display/jupyter.lua, where the pipe protocol is described). The cells'
stdout and stderr are the process's own, streamed to the notebook as they arrive; protocol
messages use two further pipes, so nothing a cell prints can corrupt them.

Interrupt: Jupyter signals this kernel's process group with SIGINT; the pivq process runs in its
own session (so it is not signalled twice) and this kernel forwards one SIGINT to it. pivq
raises "interrupted" in the running Lua code and the kernel goes on. LuaJIT cannot interrupt a
JIT-compiled loop or a C call, so if the cell has not stopped PIVQ_KERNEL_INTERRUPT_GRACE seconds
(default 3) after the interrupt, or on a second interrupt, the pivq process is killed and
restarted: the cell ends with an error saying that the state was lost.

Environment: PIVQ_KERNEL_EXE overrides the pivq executable given by --pivq;
PIVQ_KERNEL_INTERRUPT_GRACE (seconds) sets the grace period above; PIVQ_KERNEL_PRELOAD becomes
the pivq process's LD_PRELOAD (used by the sanitizer test task).
"""

import os

# ipykernel imports debugpy, which warns on stderr about Python's frozen modules at every start
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

import base64
import codecs
import fcntl
import select
import shutil
import signal
import subprocess
import sys
import time

from ipykernel.kernelbase import Kernel

__version__ = "0.1"

STARTUP_TIMEOUT = 60.0
STREAM_FLUSH_INTERVAL = 0.05  # seconds: batch a cell's printing into few stream messages


class PivqDied(Exception):
    """The pivq process ended while the kernel was waiting for it."""


def encode_message(fields):
    """Frame a list of str/bytes fields: "<count>\\n" then "<len>\\n<bytes>" per field."""
    parts = [b"%d\n" % len(fields)]
    for f in fields:
        if isinstance(f, str):
            f = f.encode("utf-8")
        parts.append(b"%d\n" % len(f))
        parts.append(f)
    return b"".join(parts)


def decode_message(buf):
    """Parse one message from the front of a bytearray: (fields, consumed) or None if partial."""
    nl = buf.find(b"\n")
    if nl < 0:
        return None
    count = int(buf[:nl])
    pos = nl + 1
    fields = []
    for _ in range(count):
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return None
        length = int(buf[pos:nl])
        pos = nl + 1
        if len(buf) < pos + length:
            return None
        fields.append(bytes(buf[pos:pos + length]))
        pos += length
    return fields, pos


def pivq_environment():
    """The pivq process's environment: ours, plus PIVQ_KERNEL_PRELOAD as its LD_PRELOAD (the
    sanitizer runtime of the ASan test task, which must reach pivq but not Python)."""
    env = dict(os.environ)
    preload = env.get("PIVQ_KERNEL_PRELOAD")
    if preload:
        env["LD_PRELOAD"] = preload
    return env


class PivqProcess:
    """One `pivq jupyter serve` process and its pipes."""

    def __init__(self, exe, on_stream):
        self.exe = exe
        self.on_stream = on_stream  # on_stream(name, text)
        self.proc = None
        self.pending = []  # [name, text] not yet forwarded, in the order read
        self.last_flush = 0.0

    def start(self):
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [self.exe, "jupyter", "serve", "--in", str(req_r), "--out", str(rep_w)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(req_r, rep_w),
                start_new_session=True,
                env=pivq_environment(),
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self.req = req_w
        self.rep = rep_r
        self.buf = bytearray()
        self.eof = False
        self.streams = {}
        for name, f in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            fd = f.fileno()
            self.streams[fd] = (name, codecs.getincrementaldecoder("utf-8")(errors="replace"))
        for fd in [self.rep] + list(self.streams):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        ready = self.wait_message(STARTUP_TIMEOUT)
        if ready is None or ready[0] != b"ready":
            self.kill()
            raise RuntimeError("pivq did not start (%r); see its stderr above" % (ready,))
        self.version = ready[1].decode() if len(ready) > 1 else "?"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None and not self.eof

    def send(self, fields):
        data = encode_message(fields)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.req, view)
            except BlockingIOError:
                self.pump(0.05)
                continue
            except BrokenPipeError:
                raise PivqDied()
            view = view[n:]

    def _read_streams(self, fds):
        for fd in fds:
            name, decoder = self.streams[fd]
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:
                    self._queue(name, decoder.decode(b"", final=True))
                    del self.streams[fd]
                    break
                self._queue(name, decoder.decode(data))

    def _queue(self, name, text):
        if not text:
            return
        if self.pending and self.pending[-1][0] == name:
            self.pending[-1][1] += text
        else:
            self.pending.append([name, text])

    def flush_streams(self):
        pending, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        for name, text in pending:
            self.on_stream(name, text)

    def drain(self):
        """Forward everything already written to stdout/stderr."""
        self._read_streams(list(self.streams))
        self.flush_streams()

    def pump(self, timeout):
        """Wait up to timeout for output; forward streams; buffer protocol bytes."""
        fds = list(self.streams)
        if not self.eof:
            fds.append(self.rep)
        if not fds:
            self.flush_streams()
            time.sleep(timeout)
            return
        readable, _, _ = select.select(fds, [], [], timeout)
        self._read_streams([fd for fd in readable if fd in self.streams])
        if self.pending and time.monotonic() - self.last_flush >= STREAM_FLUSH_INTERVAL:
            self.flush_streams()
        if self.rep in readable:
            while True:
                try:
                    data = os.read(self.rep, 65536)
                except BlockingIOError:
                    break
                if not data:
                    self.eof = True
                    break
                self.buf += data

    def next_message(self):
        """A complete message from the buffer, or None. Streams printed before it are drained
        first, so output and messages reach the notebook in the order the cell made them."""
        parsed = decode_message(self.buf)
        if parsed is None:
            return None
        fields, used = parsed
        del self.buf[:used]
        self.drain()
        return fields

    def wait_message(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next_message()
            if msg is not None:
                return msg
            if self.eof:
                self.drain()
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.pump(min(left, 0.2))

    def interrupt(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()
        try:
            self.drain()
        except OSError:
            pass
        self.close()

    def close(self):
        for fd in (getattr(self, "req", None), getattr(self, "rep", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.req = self.rep = None
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        self.streams = {}

    def shutdown(self, timeout=3.0):
        if self.proc is None:
            return
        if self.alive():
            try:
                self.send(["shutdown"])
                self.wait_message(timeout)
                self.proc.wait(timeout)
            except (PivqDied, OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


def find_pivq(argv_exe):
    exe = os.environ.get("PIVQ_KERNEL_EXE") or argv_exe or shutil.which("pivq")
    if not exe:
        raise RuntimeError("cannot find the pivq executable: re-run `pivq jupyter install`")
    return exe


class PivqKernel(Kernel):
    implementation = "pivq"
    implementation_version = __version__
    language = "lua"
    language_version = "5.1"
    language_info = {
        "name": "lua",
        "version": "5.1",
        "mimetype": "text/x-lua",
        "file_extension": ".lua",
        "codemirror_mode": "lua",
        "pygments_lexer": "lua",
    }
    banner = "pivq (LuaJIT): Lua cells in one persistent pivq state"
    pivq_exe = None  # set by main()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._silent = False
        self._starting = False
        self._interrupted_at = None
        self._interrupts = 0
        self.grace = float(os.environ.get("PIVQ_KERNEL_INTERRUPT_GRACE", "3"))
        self.pivq = None
        self._start_pivq()

    # ---- the pivq process ---------------------------------------------------------------

    def _stream(self, name, text):
        if self._starting:  # not part of a cell: the kernel's own log
            sys.__stderr__.write(text)
            sys.__stderr__.flush()
        elif not self._silent:
            self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

    def _start_pivq(self):
        self.pivq = PivqProcess(find_pivq(self.pivq_exe), self._stream)
        self._starting = True
        try:
            self.pivq.start()
        finally:
            self._starting = False
        self.banner = "pivq %s (LuaJIT) — Lua cells in one persistent pivq state" % self.pivq.version

    def _on_sigint(self, signum, frame):
        self._interrupts += 1
        if self._interrupted_at is None:
            self._interrupted_at = time.monotonic()
        self.pivq.interrupt()

    # ---- requests -----------------------------------------------------------------------

    def _error_reply(self, ename, evalue, traceback):
        content = {"ename": ename, "evalue": evalue, "traceback": traceback}
        if not self._silent:
            self.send_response(self.iopub_socket, "error", content)
        content.update({"status": "error", "execution_count": self.execution_count})
        return content

    def _publish(self, fields):
        kind = fields[0]
        if kind == b"display":
            data = {}
            for i in range(1, len(fields) - 1, 2):
                mime = fields[i].decode()
                value = fields[i + 1]
                if mime.startswith("text/") or mime.endswith("json") or mime.endswith("+xml"):
                    data[mime] = value.decode("utf-8", "replace")
                else:
                    data[mime] = base64.b64encode(value).decode("ascii")
            if not self._silent:
                self.send_response(self.iopub_socket, "display_data", {"data": data, "metadata": {}})
        elif kind == b"result":
            if not self._silent:
                self.send_response(self.iopub_socket, "execute_result", {
                    "execution_count": self.execution_count,
                    "data": {"text/plain": fields[1].decode("utf-8", "replace")},
                    "metadata": {},
                })

    def _lost(self, why):
        """The pivq process had to go: restart it and say so."""
        self.pivq.kill()
        status = self.pivq.proc.returncode
        try:
            self._start_pivq()
            after = "pivq was restarted: variables from earlier cells are gone"
        except Exception as e:  # noqa: BLE001 - reported to the user
            after = "pivq could not be restarted (%s); restart the kernel" % e
        text = "%s (exit status %s); %s" % (why, status, after)
        return self._error_reply("KernelRestarted", text, [text])

    def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False):
        try:
            return self._execute(code, silent)
        except KeyboardInterrupt:
            # an interrupt in the moment before our handler was in place (ipykernel's raises)
            return self._error_reply("Interrupt", "interrupted", ["interrupted"])

    def _execute(self, code, silent):
        self._silent = silent
        if not code.strip():
            return {"status": "ok", "execution_count": self.execution_count,
                    "payload": [], "user_expressions": {}}
        if not self.pivq.alive():
            return self._lost("the pivq process had ended")
        self._interrupted_at = None
        self._interrupts = 0
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            try:
                self.pivq.send(["execute", code, str(self.execution_count)])
            except PivqDied:
                return self._lost("the pivq process had ended")
            while True:
                msg = self.pivq.next_message()
                if msg is None:
                    if self.pivq.eof:
                        self.pivq.drain()
                        return self._lost("the pivq process exited during the cell")
                    if self._interrupted_at is not None and (
                            self._interrupts > 1
                            or time.monotonic() - self._interrupted_at > self.grace):
                        return self._lost("the cell did not stop on interrupt (JIT-compiled loops and "
                                          "long C calls cannot be interrupted), so pivq was killed")
                    self.pivq.pump(0.1)
                    continue
                kind = msg[0]
                if kind == b"ok":
                    return {"status": "ok", "execution_count": self.execution_count,
                            "payload": [], "user_expressions": {}}
                if kind == b"error":
                    fields = [f.decode("utf-8", "replace") for f in msg[1:]]
                    return self._error_reply(fields[0], fields[1], fields[2:])
                self._publish(msg)
                if kind == b"display":
                    try:
                        self.pivq.send(["ack"])
                    except PivqDied:
                        pass  # seen as the end of input on the next turn
        finally:
            signal.signal(signal.SIGINT, previous)
            self._silent = False

    def _ask(self, fields, timeout=10.0):
        if not self.pivq.alive():
            return None
        try:
            self.pivq.send(fields)
        except PivqDied:
            return None
        return self.pivq.wait_message(timeout)

    def do_complete(self, code, cursor_pos):
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        # Jupyter counts cursor positions in unicode code points; Lua in bytes
        byte_cursor = len(code[:cursor_pos].encode("utf-8"))
        reply = self._ask(["complete", code, str(byte_cursor)])
        matches = []
        start = end = cursor_pos
        if reply and reply[0] == b"complete":
            matches = [m.decode("utf-8", "replace") for m in reply[3:]]
            start = cursor_pos - (int(reply[2]) - int(reply[1]))
        return {"status": "ok", "matches": matches, "cursor_start": start, "cursor_end": end,
                "metadata": {}}

    def do_inspect(self, code, cursor_pos, detail_level=0, omit_sections=()):
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        byte_cursor = len(code[:cursor_pos].encode("utf-8"))
        reply = self._ask(["inspect", code, str(byte_cursor)])
        if reply and reply[0] == b"inspect" and len(reply) > 1:
            text = reply[1].decode("utf-8", "replace")
            return {"status": "ok", "found": True, "data": {"text/plain": text}, "metadata": {}}
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}

    def do_is_complete(self, code):
        reply = self._ask(["is_complete", code])
        status = reply[1].decode() if reply and reply[0] == b"is_complete" else "unknown"
        content = {"status": status}
        if status == "incomplete":
            content["indent"] = ""
        return content

    def do_shutdown(self, restart):
        if self.pivq is not None:
            self.pivq.shutdown()
        return {"status": "ok", "restart": restart}


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if "--pivq" in argv:
        i = argv.index("--pivq")
        PivqKernel.pivq_exe = argv[i + 1]
        del argv[i:i + 2]
    sys.argv = argv
    from ipykernel.kernelapp import IPKernelApp
    IPKernelApp.launch_instance(kernel_class=PivqKernel)


if __name__ == "__main__":
    main()
