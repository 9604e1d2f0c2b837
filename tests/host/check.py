#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""check-host: judge what tests/host/vm-host.py saw (RESULT.json SCRIPT.json).

Every step of the script must have been done; every command must have exited 0 (or as the
step's name says); then what the outputs must show, scenario by scenario. Prints TAP-like
lines and each scenario's time; exit status 1 when anything failed."""
import json
import re
import sys

res = json.load(open(sys.argv[1]))
script = json.load(open(sys.argv[2]))
failed = 0
done = {s["name"]: s for s in res["steps"]}


def ok(cond, msg):
    global failed
    print(("ok - " if cond else "not ok - ") + msg)
    failed += 0 if cond else 1
    return cond


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>78c]")


def out(name):
    return ANSI.sub("", done.get(name, {}).get("output", ""))


for s in script:
    n = s["name"]
    if not ok(n in done, "step done: " + n):
        continue
    if "run" in s:
        ok(done[n]["rc"] == 0, "%s: exit status %d" % (n, done[n]["rc"]))
if res["error"]:
    ok(False, "the VM run: " + res["error"])

# What each scenario must show (expected values written out, not derived).
o = out("1: assessment done")
ok('"action":"marked-good"' in o and '"bank":"A"' in o, "1: assess marked A good on its trial boot")
ok("Result=success" in o, "1: bootbank-assess.service succeeded")
o = out("1: status")
ok(re.search(r"bank A +good", o) is not None, "1: status: bank A good")
ok("bank A (primary" in o or re.search(r"booted.*A", o) is not None, "1: status names the booted bank A")
o = out("1: root is read-only, /etc writable")
ok("ROOT-RO" in o and "ETC-RW" in o, "1: / is read-only, /etc is writable")
ok("squashfs" in o and "overlay" in o, "1: / is the squashfs payload, /etc an overlay")
o = out("2: stage 2.0.0 --activate")
ok("/etc: bank A's layer carried forward into bank B's" in o,
   "2: stage carried A's /etc layer into B's at stage time")
ok("/etc conflict: /etc/bkhost-conflict: changed locally and by the new image" in o,
   "2: stage reports the conflict (a file changed on A and in 2.0.0)")
ok("/etc conflict: /etc/bkhost-local" not in o, "2: a file 2.0.0 did not change is no conflict")
ok(re.search(r"^[0-9a-f]{64}\s*$", o.strip().split("\n")[-1]) is not None,
   "2: B's layer records the new image's manifest digest")
o = out("2: assessment done")
ok('"action":"marked-good"' in o and '"bank":"B"' in o, "2: assess marked B good on its trial boot")
ok(o.strip().endswith("2.0.0"), "2: B runs 2.0.0")
o = out("2: status")
ok(re.search(r"bank A +good", o) is not None and re.search(r"bank B +good", o) is not None,
   "2: status: A good (keeps 1.0.0), B good")
ok("1.0.0" in o and "2.0.0" in o, "2: status: A holds 1.0.0, B 2.0.0")
o = out("4: version and status")
ok(o.startswith("1.0.0") or "\n1.0.0" in o[:20], "4: the rollback key booted 1.0.0")
ok("ActiveState=inactive" in o, "4: a rollback boot of a good bank is not assessed (no trial)")
ok(re.search(r"^  booted +bank A \(rollback; ", o, re.M) is not None,
   "4: status says the booted bank A came by the rollback key")
o = out("4: version after roll-forward")
ok(o.startswith("2.0.0") and "bootbank.bank=B" in o and "bootbank.reason=primary" in o,
   "4: after roll-forward B (2.0.0) boots, primary")
ok(out("3: booted under UEFI").strip() == "UEFI", "3: the second VM runs under UEFI (OVMF)")
for l in out("4: where the boot's time went").split("\n"):
    print("# " + l)
o = out("3: status")
ok("bootbank.bank=B" in o and "bootbank.reason=fallback" in o,
   "3: after the failed trial the loader boots B with reason fallback (kernel command line)")
ok("2.0.0" in o.split("\n")[1] if "\n" in o else False, "3: 2.0.0 runs again")
ok(re.search(r"bank A +bad", o) is not None, "3: status: A bad")
ok(re.search(r"last error .*assess: bank A \(trying, trial boot\): marked bad: health check '50-v3-broken' failed", o)
   is not None, "3: status names the failing check (last error)")
# (not "fallback" in o: o starts with /proc/cmdline, which says bootbank.reason=fallback)
ok(re.search(r"^  booted +bank B \(fallback; ", o, re.M) is not None,
   "3: status says the booted bank B came by fallback")
o = out("2: /etc carried forward")
ok(o.startswith("keep-me\nlocal\n"), "2: /etc changes made on A are carried forward to B, the local version of a conflict kept (%r)" % o[:30])
ok("/etc/bkhost-conflict: changed locally and by the new image" in o, "2: the conflict is an event")
ok("/etc/bkhost-local" not in o, "2: a file the image did not change is no conflict")
o = out("3: /etc layers")
ok(o.startswith("keep-me") and "A" in o and "B" in o, "3: /etc layers per bank, the change still there")

o = [l for l in out("5: the workload runs 2.0.0").split("\n") if not l.startswith("workload ")]
ok(o[0].strip() == "2.0.0", "5: before the live patch the workload sees 2.0.0 (%r)" % o[0])
pid = o[1].strip() if len(o) > 1 else "?"
o = out("5: the workload sees 2.0.1, same pid").split("\n")
ok(o[0].strip() == "2.0.1", "5: after livepatch apply the workload sees 2.0.1 (%r)" % o[0])
ok(len(o) > 1 and o[1].strip() == pid and pid.isdigit() and pid != "0",
   "5: same main pid (%s)" % pid)
o = out("5: after the reboot").split("\n")
ok(o[0].strip() == "2.0.1" and o[1].strip() == "2.0.1",
   "5: the patched bank A boots 2.0.1 and the workload sees 2.0.1 (%r)" % o[:2])
ok('"action":"marked-good"' in out("5: after the reboot"), "5: A's trial boot marked good")

# Scenario times (from the first step of a scenario to its last).
times = {}
for s in res["steps"]:
    k = s["name"].split(":")[0]
    a, b = times.get(k, (s["start"], s["end"]))
    times[k] = (min(a, s["start"]), max(b, s["end"]))
for k, (a, b) in times.items():
    print("# scenario %s: %.0f s (from %.0f s to %.0f s)" % (k, b - a, a, b))
print("# VM %.0f s in all, longest console silence %.0f s" % (res["seconds"], res["longest_silence"]))
sys.exit(1 if failed else 0)
