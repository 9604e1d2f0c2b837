# -*- coding: utf-8 -*-
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The options every bootbank.fleet module takes (module_utils/bankctl.py COMMON_ARGS)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  root:
    description: Sandbox root passed to bankctl as C(--root) (for tests); unset on real hosts.
    type: str
  bankctl:
    description: Path of bankctl on the managed host.
    type: str
    default: bankctl
"""
