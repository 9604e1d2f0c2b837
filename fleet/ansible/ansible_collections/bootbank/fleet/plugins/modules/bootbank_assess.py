#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: LGPL-2.1-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: bootbank_assess
short_description: Wait until the booted bank of a bootbank host is assessed good
description:
  - Polls C(bankctl status --json) until the booted bank's boot state is C(good) (the boot
    assessment ran C(mark-good)), or fails after C(timeout) seconds while it is still on
    trial.
  - Fails when the booted bank is not C(bank) (the host fell back to the other bank), with
    the bad bank's reason.
  - When the booted bank was marked C(bad) (the assessment failed), a host whose other bank
    can boot reboots into it at once (C(bankctl assess)); the module keeps polling through
    that reboot, so that the playbook sees the host go down, waits for it and asks again (the
    fall-back is then seen). It fails with the bad bank's reason when the host is still up
    on the bad bank after C(fallback_timeout) seconds (no other bank could boot).
  - Changes nothing; runs the same in check mode.
version_added: "0.1.0"
author: bootbank developers (!UNKNOWN)
options:
  bank:
    description:
      - The bank the host must have booted (C(A) or C(B)); the one a reboot-path remediation
        activated (C(next_bank) of M(bootbank.fleet.bootbank_remediate)). Any booted bank
        when omitted.
    type: str
    choices: [A, B]
  timeout:
    description: Seconds to wait.
    type: int
    default: 300
  delay:
    description: Seconds between polls.
    type: float
    default: 2
  fallback_timeout:
    description:
      - Seconds to wait, once the booted bank is C(bad), for the host to reboot into the other
        bank before failing with the bad bank's reason (within C(timeout)).
    type: int
    default: 60
extends_documentation_fragment:
  - bootbank.fleet.bankctl
"""

EXAMPLES = r"""
- name: Wait for the boot assessment of the bank the remediation activated
  bootbank.fleet.bootbank_assess:
    bank: "{{ remediation.next_bank }}"
    timeout: 600
"""

RETURN = r"""
booted:
  description: The booted bank.
  returned: always
  type: str
state:
  description: Its boot state at the end (C(good), C(trying), C(bad)...).
  returned: always
  type: str
bad_reason:
  description: Why the expected (or booted) bank is bad, when it is.
  returned: always
  type: str
waited:
  description: Seconds waited.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bootbank.fleet.plugins.module_utils.bankctl import (
    COMMON_ARGS, run_json)


def booted_bank(boot):
    """The booted bank of status --json's "boot" object ("booted": {"bank": ...})."""
    booted = boot.get("booted")
    if isinstance(booted, dict):
        return booted.get("bank")
    return booted


def main():
    spec = dict(COMMON_ARGS)
    spec.update(bank=dict(type="str", choices=["A", "B"]),
                timeout=dict(type="int", default=300), delay=dict(type="float", default=2),
                fallback_timeout=dict(type="int", default=60))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    want = module.params["bank"]
    start = time.time()
    bad_since = None
    while True:
        st = run_json(module, ["status"])[1]
        boot = (st or {}).get("boot") or {}
        banks = boot.get("banks") or {}
        booted = booted_bank(boot)
        state = (banks.get(booted) or {}).get("state") if booted else None
        waited = time.time() - start
        res = dict(changed=False, booted=booted, state=state, waited=waited, bad_reason=None)
        if want and booted and booted != want:
            other = banks.get(want) or {}
            res["bad_reason"] = other.get("bad_reason")
            why = other.get("state") or "unknown"
            if other.get("bad_reason"):
                why += ": " + other["bad_reason"]
            module.fail_json(msg="booted bank %s, not %s (%s is %s): the host fell back"
                             % (booted, want, want, why), **res)
        if state == "good":
            module.exit_json(**res)
        if state == "bad":
            # The host reboots into the other bank now, when it can: this process ends with
            # it; the playbook waits for the host and asks again.
            bad_since = time.time() if bad_since is None else bad_since
            if (time.time() - bad_since >= module.params["fallback_timeout"]
                    or waited >= module.params["timeout"]):
                res["bad_reason"] = (banks.get(booted) or {}).get("bad_reason")
                module.fail_json(msg="bank %s was marked bad by the boot assessment: %s; the "
                                 "host did not reboot into the other bank within %d s"
                                 % (booted, res["bad_reason"] or "no reason recorded",
                                    time.time() - bad_since), **res)
        elif waited >= module.params["timeout"]:
            module.fail_json(msg="bank %s is %s, not good, after %d s" % (booted, state, waited),
                             **res)
        time.sleep(module.params["delay"])


if __name__ == "__main__":
    main()
