# SPDX-License-Identifier: LGPL-2.1-or-later
"""Unit tests of the bootbank.fleet modules' logic, against a fake bankctl that answers from
a table and logs its calls (no host, no ssh). Run: python3 -m unittest (PYTHONPATH=fleet/ansible)."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
COLL = os.path.join(os.path.dirname(HERE), "ansible_collections", "bootbank", "fleet")
FAKE = r"""#!/usr/bin/python3
import json, os, sys
d = os.environ["FAKE_DIR"]
args = [a for a in sys.argv[1:] if a != "--json"]
if args[:1] == ["--root"]:
    args = args[2:]
with open(os.path.join(d, "calls"), "a") as f:
    f.write(" ".join(args) + "\n")
table = json.load(open(os.path.join(d, "table.json")))
key = " ".join(args[:2]) if args[:1] in (["desired"], ["depot"], ["workload"]) else args[0]
ans = table.get(key, [0, "null"])
if isinstance(ans, dict):  # {"seq": [ANSWER, ...]}: one per call, the last one repeated
    n = sum(1 for _ in open(os.path.join(d, "calls")) if _.split()[:1] == [args[0]]) - 1
    ans = ans["seq"][min(n, len(ans["seq"]) - 1)]
rc, out = ans
sys.stdout.write(out if isinstance(out, str) else json.dumps(out))
sys.exit(rc)
"""


class ModuleCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="bkfleet-unit-")
        self.fake = os.path.join(self.dir, "bankctl")
        with open(self.fake, "w") as f:
            f.write(FAKE)
        os.chmod(self.fake, 0o755)

    def run_module(self, module, table, check=False, **params):
        with open(os.path.join(self.dir, "table.json"), "w") as f:
            json.dump(table, f)
        params.update(bankctl=self.fake, root="/sandbox")
        args = {"ANSIBLE_MODULE_ARGS": dict(params, _ansible_check_mode=check)}
        path = os.path.join(self.dir, "args.json")
        with open(path, "w") as f:
            json.dump(args, f)
        env = dict(os.environ, FAKE_DIR=self.dir,
                   PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(COLL))))
        p = subprocess.run([PY, os.path.join(COLL, "plugins", "modules", module + ".py"),
                            path], env=env, capture_output=True, text=True)
        res = json.loads(p.stdout)
        try:
            with open(os.path.join(self.dir, "calls")) as f:
                calls = f.read().splitlines()
        except FileNotFoundError:
            calls = []
        return res, calls


SCAN = lambda state, rc: [rc, {"state": state, "reason": "r", "exit_code": rc}]
PRE_OK = [0, {"checks": [{"name": "workloads", "path": "live", "result": "pass", "reason": "ok"}],
              "chosen": "live", "mode": "auto", "chosen_why": "live possible"}]
PRE_FAIL = [24, {"checks": [{"name": "workloads", "path": "live", "result": "fail",
                             "reason": "workload 'x' cannot be suspended"}],
                 "chosen": None, "mode": "enforce", "chosen_why": "live path impossible"}]
REM_LIVE = [0, "\n".join(json.dumps(l) for l in [
    {"event": "step", "step": "switch-over", "result": "ok"},
    {"event": "result", "ok": True, "exit_code": 0, "outcome": "compliant", "path": "live"}])]
REM_REBOOT = [21, "\n".join(json.dumps(l) for l in [
    {"event": "step", "step": "activate", "result": "ok"},
    {"event": "result", "ok": True, "exit_code": 21, "outcome": "reboot required", "path": "reboot"}])]


class Remediate(ModuleCase):
    def test_compliant_does_nothing(self):
        res, calls = self.run_module("bootbank_remediate", {"scan": SCAN("compliant", 0)})
        self.assertFalse(res["changed"])
        self.assertEqual(calls, ["scan"])

    def test_pending_reboot_reports_it_without_changing(self):
        res, calls = self.run_module("bootbank_remediate",
                                     {"scan": SCAN("compliant-pending-reboot", 21)})
        self.assertFalse(res["changed"])
        self.assertTrue(res["reboot_required"])
        self.assertEqual(calls, ["scan"])

    def test_check_mode_runs_only_the_precheck(self):
        res, calls = self.run_module("bootbank_remediate", {"scan": SCAN("non-compliant", 20),
                                                            "precheck": PRE_OK}, check=True)
        self.assertTrue(res["changed"])
        self.assertEqual(res["path"], "live")
        self.assertEqual(calls, ["scan", "precheck"])

    def test_precheck_failure_fails_with_the_failing_checks(self):
        res, calls = self.run_module("bootbank_remediate", {"scan": SCAN("non-compliant", 20),
                                                            "precheck": PRE_FAIL})
        self.assertTrue(res.get("failed"))
        self.assertIn("workloads: workload 'x' cannot be suspended", res["msg"])
        self.assertEqual(calls, ["scan", "precheck"])

    def test_live_path(self):
        res, calls = self.run_module("bootbank_remediate", {"scan": SCAN("non-compliant", 20),
                                                            "precheck": PRE_OK,
                                                            "remediate": REM_LIVE})
        self.assertTrue(res["changed"])
        self.assertFalse(res["reboot_required"])
        self.assertEqual(res["task_log"][0]["step"], "switch-over")
        self.assertEqual(calls, ["scan", "precheck", "remediate"])

    def test_reboot_path(self):
        res, calls = self.run_module("bootbank_remediate", {"scan": SCAN("non-compliant", 20),
                                                            "precheck": PRE_OK,
                                                            "remediate": REM_REBOOT,
                                                            "status": STATUS("A", "A=good B=trying",
                                                                             next_bank="B")})
        self.assertTrue(res["changed"])
        self.assertTrue(res["reboot_required"])
        self.assertEqual(res["path"], "reboot")
        self.assertEqual(res["next_bank"], "B")
        self.assertEqual(calls, ["scan", "precheck", "remediate", "status"])

    def test_pending_reboot_names_the_bank(self):
        scan = SCAN("compliant-pending-reboot", 21)
        scan[1]["next"] = "B"
        res, calls = self.run_module("bootbank_remediate", {"scan": scan})
        self.assertEqual(res["next_bank"], "B")
        self.assertEqual(calls, ["scan"])

    def test_incompatible_fails_before_the_precheck(self):
        res, calls = self.run_module("bootbank_remediate", {"scan": SCAN("incompatible", 22)})
        self.assertTrue(res.get("failed"))
        self.assertEqual(calls, ["scan"])


def STATUS(booted, banks, next_bank=None, reason=None):
    """bankctl status --json as it is: boot.booted is an object, each bank a state."""
    states = dict(b.split("=") for b in banks.split())
    return [0, {"boot": {"booted": {"bank": booted, "reason": "primary"},
                         "next_boot": {"bank": next_bank or booted},
                         "banks": {k: {"state": v, "bad_reason": reason if v == "bad" else None}
                                   for k, v in states.items()}},
                "assessment": {"action": "marked-bad", "reason": reason} if reason else None}]


class Assess(ModuleCase):
    def test_good_is_done(self):
        res, calls = self.run_module("bootbank_assess", {"status": STATUS("B", "A=good B=good")},
                                     bank="B", timeout=5)
        self.assertFalse(res.get("failed"), res)
        self.assertFalse(res["changed"])
        self.assertEqual((res["booted"], res["state"]), ("B", "good"))
        self.assertEqual(calls, ["status"])

    def test_marked_bad_and_no_fall_back_fails_with_the_reason(self):
        res, calls = self.run_module("bootbank_assess",
                                     {"status": STATUS("B", "A=good B=bad", reason="health check '50-app' failed")},
                                     bank="B", timeout=30, delay=0.1, fallback_timeout=1)
        self.assertTrue(res.get("failed"))
        self.assertIn("bank B was marked bad by the boot assessment: health check '50-app' failed; "
                      "the host did not reboot into the other bank within 1 s", res["msg"])
        # It kept polling through the 1 s fall-back window (every 0.1 s, but each poll runs a
        # fake bankctl process, which a loaded machine slows: only "more than once" is sure).
        self.assertGreaterEqual(len(calls), 2)
        self.assertLess(len(calls), 20)

    def test_marked_bad_waits_for_the_fall_back(self):
        # the host reboots into bank A while the module polls (here: the same process sees it)
        bad = STATUS("B", "A=good B=bad", reason="health check '50-app' failed")
        back = STATUS("A", "A=good B=bad", reason="health check '50-app' failed")
        res, calls = self.run_module("bootbank_assess", {"status": {"seq": [bad, bad, back]}},
                                     bank="B", timeout=30, delay=0.1)
        self.assertTrue(res.get("failed"))
        self.assertIn("booted bank A, not B (B is bad: health check '50-app' failed)", res["msg"])
        self.assertEqual(calls, ["status"] * 3)

    def test_fallen_back_to_the_other_bank_fails(self):
        res, calls = self.run_module("bootbank_assess",
                                     {"status": STATUS("A", "A=good B=bad", reason="health check '50-app' failed")},
                                     bank="B", timeout=30)
        self.assertTrue(res.get("failed"))
        self.assertIn("booted bank A, not B (B is bad: health check '50-app' failed)", res["msg"])
        self.assertEqual(calls, ["status"])

    def test_trying_waits_then_times_out(self):
        res, calls = self.run_module("bootbank_assess", {"status": STATUS("B", "A=good B=trying")},
                                     bank="B", timeout=1, delay=0.2)
        self.assertTrue(res.get("failed"))
        self.assertIn("bank B is trying, not good, after 1 s", res["msg"])
        self.assertGreaterEqual(len(calls), 2)  # polled again (a loaded machine fits few in 1 s)


class Desired(ModuleCase):
    CUR = [0, {"name": "acme-os", "version": "1.1", "live_patch_mode": "auto"}]

    def test_same_is_unchanged(self):
        res, calls = self.run_module("bootbank_desired", {"desired show": self.CUR},
                                     name="acme-os", version="1.1")
        self.assertFalse(res["changed"])
        self.assertEqual(calls, ["desired show"])

    def test_other_mode_changes(self):
        res, calls = self.run_module("bootbank_desired", {"desired show": self.CUR},
                                     name="acme-os", version="1.1", live_patch_mode="enforce")
        self.assertTrue(res["changed"])
        self.assertIn("desired set acme-os 1.1 --live-patch-mode enforce", calls)

    def test_check_mode_writes_nothing(self):
        res, calls = self.run_module("bootbank_desired", {"desired show": [0, "null"]},
                                     check=True, name="acme-os", version="1.2")
        self.assertTrue(res["changed"])
        self.assertEqual(calls, ["desired show"])

    # live_patch_mode unset: the host's own default ([remediation] live-patch-mode of its
    # system.conf) applies, so bankctl is not given the option and the mode is not compared.
    def test_unset_mode_is_not_passed(self):
        res, calls = self.run_module("bootbank_desired", {"desired show": self.CUR},
                                     name="acme-os", version="1.2")
        self.assertTrue(res["changed"])
        self.assertEqual(calls, ["desired show", "desired set acme-os 1.2", "desired show"])

    def test_unset_mode_keeps_the_recorded_one(self):
        cur = [0, dict(self.CUR[1], live_patch_mode="disable")]
        res, calls = self.run_module("bootbank_desired", {"desired show": cur},
                                     name="acme-os", version="1.1")
        self.assertFalse(res["changed"])
        self.assertEqual(res["desired"]["live_patch_mode"], "disable")
        self.assertEqual(calls, ["desired show"])

    def test_unset_mode_in_check_mode(self):
        res, calls = self.run_module("bootbank_desired", {"desired show": [0, "null"]},
                                     check=True, name="acme-os", version="1.2")
        self.assertTrue(res["changed"])
        self.assertIsNone(res["desired"]["live_patch_mode"])
        self.assertEqual(calls, ["desired show"])

    def test_given_mode_is_passed_and_compared(self):
        cur = [0, dict(self.CUR[1], live_patch_mode="disable")]
        res, calls = self.run_module("bootbank_desired", {"desired show": cur},
                                     name="acme-os", version="1.1", live_patch_mode="auto")
        self.assertTrue(res["changed"])
        self.assertIn("desired set acme-os 1.1 --live-patch-mode auto", calls)


class Depot(ModuleCase):
    LIST = [0, [{"name": "acme-os", "version": "1.1"}]]

    def test_present_is_unchanged(self):
        res, calls = self.run_module("bootbank_depot", {"depot list": self.LIST},
                                     name="acme-os", version="1.1", remote_src="/x.bbi")
        self.assertFalse(res["changed"])
        self.assertEqual(calls, ["depot list"])

    def test_missing_in_check_mode_imports_nothing(self):
        res, calls = self.run_module("bootbank_depot", {"depot list": self.LIST}, check=True,
                                     name="acme-os", version="1.2", remote_src="/x.bbi")
        self.assertTrue(res["changed"])
        self.assertEqual(calls, ["depot list"])


if __name__ == "__main__":
    unittest.main()
