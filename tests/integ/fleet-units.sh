#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Unit tests of the bootbank.fleet modules' logic (fleet/ansible/tests/test_modules.py): each
# module against a fake bankctl that answers from a table and logs its calls.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
[ -x "$PY" ] && "$PY" -c 'import ansible.module_utils.basic' 2>/dev/null || bk_skip "needs ansible-core"
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$("$PY" -m unittest discover -v -s "$repo/fleet/ansible/tests" 2>&1)
while read -r line; do
	case $line in
	*" ... ok") ok "${line% ... ok}" ;;
	*" ... FAIL" | *" ... ERROR") not_ok "$line" ;;
	esac
done <<<"$out"
grep -q '^OK' <<<"$out" || { not_ok "unittest: $(tail -n 3 <<<"$out" | tr '\n' ' ')"; echo "$out" | sed 's/^/#   /'; }
bk_done
