#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: LGPL-2.1-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: bootbank_depot
short_description: Make sure a bundle is in a bootbank host's depot
description:
  - Looks the image up in the depot (C(bankctl depot list --json)); when it is missing, copies
    the bundle C(src) from the controller (the action plugin does the transfer) and imports it
    (C(bankctl depot import), which verifies its signature and every payload).
  - Idempotent; nothing is copied when the depot holds the image. In check mode nothing is
    copied nor imported; C(changed) says whether it would be.
version_added: "0.1.0"
author: bootbank developers (!UNKNOWN)
options:
  name:
    description: Image name.
    type: str
    required: true
  version:
    description: Image version.
    type: str
    required: true
  src:
    description: The bundle (C(*.bbi)) on the controller, copied only when the depot lacks the image.
    type: path
  remote_src:
    description: The bundle on the managed host instead (no copy).
    type: path
  query:
    description: Only say whether the image is present (used by the action plugin).
    type: bool
    default: false
extends_documentation_fragment:
  - bootbank.fleet.bankctl
"""

EXAMPLES = r"""
- name: The bundle of acme-os 1.1 in the depot
  bootbank.fleet.bootbank_depot:
    name: acme-os
    version: "1.1"
    src: bundles/acme-os_1.1.bbi
"""

RETURN = r"""
present:
  description: The depot holds the image after the task (or would, in check mode).
  returned: always
  type: bool
image:
  description: The depot entry of the image.
  returned: when present
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bootbank.fleet.plugins.module_utils.bankctl import (
    COMMON_ARGS, run, run_json)


def lookup(module):
    depot = run_json(module, ["depot", "list"])[1]
    for e in depot or []:
        if e.get("name") == module.params["name"] and e.get("version") == module.params["version"]:
            return e
    return None


def main():
    spec = dict(COMMON_ARGS)
    spec.update(name=dict(type="str", required=True), version=dict(type="str", required=True),
                src=dict(type="path"), remote_src=dict(type="path"),
                query=dict(type="bool", default=False))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    entry = lookup(module)
    if entry is not None:
        module.exit_json(changed=False, present=True, image=entry)
    if module.params["query"]:
        module.exit_json(changed=False, present=False)
    if module.check_mode:
        module.exit_json(changed=True, present=True)
    if not module.params["remote_src"]:
        module.fail_json(msg="image %s %s is not in the depot and no bundle was given"
                         % (module.params["name"], module.params["version"]), present=False)
    run(module, ["depot", "import", module.params["remote_src"]])
    entry = lookup(module)
    if entry is None:
        module.fail_json(msg="imported %s, but the depot has no %s %s (another image?)"
                         % (module.params["remote_src"], module.params["name"],
                            module.params["version"]), present=False)
    module.exit_json(changed=True, present=True, image=entry)


if __name__ == "__main__":
    main()
