#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Drive one QEMU (TCG) VM through its serial console, across its own reboots (check-host).

tests/host/vm-host.py [--firmware bios|uefi --vars VARS [--code OVMF_CODE]] --disk DISK --log LOG
                      --script SCRIPT.json [--stall S] [--timeout S]

SCRIPT is a JSON list of steps, done in order; each may be named ("name"):
  {"expect": REGEX}             wait until the console (escape sequences removed) shows REGEX
                                after what earlier steps consumed; "groups" of the match kept
  {"key": "r", "expect": REGEX} when REGEX shows, type the key through QMP (GRUB's menu)
  {"run": COMMAND}              type COMMAND at the shell (the serial getty logs root in),
                                followed by a marker echoing its exit status; wait for the
                                marker; the output between is kept ("output", "rc")
  {"send": TEXT}                type TEXT (a reboot: "systemctl reboot\\n")
  {"wait_exit": true}           wait for QEMU to end (a poweroff)
The VM is given up when its console stalls (no output for --stall seconds: a slow boot on a
loaded machine keeps printing, a hung one does not) or at --timeout in all (a hard cap). The
result is one JSON object on stdout: each step's time, match, output and exit status, the
error that stopped the run if any, and the longest silence. Exit status 0 when every step
was done.
"""
import argparse
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time

# The QMP client and the escape-sequence pattern of check-boot's driver (one copy).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "boot"))
from vm import ANSI, Qmp  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--firmware", choices=("bios", "uefi"), default="bios")
    p.add_argument("--vars", help="OVMF's variable store (a copy of it), for uefi")
    p.add_argument("--code", default="/usr/share/OVMF/OVMF_CODE_4M.fd")
    p.add_argument("--disk", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--stall", type=float, default=600)
    p.add_argument("--timeout", type=float, default=7200)
    p.add_argument("--memory", type=int, default=1024)
    a = p.parse_args()
    if a.firmware == "uefi" and not a.vars:
        p.error("uefi needs --vars")
    steps = json.load(open(a.script))

    tmp = tempfile.mkdtemp(prefix="bkhost-vm-")
    qmp_path = os.path.join(tmp, "qmp.sock")
    argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", str(a.memory),
            "-smp", "1", "-nographic", "-monitor", "none", "-serial", "stdio", "-nic", "none",
            "-qmp", "unix:%s,server=on,wait=off" % qmp_path,
            "-drive", "file=%s,format=raw,if=none,id=disk" % a.disk,
            "-device", "virtio-blk-pci,drive=disk,bootindex=1"]
    if a.firmware == "uefi":
        argv += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=%s" % a.code,
                 "-drive", "if=pflash,format=raw,unit=1,file=%s" % a.vars]
    log = open(a.log, "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    os.set_blocking(proc.stdout.fileno(), False)
    qmp = None
    start = time.monotonic()
    last_output = start
    longest = 0.0
    text = b""  # the whole console, cleaned
    pos = 0  # what earlier steps consumed
    res = {"steps": [], "error": None, "stalled": False, "timed_out": False,
           "longest_silence": None, "seconds": None}

    def pump(wait):
        """Read what the console has (up to wait seconds); False when QEMU ended."""
        nonlocal text, last_output, longest
        r, _, _ = select.select([proc.stdout], [], [], wait)
        if not r:
            return proc.poll() is None
        try:
            chunk = proc.stdout.read()
        except BlockingIOError:
            return True
        if not chunk:
            return False
        now = time.monotonic()
        longest = max(longest, now - last_output)
        last_output = now
        log.write(chunk)
        log.flush()
        text += ANSI.sub(b"", chunk).replace(b"\r", b"")
        return True

    def wait_for(regex):
        """Wait for regex after pos; returns the match or raises."""
        nonlocal pos
        rx = re.compile(regex.encode() if isinstance(regex, str) else regex)
        while True:
            m = rx.search(text, pos)
            if m:
                pos = m.end()
                return m
            now = time.monotonic()
            if now - last_output > a.stall:
                res["stalled"] = True
                raise RuntimeError("console stalled for %d s waiting for %r; last output: %r"
                                   % (a.stall, regex, text[-200:].decode("utf-8", "replace")))
            if now - start > a.timeout:
                res["timed_out"] = True
                raise RuntimeError("hard cap of %d s reached waiting for %r" % (a.timeout, regex))
            if not pump(1.0):
                raise RuntimeError("QEMU ended while waiting for %r" % regex)

    def type_text(s):
        proc.stdin.write(s.encode())
        proc.stdin.flush()

    try:
        qmp = Qmp(qmp_path, time.monotonic() + 30, proc)
        for i, st in enumerate(steps):
            rec = {"name": st.get("name", "step %d" % i), "start": round(time.monotonic() - start, 1)}
            if "run" in st:
                marker = "BKHOST-RC-%d" % i
                # The marker is built by the shell, so the echoed command line never matches.
                type_text("%s; echo BKHOST-RC-%d=\"$?\"=END\n" % (st["run"], i))
                from_ = pos
                m = wait_for(r"%s=(\d+)=END" % marker)
                out = text[from_:m.start()]
                # minus the shell's echo of the command line (up to its marker, as typed)
                echo = out.rfind(('%s="$?"=END' % marker).encode())
                if echo >= 0:
                    out = out[echo:]
                    out = out.split(b"\n", 1)[1] if b"\n" in out else b""
                rec["rc"] = int(m.group(1))
                rec["output"] = out.decode("utf-8", "replace")
            elif "key" in st:
                wait_for(st["expect"])
                qmp.cmd("send-key", keys=[{"type": "qcode", "data": st["key"]}],
                        **{"hold-time": 100})
            elif "expect" in st:
                m = wait_for(st["expect"])
                rec["match"] = m.group(0).decode("utf-8", "replace")
                rec["groups"] = [g.decode("utf-8", "replace") if g else None for g in m.groups()]
            elif "send" in st:
                type_text(st["send"])
            elif st.get("wait_exit"):
                while pump(1.0):
                    if time.monotonic() - last_output > a.stall:
                        res["stalled"] = True
                        raise RuntimeError("console stalled waiting for the VM to power off")
            rec["end"] = round(time.monotonic() - start, 1)
            res["steps"].append(rec)
            print("[%7.1f s] %s%s" % (rec["end"], rec["name"],
                                      " rc=%d" % rec["rc"] if "rc" in rec else ""),
                  file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001 - the JSON carries it
        res["error"] = str(e)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        res["seconds"] = round(time.monotonic() - start, 1)
        res["longest_silence"] = round(longest, 1)
        log.close()
    print(json.dumps(res))
    return 0 if res["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
