#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Boot the check-boot disk once in QEMU (TCG) and report what happened.

tests/boot/vm.py --firmware bios|uefi --disk DISK [--vars VARS [--code OVMF_CODE]] [--esp ESP] --log LOG
                 [--key none|r|shift-r|ctrl|ctrl-r] [--stall SECONDS] [--timeout SECONDS]

The serial console (firmware, GRUB, kernel, the initramfs of tests/boot/init.sh) is copied to
LOG as it arrives. The operator's key is typed through QMP, like a person at the keyboard:
  r, shift-r  QMP send-key once the GRUB menu shows its "Roll back to bank" entries (the
              countdown is running);
  ctrl        QMP input-send-event: Ctrl goes down when GRUB prints the plan ("bootbank: bank
              B (primary); hold Ctrl for bank A ...", on UEFI "...; Ctrl+R for bank A ...")
              and comes up when GRUB says "booting bank" (held through GRUB's Ctrl window);
  ctrl-r      the same, and R is pressed and released while Ctrl is down (Ctrl+R).
UEFI boots the disk's own ESP (EFI/BOOT/BOOTX64.EFI), or --esp, an image of its own, first.
The VM powers itself off (init.sh). It is killed when its console stalls: no output at all for
--stall seconds (default 180; a boot on a loaded machine is slow but keeps printing, a hung one
does not), or, progressing or not, after --timeout seconds (default 900, a hard cap).
tests/integ/boot-vm.sh checks this with tests/boot/fake-qemu.py as qemu-system-x86_64 on PATH.
The result is one JSON object on
stdout: what the initramfs printed (bank, reason, image version, the grubenv GRUB left, the
booted partition's version, the revision in service after rev restore, mark-good), the timings, and the errors seen. Exit status 0 when
the VM powered off by itself after reporting, 1 otherwise (the JSON says why).
"""
import argparse
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time

PLAN = re.compile(rb"bootbank: bank [AB] \([a-z]+\); (hold Ctrl|Ctrl\+R|r or Shift\+R)")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>78c]")


class Qmp:
    """A minimal QMP client: one command at a time, events ignored."""

    def __init__(self, path, deadline, proc):
        self.sock = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                self.sock = s
                break
            except OSError:
                s.close()
                time.sleep(0.05)
        if self.sock is None:
            raise RuntimeError("cannot connect to QEMU's QMP socket '%s'" % path)
        self.buf = b""
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError("QMP %s: %s" % (name, r["error"].get("desc")))

    def key(self, qcode, down):
        self.cmd("input-send-event", events=[
            {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}])

    def send_key(self, *qcodes):
        self.cmd("send-key", keys=[{"type": "qcode", "data": q} for q in qcodes], **{"hold-time": 100})


def last_line(raw):
    """The console's last non-empty line, escape sequences removed, for a message."""
    for line in reversed(ANSI.sub(b"", raw).replace(b"\r", b"\n").split(b"\n")):
        line = line.strip()
        if line:
            return repr(line[:120].decode("utf-8", "replace"))
    return "(none: the console printed nothing)"


def qemu_argv(a, qmp_path):
    argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", str(a.memory),
            "-smp", "1", "-nographic", "-monitor", "none", "-serial", "stdio", "-nic", "none",
            "-no-reboot", "-qmp", "unix:%s,server=on,wait=off" % qmp_path,
            "-drive", "file=%s,format=raw,if=none,id=disk" % a.disk,
            "-device", "virtio-blk-pci,drive=disk,bootindex=1"]
    if a.firmware == "uefi":
        argv += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=%s" % a.code,
                 "-drive", "if=pflash,format=raw,unit=1,file=%s" % a.vars]
    if a.esp:  # an ESP on a disk of its own (else the firmware finds the disk's own ESP)
        argv += ["-drive", "file=%s,format=raw,if=none,id=esp" % a.esp,
                 "-device", "virtio-blk-pci,drive=esp,bootindex=0"]
    return argv


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--firmware", choices=("bios", "uefi"), required=True)
    p.add_argument("--disk", required=True)
    p.add_argument("--esp")
    p.add_argument("--vars")
    p.add_argument("--code", default="/usr/share/OVMF/OVMF_CODE_4M.fd")
    p.add_argument("--log", required=True)
    p.add_argument("--key", choices=("none", "r", "shift-r", "ctrl", "ctrl-r"), default="none")
    p.add_argument("--stall", type=float, default=180,
                   help="give up after this many seconds without console output")
    p.add_argument("--timeout", type=float, default=900,
                   help="give up after this many seconds in all (a hard cap)")
    p.add_argument("--memory", type=int, default=512)
    a = p.parse_args()
    if a.firmware == "uefi" and not a.vars:
        p.error("uefi needs --vars")
    if a.stall <= 0 or a.timeout <= 0:
        p.error("--stall and --timeout must be positive")

    res = {"firmware": a.firmware, "key": a.key, "key_sent": False, "bank": None,
           "reason": None, "image": None, "behaviour": None, "grubenv": None,
           "bank_version": None, "revision": None, "revision_version": None,
           "mark_good_rc": None, "failed_on_purpose": False,
           "powered_off": False, "timed_out": False, "stalled": False, "errors": [],
           "grub_messages": [], "seconds": None, "longest_silence": None,
           "seconds_to_grub": None, "seconds_to_kernel": None, "seconds_to_init": None,
           "qemu_exit": None}
    tmp = tempfile.mkdtemp(prefix="bk-vm-")
    qmp_path = os.path.join(tmp, "qmp.sock")
    start = time.monotonic()
    deadline = start + a.timeout  # the hard cap
    last_output = start  # the console's last output: a stall is counted from here
    longest_silence = 0.0
    log = open(a.log, "wb")
    proc = subprocess.Popen(qemu_argv(a, qmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    qmp = None
    raw = b""
    text = b""
    ctrl_down = False
    seen = set()

    def once(tag):
        if tag in seen:
            return False
        seen.add(tag)
        return True

    try:
        qmp = Qmp(qmp_path, min(deadline, start + a.stall), proc)
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        while True:
            now = time.monotonic()
            longest_silence = max(longest_silence, now - last_output)
            if now - last_output >= a.stall:
                res["timed_out"] = res["stalled"] = True
                res["errors"].append(
                    "the console stalled: no output for %.0f s (--stall, BK_BOOT_STALL_TIMEOUT), "
                    "%.0f s into the boot; its last line: %s"
                    % (now - last_output, now - start, last_line(raw)))
                break
            if now >= deadline:
                res["timed_out"] = True
                res["errors"].append(
                    "still running after %.0f s, the hard cap (--timeout, BK_BOOT_TIMEOUT), "
                    "although the console printed %.1f s ago; its last line: %s"
                    % (now - start, now - last_output, last_line(raw)))
                break
            wait = min(0.2, deadline - now, last_output + a.stall - now)
            r, _, _ = select.select([fd], [], [], max(wait, 0))
            if not r:
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            now = time.monotonic()
            longest_silence = max(longest_silence, now - last_output)
            last_output = now
            log.write(chunk)
            log.flush()
            raw += chunk
            # Matched on the whole console so far without escape sequences (GRUB's menu
            # positions the cursor between words); it is small, so this stays cheap.
            text = ANSI.sub(b"", raw).replace(b"\r", b"\n")
            t = time.monotonic() - start

            if b"Welcome to GRUB" in text and once("grub"):
                res["seconds_to_grub"] = round(t, 2)
            # The plan line: "bootbank: bank B (primary); hold Ctrl for bank A ..." (BIOS),
            # "...; Ctrl+R for bank A ..." (UEFI), or "...; r or Shift+R at the menu for bank
            # A" (the Ctrl window turned off).
            if PLAN.search(text) and once("ctrl-window"):
                if a.key in ("ctrl", "ctrl-r"):
                    qmp.key("ctrl", True)
                    ctrl_down = True
                    res["key_sent"] = True
                if a.key == "ctrl-r":
                    qmp.key("r", True)
                    qmp.key("r", False)
            if a.key in ("r", "shift-r") and b"Roll back to bank" in text and once("menu"):
                if a.key == "r":
                    qmp.send_key("r")
                else:
                    qmp.send_key("shift", "r")
                res["key_sent"] = True
            if b"bootbank: booting bank" in text and once("booting"):
                res["seconds_to_kernel"] = round(t, 2)
                if ctrl_down:
                    qmp.key("ctrl", False)
                    ctrl_down = False
            if b"BOOTBANK-BOOTED" in text and once("init"):
                res["seconds_to_init"] = round(t, 2)
            if b"BOOTBANK-POWEROFF" in text and once("poweroff"):
                res["powered_off"] = True
        # The guest powered off: QEMU exits by itself (when we gave up, it is killed below).
        if not res["timed_out"]:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    except (RuntimeError, OSError) as e:
        res["errors"].append(str(e))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        res["qemu_exit"] = proc.returncode
        # Whatever QEMU wrote last (its own error message, when it failed to start).
        os.set_blocking(proc.stdout.fileno(), True)
        rest = proc.stdout.read()
        if rest:
            log.write(rest)
            text = ANSI.sub(b"", raw + rest).replace(b"\r", b"\n")
        if proc.returncode and not res["powered_off"] and not res["timed_out"]:
            res["errors"].append("QEMU exited with status %d" % proc.returncode)
        res["seconds"] = round(time.monotonic() - start, 2)
        res["longest_silence"] = round(longest_silence, 2)
        log.close()
        try:
            os.unlink(qmp_path)
        except OSError:
            pass
        os.rmdir(tmp)

    for line in text.decode("utf-8", "replace").split("\n"):
        line = line.strip()
        m = re.match(r"BOOTBANK-BOOTED bank=(\S+) reason=(\S+) image=(\S+) behaviour=(\S+)", line)
        if m:
            res["bank"], res["reason"], res["image"], res["behaviour"] = m.groups()
        m = re.match(r"BOOTBANK-GRUBENV (.*)$", line)
        if m:
            res["grubenv"] = m.group(1)
        m = re.match(r"BOOTBANK-BANK bank=\S+ version=(\S+)", line)
        if m:
            res["bank_version"] = m.group(1)
        m = re.match(r"BOOTBANK-REVISION id=(\S+) version=(\S+)", line)
        if m:
            res["revision"], res["revision_version"] = m.groups()
        m = re.match(r"BOOTBANK-MARK-GOOD rc=(\d+)", line)
        if m:
            res["mark_good_rc"] = int(m.group(1))
        if line.startswith("BOOTBANK-FAIL"):
            res["failed_on_purpose"] = True
        m = re.match(r"BOOTBANK-ERROR (.*)$", line)
        if m:
            res["errors"].append(m.group(1))
        # GRUB's own errors, and what the bootbank scripts said (bootbank-menu.cfg and
        # bootbank-select.cfg print "bootbank: ..."); anything but the plan is a problem.
        if line.startswith("error:"):
            res["errors"].append("GRUB: " + line)
        m = re.search(r"(bootbank: .*)$", line)
        if m:
            msg = m.group(1).strip()
            res["grub_messages"].append(msg)
            if not re.match(r"bootbank: (booting bank [AB] \(|bank [AB] \([a-z]+\); (hold Ctrl|Ctrl\+R|r or Shift\+R))", msg):
                res["errors"].append("GRUB: " + msg)
        if "Kernel panic" in line:
            res["errors"].append(line)
    if a.key != "none" and not res["key_sent"]:
        res["errors"].append("the prompt for the %s key never appeared" % a.key)
    print(json.dumps(res))
    return 0 if res["powered_off"] and res["bank"] and not res["timed_out"] else 1


if __name__ == "__main__":
    sys.exit(main())
