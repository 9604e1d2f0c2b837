#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankctl command line: help, version, exit codes, --root sandboxes, config errors.
. "$(dirname "$0")/lib.sh"

root=$(bk_tmp)/root
mkdir -p "$root"

expect_exit 0 "--version" "$BANKCTL" --version
check "--version prints the version" grep -qE '^bankctl [0-9]+\.[0-9]+' <<<"$OUT"
expect_exit 0 "--help" "$BANKCTL" --help
check "--help documents every exit code" bash -c 'for c in 0 1 2 3 4 5 6 7 8 9 10; do grep -qE "^ +$c  " <<<"$1" || exit 1; done' _ "$OUT"
check "--help lists busy" grep -q ' 3  busy' <<<"$OUT"

expect_exit 0 "status on an empty sandbox" "$BANKCTL" --root "$root" status
check "status says nothing is configured" grep -q 'nothing is configured' <<<"$OUT"
check "nothing was created in the sandbox by status" test -z "$(ls -A "$root")"

expect_exit 0 "--json status" "$BANKCTL" --root "$root" --json status
check "--json status is JSON with configured=false" \
	python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["configured"] is False else 1)' <<<"$OUT"
expect_exit 0 "status --json (option after the verb)" "$BANKCTL" --root "$root" status --json
check "verb-level --json is JSON" python3 -c 'import json,sys; json.load(sys.stdin)' <<<"$OUT"

mkdir -p "$root/etc/bootbank"
printf '[system]\ncompatible = acme-x86_64\n\n[depot]\npath = /var/lib/bootbank/depot\n' >"$root/etc/bootbank/system.conf"
expect_exit 0 "status with a valid system.conf" "$BANKCTL" --root "$root" --json status
check "status reports the compatible string" \
	python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["system"]["compatible"]=="acme-x86_64" else 1)' <<<"$OUT"

printf '[system]\ncompatible = acme\ncolour = blue\n' >"$root/etc/bootbank/system.conf"
expect_exit 2 "unknown key: exit 2" "$BANKCTL" --root "$root" status
check "unknown key: one line" test "$(wc -l <<<"$ERR")" -eq 1
check "unknown key: names file and line" grep -qF "$root/etc/bootbank/system.conf':3: unknown key 'colour'" <<<"$ERR"

printf '[boot]\ntries = lots\n' >"$root/etc/bootbank/system.conf"
expect_exit 2 "bad value: exit 2" "$BANKCTL" --root "$root" status
check "bad value: names file, line and key" grep -qF "system.conf':2: boot.tries must be a number" <<<"$ERR"

printf '[nonsense]\nx = 1\n' >"$(bk_tmp)/other.conf"
expect_exit 2 "--config FILE with an unknown section: exit 2" "$BANKCTL" --config "$(bk_tmp)/other.conf" status
check "unknown section named" grep -qF "other.conf':2: unknown section [nonsense]" <<<"$ERR"
expect_exit 2 "--config of a missing file: exit 2" "$BANKCTL" --config "$(bk_tmp)/missing.conf" status
check "missing config named" grep -qF "missing.conf' does not exist" <<<"$ERR"

expect_exit 2 "unknown verb: exit 2" "$BANKCTL" --root "$root" frobnicate
check "unknown verb named" grep -q "unknown verb 'frobnicate'" <<<"$ERR"
expect_exit 2 "missing verb: exit 2" "$BANKCTL"
expect_exit 2 "bad option: exit 2" "$BANKCTL" --root "$root" status --bogus
expect_exit 2 "missing root: exit 2" "$BANKCTL" --root "$(bk_tmp)/nope" status

bk_done
