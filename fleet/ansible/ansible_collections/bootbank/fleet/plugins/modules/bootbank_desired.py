#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: LGPL-2.1-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: bootbank_desired
short_description: Set the desired image and live-patch mode of a bootbank host
description:
  - Makes an image of the host's depot its desired image (C(bankctl desired set)), or forgets
    it (C(state=absent), C(bankctl desired clear)).
  - Idempotent; reports C(changed) only when the desired image or mode differs (the mode only
    when I(live_patch_mode) is given). In check mode it compares and reports, and writes
    nothing.
version_added: "0.1.0"
author: bootbank developers (!UNKNOWN)
options:
  name:
    description: Image name (the bundle's C(name)). Required with C(state=present).
    type: str
  version:
    description: Image version. Required with C(state=present).
    type: str
  live_patch_mode:
    description:
      - How remediation may use the live path.
      - Unset (the default), the mode is not managed and not passed to bankctl - a new desired
        image gets the host's own default, C([remediation] live-patch-mode) of its
        C(system.conf) (else C(auto)), and an unchanged one keeps the mode it was set with.
    type: str
    choices: [disable, auto, enforce]
  state:
    description: Whether a desired image is set.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - bootbank.fleet.bankctl
"""

EXAMPLES = r"""
- name: Desire acme-os 1.1, live-patched or nothing
  bootbank.fleet.bootbank_desired:
    name: acme-os
    version: "1.1"
    live_patch_mode: enforce

- name: Desire acme-os 1.2, in each host's own live-patch mode (its system.conf)
  bootbank.fleet.bootbank_desired:
    name: acme-os
    version: "1.2"
"""

RETURN = r"""
desired:
  description:
    - The desired image after the task (null when none).
    - In check mode, what would be set; its C(live_patch_mode) is null when the option is
      unset (the host's default would apply).
  returned: always
  type: dict
  sample: {"name": "acme-os", "version": "1.1", "live_patch_mode": "enforce"}
previous:
  description: The desired image before the task.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bootbank.fleet.plugins.module_utils.bankctl import (
    COMMON_ARGS, run, run_json)


def main():
    spec = dict(COMMON_ARGS)
    spec.update(
        name=dict(type="str"),
        version=dict(type="str"),
        live_patch_mode=dict(type="str", choices=["disable", "auto", "enforce"]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_if=[("state", "present", ("name", "version"))])
    p = module.params
    before = run_json(module, ["desired", "show"])[1]
    if p["state"] == "absent":
        if before is None:
            module.exit_json(changed=False, desired=None, previous=None)
        if not module.check_mode:
            run(module, ["desired", "clear"])
        module.exit_json(changed=True, desired=None, previous=before)
    # Unset, the mode is the host's: not compared, not passed (bankctl takes system.conf's).
    want = dict(name=p["name"], version=p["version"])
    if p["live_patch_mode"] is not None:
        want["live_patch_mode"] = p["live_patch_mode"]
    if before and all(before.get(k) == v for k, v in want.items()):
        module.exit_json(changed=False, desired=before, previous=before)
    if module.check_mode:
        module.exit_json(changed=True, desired=dict(want, live_patch_mode=p["live_patch_mode"]),
                         previous=before)
    mode = ["--live-patch-mode", p["live_patch_mode"]] if p["live_patch_mode"] is not None else []
    run(module, ["desired", "set", p["name"], p["version"]] + mode)
    after = run_json(module, ["desired", "show"])[1]
    module.exit_json(changed=True, desired=after, previous=before)


if __name__ == "__main__":
    main()
