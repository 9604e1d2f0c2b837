# -*- coding: utf-8 -*-
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Run bankctl --json on the managed host (shared by the bootbank.fleet modules)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# The options every module takes (merged into each module's argument_spec).
COMMON_ARGS = dict(
    root=dict(type="str", required=False, default=None),
    bankctl=dict(type="str", required=False, default="bankctl"),
)

# docs/remediation.md: exit codes of scan.
SCAN_STATES = {0: "compliant", 20: "non-compliant", 21: "compliant-pending-reboot",
               22: "incompatible", 23: "unknown"}


def bankctl_cmd(module, args):
    cmd = [module.params["bankctl"]]
    if module.params.get("root"):
        cmd += ["--root", module.params["root"]]
    return cmd + list(args)


def run(module, args, ok_rcs=(0,)):
    """Run bankctl ARGS; fail the module unless the exit code is one of OK_RCS."""
    cmd = bankctl_cmd(module, args)
    rc, out, err = module.run_command(cmd)
    if rc not in ok_rcs:
        module.fail_json(msg="bankctl %s failed (exit %d): %s" % (" ".join(args), rc,
                                                                  (err or out).strip()),
                         rc=rc, stdout=out, stderr=err, cmd=cmd)
    return rc, out, err


def run_json(module, args, ok_rcs=(0,)):
    """Run bankctl --json ARGS and parse its one JSON document."""
    rc, out, err = run(module, ["--json"] + list(args), ok_rcs)
    try:
        return rc, json.loads(out) if out.strip() else None
    except ValueError as e:
        module.fail_json(msg="bankctl %s: cannot parse its JSON: %s" % (" ".join(args), e),
                         rc=rc, stdout=out, stderr=err)


def run_json_lines(module, args):
    """Run bankctl --json ARGS printing JSON Lines (remediate); returns rc, the lines, stderr."""
    cmd = bankctl_cmd(module, ["--json"] + list(args))
    rc, out, err = module.run_command(cmd)
    lines = []
    for line in out.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append({"event": "text", "text": line})
    return rc, lines, err


def failing_checks(precheck, path=None):
    """The failing checks of a pre-check document, as 'name: reason' strings."""
    out = []
    for c in (precheck or {}).get("checks", []):
        if c.get("result") == "fail" and (path is None or c.get("path") in (path, "both")):
            out.append("%s: %s" % (c.get("name"), c.get("reason")))
    return out
