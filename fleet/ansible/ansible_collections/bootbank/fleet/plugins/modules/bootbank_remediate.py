#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: LGPL-2.1-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: bootbank_remediate
short_description: Pre-check, then remediate a bootbank host to its desired image
description:
  - Scans the host (C(bankctl scan --json)); a compliant host is left alone (C(changed=false)),
    a host whose remediation only waits for a reboot reports C(reboot_required) without
    changing anything.
  - Otherwise runs the remediation pre-check (C(bankctl precheck --json)) and fails with the
    failing checks when the mode's path is impossible; then C(bankctl remediate --json), whose
    JSON Lines are returned as the task log.
  - In check mode only the scan and the pre-check run (they change nothing); C(changed) says
    whether a remediation would be done.
version_added: "0.1.0"
author: bootbank developers (!UNKNOWN)
options:
  live_patch_mode:
    description: Override the desired state's live-patch mode for this run.
    type: str
    choices: [disable, auto, enforce]
extends_documentation_fragment:
  - bootbank.fleet.bankctl
"""

EXAMPLES = r"""
- name: Remediate
  bootbank.fleet.bootbank_remediate:
  register: remediation

- name: Reboot when the reboot path was taken
  ansible.builtin.reboot:
  when: remediation.reboot_required

- name: Wait until the new bank is assessed good
  bootbank.fleet.bootbank_assess:
    bank: "{{ remediation.next_bank }}"
  when: remediation.reboot_required
"""

RETURN = r"""
path:
  description: The path taken or that would be taken (live, reboot), null when none.
  returned: always
  type: str
reboot_required:
  description: The host must reboot into the activated bank to be compliant.
  returned: always
  type: bool
next_bank:
  description: The bank the next boot takes (the one the reboot path activated), for M(bootbank.fleet.bootbank_assess)'s C(bank).
  returned: when reboot_required
  type: str
outcome:
  description: The remediation's outcome (e.g. compliant, reboot required), or the scan state when nothing ran.
  returned: always
  type: str
scan_before:
  description: The scan document before the task.
  returned: always
  type: dict
precheck:
  description: The pre-check document (null when the host was compliant or pending reboot).
  returned: always
  type: dict
failed_checks:
  description: "The failing checks, as C(name: reason)."
  returned: always
  type: list
task_log:
  description: "The remediation's steps (the JSON Lines of C(bankctl remediate --json)): dicts with step, result, time, message."
  returned: when remediate ran
  type: list
result:
  description: The remediation's result document (the same as bankd's).
  returned: when remediate ran
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bootbank.fleet.plugins.module_utils.bankctl import (
    COMMON_ARGS, failing_checks, run_json, run_json_lines)


def next_bank(module):
    """The bank the next boot takes (status --json: boot.next_boot.bank)."""
    st = run_json(module, ["status"])[1]
    return (((st or {}).get("boot") or {}).get("next_boot") or {}).get("bank")


def main():
    spec = dict(COMMON_ARGS)
    spec.update(live_patch_mode=dict(type="str", choices=["disable", "auto", "enforce"]))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    mode = ["--live-patch-mode", module.params["live_patch_mode"]] \
        if module.params["live_patch_mode"] else []
    res = dict(changed=False, path=None, reboot_required=False, precheck=None, failed_checks=[])
    scan = run_json(module, ["scan"], ok_rcs=(0, 20, 21, 22, 23))[1]
    res["scan_before"] = scan
    state = scan.get("state")
    res["outcome"] = state
    if state == "compliant":
        module.exit_json(**res)
    if state == "compliant-pending-reboot":
        res.update(path="reboot", reboot_required=True, next_bank=scan.get("next"))
        module.exit_json(**res)
    if state in ("incompatible", "unknown"):
        module.fail_json(msg="%s: %s" % (state, scan.get("reason")), **res)
    rc, pre = run_json(module, ["precheck"] + mode, ok_rcs=(0, 24))
    res["precheck"] = pre
    res["path"] = pre.get("chosen")
    res["failed_checks"] = failing_checks(pre, pre.get("chosen"))
    if rc == 24:
        res["failed_checks"] = failing_checks(pre)
        why = pre.get("chosen_why") or "no possible path"
        module.fail_json(msg="pre-check failed: %s (failing: %s)"
                         % (why, "; ".join(res["failed_checks"]) or "none"), **res)
    if module.check_mode:
        res.update(changed=True, reboot_required=pre.get("chosen") == "reboot",
                   outcome="would remediate (%s path)" % pre.get("chosen"))
        module.exit_json(**res)
    rc, lines, err = run_json_lines(module, ["remediate"] + mode)
    result = next((l for l in reversed(lines) if l.get("event") == "result"), None)
    res["task_log"] = [l for l in lines if l.get("event") in ("step", "detail")]
    res["result"] = result
    res["changed"] = bool(result and any(l.get("event") == "step" for l in lines))
    if result:
        res["outcome"] = result.get("outcome")
        res["path"] = result.get("path") or res["path"]
    if rc == 21:
        res.update(reboot_required=True, next_bank=next_bank(module))
        module.exit_json(**res)
    if rc != 0:
        msg = (result or {}).get("error") or err.strip() or "exit %d" % rc
        module.fail_json(msg="remediate failed (exit %d): %s" % (rc, msg), rc=rc, **res)
    module.exit_json(**res)


if __name__ == "__main__":
    main()
