#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# make demo: bootbank's main job on a sandbox under build/demo (no real disk touched).
set -euo pipefail
cd "$(dirname "$0")/.."
BK_BUILD=${BK_BUILD:-build/cc}
BANKCTL=$(realpath "$BK_BUILD/bankctl")
demo=build/demo
rm -rf "$demo"
mkdir -p "$demo/root"
root=$(realpath "$demo/root")

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a fresh sandbox: nothing is configured"
"$BANKCTL" --root "$root" status

step "configure it (system.conf)"
mkdir -p "$root/etc/bootbank"
cat >"$root/etc/bootbank/system.conf" <<CONF
[system]
compatible = bootbank-demo-x86_64
bootloader = file
CONF
"$BANKCTL" --root "$root" status

step "a typo in system.conf is one clear line and exit code 2"
echo "colour = blue" >>"$root/etc/bootbank/system.conf"
rc=0
"$BANKCTL" --root "$root" status || rc=$?
echo "(exit code $rc)"
[ "$rc" -eq 2 ]
echo
echo "demo done"
