#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A stand-in for qemu-system-x86_64 to test how tests/boot/vm.py waits (tests/integ/boot-vm.sh).

Put on PATH as qemu-system-x86_64, vm.py runs it with QEMU's arguments. It serves the QMP
socket of "-qmp unix:PATH,..." (greeting, then {"return": {}} to every command) and prints a
console on stdout as FAKE_QEMU says:
  steady INTERVAL SECONDS   a line every INTERVAL seconds for SECONDS, then a booted
                            system's report (BOOTBANK-BOOTED ... BOOTBANK-POWEROFF) and exit 0,
                            as a slow boot that keeps progressing;
  stall AFTER               lines for AFTER seconds (every 0.2 s), then nothing, never ending,
                            as a hung boot;
  forever INTERVAL          a line every INTERVAL seconds, never ending.
FAKE_QEMU_PIDFILE, when set, is where it writes its pid.
"""
import json
import os
import socket
import sys
import threading
import time


def serve_qmp(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run():
        while True:
            conn, _ = srv.accept()
            conn.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\n')
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        json.loads(line)
                        conn.sendall(b'{"return": {}}\n')
            conn.close()

    threading.Thread(target=run, daemon=True).start()


def say(text):
    sys.stdout.write(text + "\r\n")
    sys.stdout.flush()


def main():
    argv = sys.argv[1:]
    if os.environ.get("FAKE_QEMU_PIDFILE"):
        with open(os.environ["FAKE_QEMU_PIDFILE"], "w") as f:
            f.write("%d\n" % os.getpid())
    qmp = argv[argv.index("-qmp") + 1]
    serve_qmp(qmp.split(",")[0][len("unix:"):])
    mode = os.environ.get("FAKE_QEMU", "steady 0.5 2").split()
    start = time.monotonic()
    n = 0
    if mode[0] == "steady":
        interval, seconds = float(mode[1]), float(mode[2])
        while time.monotonic() - start < seconds:
            n += 1
            say("fake console line %d at %.1f s" % (n, time.monotonic() - start))
            time.sleep(interval)
        say("BOOTBANK-BOOTED bank=A reason=primary image=1.0.0 behaviour=good")
        say("BOOTBANK-MARK-GOOD rc=0")
        say("BOOTBANK-POWEROFF")
        return 0
    if mode[0] == "stall":
        while time.monotonic() - start < float(mode[1]):
            n += 1
            say("fake console line %d at %.1f s" % (n, time.monotonic() - start))
            time.sleep(0.2)
        say("fake console: the last line before the stall")
        while True:
            time.sleep(3600)
    if mode[0] == "forever":
        while True:
            n += 1
            say("fake console line %d at %.1f s" % (n, time.monotonic() - start))
            time.sleep(float(mode[1]))
    print("fake-qemu: unknown FAKE_QEMU '%s'" % " ".join(mode), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
