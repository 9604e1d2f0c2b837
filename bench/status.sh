#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/status: how long `bankctl status` (text and --json) takes on a sandbox whose two banks
# hold images (A good and booted, B staged), against `true` (the cost of starting a process),
# with the banks' record copies in ROOT/var/lib/bootbank/banks (written by stage) and without
# them (status then mounts each bank partition to read bank.json). Target (design brief §6):
# under 20 ms. Needs root (loop devices); everything is detached at the end.
# RUNS (default 50) runs each, the median, the 90th and 99th percentile are printed.
# BENCH_STRICT=1: exit 1 when the median with the copies is 20 ms or more.
set -euo pipefail
cd "$(dirname "$0")/.."
BK_BUILD=${BK_BUILD:-build/cc}
BANKCTL=$(realpath "$BK_BUILD/bankctl")
RUNS=${RUNS:-50}
if [ "$(id -u)" -ne 0 ]; then
	echo "bench/status: needs root (loop devices), skipped"
	exit 0
fi
for t in mksquashfs python3 losetup; do
	command -v "$t" >/dev/null || { echo "bench/status: needs $t" >&2; exit 1; }
done
mkdir -p build/bench
run=$(mktemp -d "$PWD/build/bench/status.XXXXXX")
cleanup() {
	local l
	for l in $(losetup -j "$run/disk.img" 2>/dev/null | cut -d: -f1); do losetup -d "$l" 2>/dev/null || true; done
	rm -rf "$run"
}
trap cleanup EXIT
root=$run/root
. bench/lib/images.sh
bench_two_banks "$run" "$root"
loop=$BENCH_LOOP
time_it() { bench_time "$RUNS" "$@"; }
echo "bench/status: $RUNS runs each (2 banks with images, file backend)"
base=$(time_it "true" true)
echo "$base"
with=$(time_it "bankctl status" "$BANKCTL" --root "$root" status)
echo "$with"
time_it "bankctl status --json" "$BANKCTL" --root "$root" status --json
mv "$root/var/lib/bootbank/banks" "$root/var/lib/bootbank/banks.off"
time_it "bankctl status (no record copies)" "$BANKCTL" --root "$root" status
mv "$root/var/lib/bootbank/banks.off" "$root/var/lib/bootbank/banks"
losetup -d "$loop"
med=$(sed 's/.* median *\([0-9.]*\) .*/\1/' <<<"$with")
echo "target: under 20 ms (median with the record copies: $med ms)"
if [ "${BENCH_STRICT:-0}" = 1 ] && ! awk -v m="$med" 'BEGIN { exit !(m < 20) }'; then
	exit 1
fi
