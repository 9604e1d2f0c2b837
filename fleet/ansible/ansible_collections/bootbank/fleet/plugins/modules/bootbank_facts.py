#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: LGPL-2.1-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: bootbank_facts
short_description: Gather the bootbank state of a host as facts
description:
  - Runs C(bankctl --json status), C(scan), C(desired show), C(workload list) and
    C(depot list) on the managed host and returns them as the fact C(bootbank).
  - Changes nothing; runs the same in check mode.
version_added: "0.1.0"
author: bootbank developers (!UNKNOWN)
notes:
  - Uses bankctl over the connection Ansible already has (ssh), not bankd's D-Bus API.
extends_documentation_fragment:
  - bootbank.fleet.bankctl
"""

EXAMPLES = r"""
- name: Gather the bootbank facts
  bootbank.fleet.bootbank_facts:

- name: Show the compliance state
  ansible.builtin.debug:
    var: bootbank.compliance
"""

RETURN = r"""
ansible_facts:
  description: Facts under the key C(bootbank).
  returned: always
  type: dict
  contains:
    bootbank:
      description: The state of the host.
      type: dict
      contains:
        compliance:
          description: The scan state (compliant, non-compliant, compliant-pending-reboot, incompatible, unknown).
          type: str
        compliance_reason:
          description: The scan's reason.
          type: str
        in_service_version:
          description: The version in service (live patches included when a desired image is set).
          type: str
        booted:
          description: The booted bank (A or B).
          type: str
        next:
          description: The bank that boots next.
          type: str
        booted_state:
          description: The boot state of the booted bank (good, trying, ...).
          type: str
        maintenance:
          description: Partial maintenance mode (null when off).
          type: dict
        last_error:
          description: The last failed operation from the events log (null when none).
          type: dict
        desired:
          description: The desired image (null when none).
          type: dict
        workloads:
          description: The registered workloads.
          type: list
        workload_count:
          description: The number of registered workloads that run.
          type: int
        depot:
          description: The bundles in the depot.
          type: list
        status:
          description: The full C(bankctl status --json) document.
          type: dict
        scan:
          description: The full C(bankctl scan --json) document.
          type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bootbank.fleet.plugins.module_utils.bankctl import (
    COMMON_ARGS, run_json)


def gather(module):
    status = run_json(module, ["status"])[1]
    scan = run_json(module, ["scan"], ok_rcs=(0, 20, 21, 22, 23))[1]
    desired = run_json(module, ["desired", "show"])[1]
    workloads = run_json(module, ["workload", "list"])[1]
    depot = run_json(module, ["depot", "list"])[1]
    status = status or {}
    scan = scan or {}
    boot = status.get("boot") or {}
    booted = scan.get("booted")
    if not booted and isinstance(boot.get("booted"), dict):
        booted = boot["booted"].get("bank")
    banks = boot.get("banks") or {}
    workloads = workloads or []
    # The version in service: the scan's (it knows live patches) when a desired image is set,
    # else the booted bank's content.
    in_service = scan.get("in_service")
    if in_service and len(in_service.split(" ")) > 1:
        in_service_version = in_service.split(" ")[1]
    else:
        content = (banks.get(booted) or {}).get("content") if booted else None
        in_service_version = (content or {}).get("version") if isinstance(content, dict) else None
    return dict(
        compliance=scan.get("state"),
        compliance_reason=scan.get("reason"),
        in_service=in_service,
        in_service_version=in_service_version,
        booted=booted,
        next=scan.get("next"),
        booted_state=(banks.get(booted) or {}).get("state") if booted else None,
        maintenance=status.get("maintenance"),
        last_error=status.get("last_error"),
        desired=desired,
        workloads=workloads,
        workload_count=sum(1 for w in workloads if w.get("running", True)),
        depot=depot or [],
        status=status,
        scan=scan,
    )


def main():
    module = AnsibleModule(argument_spec=dict(COMMON_ARGS), supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts=dict(bootbank=gather(module)))


if __name__ == "__main__":
    main()
