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
    assessment ran C(mark-good)), or fails after C(timeout) seconds.
  - Changes nothing; runs the same in check mode.
version_added: "0.1.0"
author: bootbank developers (!UNKNOWN)
options:
  timeout:
    description: Seconds to wait.
    type: int
    default: 300
  delay:
    description: Seconds between polls.
    type: float
    default: 2
  root:
    description: Sandbox root passed to bankctl as C(--root) (for tests).
    type: str
  bankctl:
    description: Path of bankctl on the managed host.
    type: str
    default: bankctl
"""

EXAMPLES = r"""
- name: Wait for the boot assessment
  bootbank.fleet.bootbank_assess:
    timeout: 600
"""

RETURN = r"""
booted:
  description: The booted bank.
  returned: always
  type: str
state:
  description: Its boot state at the end.
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


def main():
    spec = dict(COMMON_ARGS)
    spec.update(timeout=dict(type="int", default=300), delay=dict(type="float", default=2))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    start = time.time()
    while True:
        st = run_json(module, ["status"])[1]
        boot = (st or {}).get("boot") or {}
        booted = boot.get("booted")
        state = ((boot.get("banks") or {}).get(booted) or {}).get("state") if booted else None
        waited = time.time() - start
        if state == "good":
            module.exit_json(changed=False, booted=booted, state=state, waited=waited)
        if waited >= module.params["timeout"]:
            module.fail_json(msg="bank %s is %s, not good, after %d s" % (booted, state, waited),
                             booted=booted, state=state, waited=waited)
        time.sleep(module.params["delay"])


if __name__ == "__main__":
    main()
