#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A D-Bus client of bankd for tests/integ/dbus.sh and bench/bankd.sh (python3-dbus, python3-gi;
# /usr/bin/python3: Debian's bindings). Prints one JSON document per call on stdout.
#
#   bankd-client.py ADDR call METHOD [ARG...]      typed by the method's signature; "@PATH" for
#                                                  an `h` argument opens PATH read-only; JSON
#                                                  object for an a{sv} argument
#     -> {"ok": true, "value": ...} or {"ok": false, "error": NAME, "message": TEXT}, with "ms" the
#     call's round trip; exit 0/1
#   bankd-client.py ADDR calls METHOD [ARG...] -- METHOD [ARG...] ...: one right after the other
#     on one connection; a JSON list of the answers
#   bankd-client.py ADDR job METHOD [ARG...] [--kill-on|--term-on STEP_OR_PROGRESS:PID] [--timeout S]
#     subscribes to the job signals first, calls, then prints every signal of the job in order
#     ({"signal": "StepFinished", ...}, {"signal": "Progress", ...}, {"signal": "Completed", ...})
#     as one JSON list; --kill-on progress:PID sends SIGKILL to PID at the first progress with
#     bytes done, --kill-on step=NAME:PID when step NAME finished (PID may be child-of-PID: the
#     child process of PID at that moment; --term-on sends SIGTERM); exits when Completed came,
#     the job vanished (bankd killed) or after the timeout (default 120 s).
#   bankd-client.py ADDR get PROPERTY             a Manager1 property
#   bankd-client.py ADDR bench N                  N Status calls: {"p50_ms", "p99_ms", ...}
import json
import os
import signal
import sys
import time

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

NAME = "org.bootbank.Manager1"
PATH = "/org/bootbank/Manager1"
IFACE = "org.bootbank.Manager1"
JOB_IFACE = "org.bootbank.Job1"
SIGS = {
    "Status": "", "ExplainNextBoot": "", "Stage": "ha{sv}", "StageURL": "sa{sv}", "Activate": "su", "MarkGood": "s",
    "MarkBad": "ss", "Rollback": "", "RollForward": "", "Recover": "", "DepotImport": "ha{sv}",
    "DepotImportURL": "sa{sv}",
    "DepotList": "", "DepotRemove": "ss", "Events": "u", "LivePatchApply": "ha{sv}",
    "LivePatchRollback": "", "LivePatchStatus": "",
    "DesiredSet": "sss", "DesiredShow": "", "DesiredClear": "", "Scan": "", "Precheck": "s",
    "Remediate": "sa{sv}",
}


