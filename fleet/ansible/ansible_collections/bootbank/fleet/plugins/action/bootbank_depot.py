# -*- coding: utf-8 -*-
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bootbank_depot: copy the bundle from the controller only when the depot lacks the image."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

MODULE = "bootbank.fleet.bootbank_depot"


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        src = args.pop("src", None)
        if not src or args.get("remote_src"):
            result.update(self._execute_module(MODULE, module_args=args, task_vars=task_vars))
            return result
        try:
            src = self._find_needle("files", src)
        except AnsibleError as e:
            result.update(failed=True, msg=str(e))
            return result
        query = dict(args, query=True)
        q = self._execute_module(MODULE, module_args=query, task_vars=task_vars)
        if q.get("failed") or q.get("present"):
            result.update(q)
            return result
        if self._play_context.check_mode:
            result.update(changed=True, present=True, msg="would copy %s and import it" % src)
            return result
        remote = self._connection._shell.join_path(self._connection._shell.tmpdir,
                                                   os.path.basename(src))
        self._transfer_file(src, remote)
        self._fixup_perms2((self._connection._shell.tmpdir, remote))
        args["remote_src"] = remote
        result.update(self._execute_module(MODULE, module_args=args, task_vars=task_vars))
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
