"""Drive the installed pivq kernel through jupyter_client, as a notebook front-end would.

Run by spec/lua/jupyter_spec.lua with Debian's /usr/bin/python3 and JUPYTER_PATH pointing at a
temporary kernel-spec prefix. Prints one line per check, "PASS name" or "FAIL name: why", and
"DONE" at the end; the spec asserts on those lines (so a failure names the check).
Run from the repository root (cells load spec/helpers/png_double.lua).
"""

import base64
import os
import struct
import sys
import time
import zlib

from jupyter_client.manager import KernelManager

TIMEOUT = 30


def report(name, ok, why=""):
    print(("PASS %s" % name) if ok else ("FAIL %s: %s" % (name, why)), flush=True)


class Session:
    def __init__(self):
        self.km = KernelManager(kernel_name="pivq")
        self.km.start_kernel(cwd=os.getcwd())
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def start(self, code):
        # stop_on_error=False: after an error ipykernel aborts requests already queued, and the
        # next cell may race into that window; front-ends' Run All relies on it, these checks not
        return self.kc.execute(code, stop_on_error=False)

    def wait_for_output(self, msg_id, text, timeout=TIMEOUT):
        """Wait until the running cell has printed `text`; returns the outputs so far."""
        outputs = []
        deadline = time.monotonic() + timeout
        while text not in stream_text(outputs):
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] in ("stream", "execute_result", "display_data", "error"):
                outputs.append((msg["msg_type"], msg["content"]))
        return outputs

    def collect(self, msg_id, timeout=TIMEOUT, outputs=None):
        """The outputs and reply of one execution: (reply content, [(msg_type, content)])."""
        outputs = outputs if outputs is not None else []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                break
            if kind in ("stream", "execute_result", "display_data", "error"):
                outputs.append((kind, msg["content"]))
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"], outputs

    def run(self, code, timeout=TIMEOUT):
        return self.collect(self.start(code), timeout)

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def stream_text(outputs, name="stdout"):
    return "".join(c["text"] for k, c in outputs if k == "stream" and c["name"] == name)


def result_text(outputs):
    texts = [c["data"]["text/plain"] for k, c in outputs if k == "execute_result"]
    return texts[0] if texts else None


def png_size(b64):
    """(width, height) of a PNG after checking its signature, chunk CRCs and pixel data size."""
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, width, height, idat = 8, None, None, b""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body), "bad CRC in %r" % kind
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            c = channels[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    if depth == 8:
        assert len(zlib.decompress(idat)) == height * (1 + width * c), "pixel data size"
    return width, height


def png_pixels(b64):
    """(width, height, channels, rows of 8-bit samples) of a non-interlaced 8-bit gray/RGB(A) PNG,
    decoded here with zlib and the five PNG filters (PNG spec, section 9), independently of libpng."""
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert depth == 8 and interlace == 0, (depth, interlace)
    c = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    raw, stride = zlib.decompress(idat), width * c
    rows, prev = [], bytes(stride)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - c] if i >= c else 0
            b, d = prev[i], prev[i - c] if i >= c else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - d
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - d)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else d)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, c, rows


def check(name, fn):
    try:
        fn()
        report(name, True)
    except AssertionError as e:
        report(name, False, str(e) or "assertion failed")
    except Exception as e:  # noqa: BLE001 - any failure is reported by name
        report(name, False, "%s: %s" % (type(e).__name__, e))