def plain(v):
    if isinstance(v, (dbus.Boolean,)):
        return bool(v)
    if isinstance(v, (dbus.String, dbus.ObjectPath)):
        return str(v)
    if isinstance(v, (dbus.Int32, dbus.UInt32, dbus.UInt64, dbus.Int64, dbus.Byte, dbus.Int16, dbus.UInt16)):
        return int(v)
    if isinstance(v, (dbus.Struct, dbus.Array, list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (dbus.Dictionary, dict)):
        return {str(k): plain(x) for k, x in v.items()}
    return v


def typed(method, args):
    sig = SIGS[method]
    out, keep = [], []
    codes = []
    i = 0
    while i < len(sig):
        if sig.startswith("a{sv}", i):
            codes.append("a{sv}")
            i += 5
        else:
            codes.append(sig[i])
            i += 1
    if len(codes) != len(args):
        sys.exit("%s takes %d arguments (%s)" % (method, len(codes), sig))
    for c, a in zip(codes, args):
        if c == "h":
            fd = os.open(a[1:] if a.startswith("@") else a, os.O_RDONLY | os.O_CLOEXEC)
            keep.append(fd)
            out.append(dbus.types.UnixFd(fd))
        elif c == "u":
            out.append(dbus.UInt32(int(a)))
        elif c == "s":
            out.append(dbus.String(a))
        else:
            d = json.loads(a) if a else {}
            out.append(dbus.Dictionary({k: (dbus.Boolean(v) if isinstance(v, bool) else dbus.String(v))
                                        for k, v in d.items()}, signature="sv"))
    return out, keep


def connect(addr, mainloop=False):
    if mainloop:
        dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    return dbus.bus.BusConnection(addr)


def call1(bus, method, args):
    obj = bus.get_object(NAME, PATH, introspect=False)
    a, keep = typed(method, args)
    t0 = time.perf_counter()
    try:
        v = obj.get_dbus_method(method, IFACE)(*a, timeout=300)
        return {"ok": True, "value": plain(v), "ms": (time.perf_counter() - t0) * 1000}
    except dbus.exceptions.DBusException as e:
        return {"ok": False, "error": e.get_dbus_name(), "message": e.get_dbus_message(),
                "ms": (time.perf_counter() - t0) * 1000}
    finally:
        for fd in keep:
            os.close(fd)


def call(addr, method, args):
    r = call1(connect(addr), method, args)
    print(json.dumps(r))
    return 0 if r["ok"] else 1


def calls(addr, rest):
    """Several calls, one right after the other, on one connection: M1 ARGS -- M2 ARGS ..."""
    bus = connect(addr)
    out, cur = [], []
    for a in rest + ["--"]:
        if a == "--":
            out.append(call1(bus, cur[0], cur[1:]))
            cur = []
        else:
            cur.append(a)
    print(json.dumps(out))
    return 0


def resolve(pid):
    """PID, or "child-of-PID": the (first) child process of PID."""
    if not str(pid).startswith("child-of-"):
        return int(pid)
    parent = pid[len("child-of-"):]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open("/proc/%s/stat" % p).read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == parent:
                return int(p)
    raise SystemExit("no child of %s" % parent)


def job(addr, method, args, kill_on, timeout):
    bus = connect(addr, mainloop=True)
    loop = GLib.MainLoop()
    seen = []
    state = {"path": None, "done": False, "killed": False, "early": []}

    def on_signal(*sargs, **kw):
        path, member, iface = kw["path"], kw["member"], kw["interface"]
        if state["path"] is None:
            state["early"].append((sargs, kw))
            return
        if path != state["path"]:
            return
        if iface == JOB_IFACE and member == "StepFinished":
            ev = {"signal": "StepFinished", "task": str(sargs[0]), "step": str(sargs[1]),
                  "result": str(sargs[2]), "start_usec": int(sargs[3]),
                  "duration_usec": int(sargs[4]), "message": str(sargs[5])}
            seen.append(ev)
            if kill_on and kill_on[0] == "step" and kill_on[1] == ev["step"] and not state["killed"]:
                os.kill(resolve(kill_on[2]), kill_on[3])
                state["killed"] = True
        elif iface == JOB_IFACE and member == "Completed":
            seen.append({"signal": "Completed", "exit_code": int(sargs[0]), "error": str(sargs[1]),
                         "message": str(sargs[2]), "result": str(sargs[3])})
            state["done"] = True
            loop.quit()
        elif iface == "org.freedesktop.DBus.Properties" and member == "PropertiesChanged":
            ch = sargs[1]
            if "Step" in ch:
                seen.append({"signal": "Step", "step": str(ch["Step"])})
            if "Progress" in ch:
                p = plain(ch["Progress"])
                seen.append({"signal": "Progress", "percent": p[0], "done": p[1], "total": p[2]})
                if kill_on and kill_on[0] == "progress" and p[1] > 0 and not state["killed"]:
                    os.kill(resolve(kill_on[2]), kill_on[3])
                    state["killed"] = True
                    seen.append({"signal": "Killed", "at_done": p[1], "total": p[2]})

    bus.add_signal_receiver(on_signal, sender_keyword="sender", path_keyword="path",
                            member_keyword="member", interface_keyword="interface",
                            dbus_interface=JOB_IFACE)
    bus.add_signal_receiver(on_signal, path_keyword="path", member_keyword="member",
                            interface_keyword="interface",
                            dbus_interface="org.freedesktop.DBus.Properties",
                            signal_name="PropertiesChanged")

    def on_name(old, new, name=None):
        if new == "" and state["path"]:
            loop.quit()  # bankd is gone
    bus.add_signal_receiver(lambda name, old, new: on_name(old, new), signal_name="NameOwnerChanged",
                            dbus_interface="org.freedesktop.DBus", arg0=NAME)

    obj = bus.get_object(NAME, PATH, introspect=False)
    a, keep = typed(method, args)
    try:
        p = obj.get_dbus_method(method, IFACE)(*a, timeout=60)
    except dbus.exceptions.DBusException as e:
        print(json.dumps({"ok": False, "error": e.get_dbus_name(), "message": e.get_dbus_message()}))
        return 1
    for fd in keep:
        os.close(fd)
    state["path"] = str(p)
    for sargs, kw in state["early"]:
        on_signal(*sargs, **kw)
    if not state["done"]:
        GLib.timeout_add(int(timeout * 1000), loop.quit)
        loop.run()
    print(json.dumps({"ok": True, "job": state["path"], "completed": state["done"], "signals": seen}))
    return 0


def bench(addr, n):
    bus = connect(addr)
    m = bus.get_object(NAME, PATH, introspect=False).get_dbus_method("Status", IFACE)
    m()
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        m()
        t.append((time.perf_counter() - t0) * 1000)
    t.sort()
    print(json.dumps({"n": n, "p50_ms": t[n // 2], "p99_ms": t[min(n - 1, (n * 99) // 100)],
                      "max_ms": t[-1]}))
    return 0


def main(argv):
    addr, verb = argv[1], argv[2]
    rest = argv[3:]
    if verb == "call":
        return call(addr, rest[0], rest[1:])
    if verb == "calls":
        return calls(addr, rest)
    if verb == "get":
        bus = connect(addr)
        v = bus.get_object(NAME, PATH, introspect=False).Get(IFACE, rest[0],
                                                             dbus_interface="org.freedesktop.DBus.Properties")
        print(json.dumps(plain(v)))
        return 0
    if verb == "bench":
        return bench(addr, int(rest[0]))
    if verb == "job":
        kill_on, timeout, args = None, 120.0, []
        i = 1
        while i < len(rest):
            if rest[i] in ("--kill-on", "--term-on"):
                what, pid = rest[i + 1].rsplit(":", 1)
                sig = signal.SIGKILL if rest[i] == "--kill-on" else signal.SIGTERM
                kill_on = ("progress", None, pid, sig) if what == "progress" else ("step", what[5:], pid, sig)
                i += 2
            elif rest[i] == "--timeout":
                timeout = float(rest[i + 1])
                i += 2
            else:
                args.append(rest[i])
                i += 1
        return job(addr, rest[0], args, kill_on, timeout)
    sys.exit("unknown verb " + verb)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
