#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""An HTTP/1.1 range server for tests that can be told, per path, to misbehave.

usage: range-server.py DIR FAULTS LOG PORTFILE [--stall-sec S]

Serves the files of DIR by their base name, whatever the directories before it
(/stall/v2.bbi is DIR/v2.bbi): one byte range per request (206 with Content-Range,
Content-Length, a strong ETag and Last-Modified; If-Range honoured), the whole file (200)
without a Range header, 416 past the end. Keep-alive, bound to 127.0.0.1 on a port the
kernel picks, written to PORTFILE once it listens. It exits when its parent does (the test
that started it, even killed) and after 15 minutes whatever happens.

FAULTS is read again at every request; each line "PATH MODE [AT]" makes the requests for
PATH whose range starts at byte AT (without AT, every request for PATH) misbehave:
  stall          the 206 headers, then nothing for --stall-sec seconds (default 5); then close
  fail-once-NNN  the first such request answers status NNN (empty body), later ones correctly
  always-NNN     every one answers NNN
  short          206 headers claiming the whole range, half the body, then close
  short-cl       206 with Content-Range for the whole range but Content-Length and body half
  ignore-range   200 with the whole file, as a server without ranges answers
  reset-once     the first such request gets the headers and half the body, then a reset (RST)
A "once" fires once per PATH for the server's lifetime.

LOG gets a line per request: "SECONDS PATH FIRST-LAST STATUS BYTES-SENT WHAT", SECONDS on a
monotonic clock, WHAT the mode applied or "ok".
"""
import email.utils
import http.server
import os
import re
import socket
import struct
import sys
import threading
import time

DIR, FAULTS, LOG, PORTFILE = sys.argv[1:5]
STALL = 5.0
if len(sys.argv) > 6 and sys.argv[5] == "--stall-sec":
    STALL = float(sys.argv[6])
STALL = min(STALL, 60.0)  # bounded whatever the caller says

fired = set()
lock = threading.Lock()
logf = open(LOG, "a", buffering=1)


def faults():
    out = {}
    try:
        with open(FAULTS) as f:
            for line in f:
                w = line.split()
                if len(w) >= 2:
                    out[w[0]] = (w[1], int(w[2]) if len(w) > 2 else None)
    except FileNotFoundError:
        pass
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle kept-alive connection is dropped after this

    def log_message(self, *args):
        pass

    def record(self, first, last, status, sent, what):
        with lock:
            logf.write("%.3f %s %s-%s %d %d %s\n" % (time.monotonic(), self.path, first, last,
                                                     status, sent, what))

    def send_body(self, f, off, n):
        """n bytes of f from off; the count sent (fewer when the client went away)."""
        sent = 0
        f.seek(off)
        try:
            while sent < n:
                b = f.read(min(1 << 16, n - sent))
                if not b:
                    break
                self.wfile.write(b)
                sent += len(b)
        except OSError:
            self.close_connection = True
        return sent

    def status_only(self, code, first, last, what):
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.record(first, last, code, 0, what)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        name = os.path.join(DIR, os.path.basename(path))
        if not os.path.basename(path) or not os.path.isfile(name):
            return self.status_only(404, "", "", "missing")
        st = os.stat(name)
        size = st.st_size
        etag = '"%x-%x"' % (st.st_mtime_ns, size)
        lastmod = email.utils.formatdate(st.st_mtime, usegmt=True)
        rng = self.headers.get("Range")
        ifr = self.headers.get("If-Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        whole = rng is None or (ifr is not None and ifr not in (etag, lastmod))
        if not whole and not m:
            return self.status_only(400, "", "", "bad-range")
        first = 0 if whole else int(m.group(1))
        last = size - 1 if whole or not m.group(2) else min(int(m.group(2)), size - 1)
        if not whole and first >= size:
            return self.status_only(416, first, "", "past-end")

        mode, at = faults().get(path, (None, None))
        if at is not None and first != at:
            mode = None
        if mode is not None and (mode.endswith("-once") or mode.startswith("fail-once-")):
            with lock:
                if path in fired:
                    mode = None
                else:
                    fired.add(path)

        n = last - first + 1
        if mode is not None and (mode.startswith("fail-once-") or mode.startswith("always-")):
            return self.status_only(int(mode.rsplit("-", 1)[1]), first, last, mode)
        if mode == "ignore-range":
            whole, first, last, n = True, 0, size - 1, size
        with open(name, "rb") as f:
            self.send_response(200 if whole else 206)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", lastmod)
            if not whole:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, size))
            self.send_header("Content-Length", str(n // 2 if mode == "short-cl" else n))
            self.end_headers()
            if mode == "stall":
                self.wfile.flush()
                self.record(first, last, 206, 0, mode)
                time.sleep(STALL)
                self.close_connection = True
                return
            if mode in ("short", "short-cl", "reset-once"):
                sent = self.send_body(f, first, n // 2)
                self.record(first, last, 206, sent, mode)
                if mode == "reset-once":
                    # SO_LINGER 0: the close sends a reset, not a FIN.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.rfile.close()
                    self.connection.close()
                if mode != "short-cl":
                    self.close_connection = True
                return
            sent = self.send_body(f, first, n)
            self.record(first, last, 200 if whole else 206, sent,
                        "ignore-range" if mode == "ignore-range" else "ok")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that went away (a stall, a reset) is expected here


def watchdog(parent):
    """Gone with the test that started it, even when that one was killed; 15 min at most."""
    for _ in range(15 * 60 * 4):
        if os.getppid() != parent:
            break
        time.sleep(0.25)
    os._exit(0)


threading.Thread(target=watchdog, args=(os.getppid(),), daemon=True).start()
srv = Server(("127.0.0.1", 0), Handler)
with open(PORTFILE + ".tmp", "w") as f:
    f.write("%d\n" % srv.server_address[1])
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
