#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/status: how long `bankctl status` (text and --json) takes on a sandbox whose two banks
# hold images (A good and booted, B staged), against `true` (the cost of starting a process),
# with the banks' record copies in ROOT/var/lib/bootbank/banks (written by stage) and without
# them (status then mounts each bank partition to read bank.json). Target (design brief §6):
# under 20 ms. Needs root (loop devices); everything is detached at the end.
# RUNS (default 50) runs each, the median and the 90th percentile are printed.
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
bench_images "$run" "$root"
printf '[system]\ncompatible = bench\n' >"$root/etc/bootbank/system.conf"
truncate -s 48M "$run/disk.img"
B() { "$BANKCTL" --root "$root" "$@"; }
B disk init "$run/disk.img" --boot-size 8M --bank-size 16M >/dev/null
B stage "$run/1.0.bbi" --activate >/dev/null
B boot --simulate >/dev/null
B mark-good >/dev/null
B stage "$run/2.0.bbi" >/dev/null
# Keep the disk's loop device between runs, as on a host (bankctl's own goes when it exits).
loop=$(losetup -P -f --show "$run/disk.img")

# time_it LABEL CMD...: median and p90 in ms over RUNS runs
time_it() {
	local label=$1
	shift
	python3 - "$RUNS" "$label" "$@" <<'PY'
import subprocess, sys, time
runs, label, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
t = []
for _ in range(runs):
    s = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    t.append((time.perf_counter() - s) * 1000)
t.sort()
print("%-34s median %6.2f ms   p90 %6.2f ms" % (label, t[len(t) // 2], t[int(len(t) * 0.9)]))
PY
}
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
med=$(awk '{ print $4 }' <<<"$with")
echo "target: under 20 ms (median with the record copies: $med ms)"
if [ "${BENCH_STRICT:-0}" = 1 ] && ! awk -v m="$med" 'BEGIN { exit !(m < 20) }'; then
	exit 1
fi