def main():
    s = Session()
    try:
        def execute():
            reply, out = s.run('x = 41\nprint("hello")\nio.write("no newline")\nx + 1')
            assert reply["status"] == "ok", reply
            assert stream_text(out) == "hello\nno newline", repr(stream_text(out))
            assert result_text(out) == "42", repr(result_text(out))
            reply, out = s.run("local t = pivq.tensor{{1, 2}, {3, 4}}\nt * 2")
            assert result_text(out) == " 2 4\n 6 8\n[pivq.Tensor float32 of size 2x2]", result_text(out)
            reply, out = s.run("y = {a = 1, b = {2, 3}};")
            assert result_text(out) is None, "a trailing ; should hide the value"
            reply, out = s.run("y")
            assert result_text(out) == "{a = 1, b = {2, 3}}", result_text(out)
            reply, out = s.run('io.stderr:write("warn\\n")')
            assert stream_text(out, "stderr") == "warn\n", out
        check("execute", execute)

        def error_then_good():
            reply, out = s.run('local a = 1\nerror("boom")')
            assert reply["status"] == "error", reply
            assert reply["ename"] == "LuaError", reply["ename"]
            assert reply["evalue"].endswith(":2: boom") and "cell[" in reply["evalue"], reply["evalue"]
            assert any("stack traceback:" in line for line in reply["traceback"]), reply["traceback"]
            errors = [c for k, c in out if k == "error"]
            assert errors and errors[0]["evalue"] == reply["evalue"], out
            reply, out = s.run("x")
            assert reply["status"] == "ok" and result_text(out) == "41", (reply, out)
            reply, out = s.run("x = = 1")
            assert reply["status"] == "error" and reply["ename"] == "SyntaxError", reply
            reply, out = s.run("x + 1")
            assert result_text(out) == "42", out
        check("error_then_good", error_then_good)

        def print_flood():  # more than a pipe's buffer while the cell runs
            reply, out = s.run("for i = 1, 30000 do print(i) end")
            text = stream_text(out)
            assert reply["status"] == "ok", reply
            assert text.endswith("29999\n30000\n") and text.count("\n") == 30000, len(text)
        check("print_flood", print_flood)

        def no_png_message():
            reply, out = s.run('require("pivq.display").png_available()')
            if result_text(out) == "true":
                return  # pivq.image is there: nothing to check
            reply, out = s.run("pivq.show(pivq.zeros(1, 2, 2))")
            assert reply["status"] == "error", reply
            assert "pivq.display needs pivq.image (PNG support)" in reply["evalue"], reply["evalue"]
        check("no_png_message", no_png_message)

        def image_pixels():  # the real pivq.image (libpng): the pixels a cell shows are its tensor's
            reply, out = s.run('require("pivq.display").png_available()')
            if result_text(out) != "true":
                return  # no PNG support built: no_png_message covers it
            # values v in [0, 1] stored as round(255 v); a ramp and a few awkward values
            reply, out = s.run("img = pivq.tensor{{{0, 0.2, 0.5, 1}, {1, 0.75, 0.25, 0}}}\n"
                               "pivq.show(img)\npivq.show(pivq.stack({img, 1 - img}), {ncol = 1, padding = 1})")
            assert reply["status"] == "ok", reply
            shows = [c["data"]["image/png"] for k, c in out if k == "display_data"]
            assert len(shows) == 2, out
            w, h, c, rows = png_pixels(shows[0])
            assert (w, h, c) == (4, 2, 1), (w, h, c)
            assert rows == [bytes([0, 51, 128, 255]), bytes([255, 191, 64, 0])], rows
            # a batch of two, one per row, framed and separated by 1-pixel lines of zeros
            w, h, c, rows = png_pixels(shows[1])
            assert (w, h, c) == (6, 7, 1), (w, h, c)
            assert rows == [bytes(6), bytes([0, 0, 51, 128, 255, 0]), bytes([0, 255, 191, 64, 0, 0]), bytes(6),
                            bytes([0, 255, 204, 128, 0, 0]), bytes([0, 0, 64, 191, 255, 0]), bytes(6)], rows
        check("image_pixels", image_pixels)

        def image():
            reply, out = s.run('package.loaded["pivq.data.image"] = dofile("spec/helpers/png_double.lua")')
            assert reply["status"] == "ok", reply
            reply, out = s.run('print("before")\npivq.show(pivq.rand(3, 5, 7))\nprint("after")')
            assert reply["status"] == "ok", reply
            assert [k for k, _ in out] == ["stream", "display_data", "stream"], [k for k, _ in out]
            data = out[1][1]["data"]
            assert png_size(data["image/png"]) == (7, 5), png_size(data["image/png"])
            assert data["text/plain"] == "<image 3x5x7>", data
            reply, out = s.run("pivq.display(pivq.rand(5, 1, 4, 6), {ncol = 2, padding = 1})")
            shows = [c for k, c in out if k == "display_data"]
            assert len(shows) == 1 and "image/png" in shows[0]["data"], out
            assert png_size(shows[0]["data"]["image/png"]) == (13, 14), png_size(shows[0]["data"]["image/png"])
            reply, out = s.run("pivq.display({1, 2})")
            shows = [c for k, c in out if k == "display_data"]
            assert shows and shows[0]["data"] == {"text/plain": "{1, 2}"}, out
        check("image", image)

        def interrupt():
            s.run("z = 7")
            msg_id = s.start('print("spinning")\n'
                             "local function spin() while true do end end\njit.off(spin)\nspin()")
            so_far = s.wait_for_output(msg_id, "spinning\n")
            time.sleep(0.2)
            s.km.interrupt_kernel()
            reply, out = s.collect(msg_id, timeout=15, outputs=so_far)
            assert stream_text(out) == "spinning\n", out
            assert reply["status"] == "error" and reply["ename"] == "Interrupt", reply
            reply, out = s.run("z")
            assert result_text(out) == "7", "state lost after an interrupt: %r" % (out,)
        check("interrupt", interrupt)

        def interrupt_compiled_loop():
            # LuaJIT runs no hooks in compiled traces: the kernel restarts pivq after the grace
            msg_id = s.start('print("looping")\nlocal n = 0\nfor i = 1, math.huge do n = n + i end')
            s.wait_for_output(msg_id, "looping\n")
            time.sleep(0.2)
            t0 = time.monotonic()
            s.km.interrupt_kernel()
            reply, out = s.collect(msg_id, timeout=30)
            assert reply["status"] == "error" and reply["ename"] == "KernelRestarted", reply
            assert time.monotonic() - t0 < 20, "took too long"
            reply, out = s.run("z")
            assert result_text(out) == "nil", (reply, out)
            reply, out = s.run("1 + 1")
            assert result_text(out) == "2", out
        check("interrupt_compiled_loop", interrupt_compiled_loop)

        def process_exit():
            reply, out = s.run('print("bye")\nos.exit(3)')
            assert reply["status"] == "error" and reply["ename"] == "KernelRestarted", reply
            assert "exit status 3" in reply["evalue"], reply["evalue"]
            assert stream_text(out) == "bye\n", out
            reply, out = s.run("2 * 21")
            assert result_text(out) == "42", out
        check("process_exit", process_exit)

        def complete():
            s.kc.complete("pivq.ran", 8)
            reply = s.kc.get_shell_msg(timeout=TIMEOUT)["content"]
            assert "randn" in reply["matches"] and "randperm" in reply["matches"], reply
            assert reply["cursor_start"] == 5 and reply["cursor_end"] == 8, reply
            s.kc.inspect("pivq.version", 7)
            reply = s.kc.get_shell_msg(timeout=TIMEOUT)["content"]
            assert reply["found"] and reply["data"]["text/plain"].startswith("pivq.version: string"), reply
            s.kc.is_complete("for i = 1, 3 do")
            reply = s.kc.get_shell_msg(timeout=TIMEOUT)["content"]
            assert reply["status"] == "incomplete", reply
        check("complete", complete)
    finally:
        s.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        print("FAIL session: %s: %s" % (type(e).__name__, e), flush=True)
        sys.exit(1)
