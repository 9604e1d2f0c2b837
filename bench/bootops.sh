#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/bootops: the design brief's target (§6) "activate, mark-good, rollback: a few fsyncs".
# On a sandbox whose banks hold images (A good and booted, B staged; loop-backed disk), with
# the file backend and then the grub backend (the grubenv on the disk's boot partition, mounted
# on ROOT/boot in the bench's own mount namespace, as on a host), each of activate, boot --simulate, mark-good, rollback and roll-forward runs in a
# cycle that brings the state back (then mark-bad B, and, not measured, a boot and a stage),
# RUNS times (default 30): the median wall time of each
# against `true` (the cost of starting a process) and against one write + fsync of a small
# file on the same filesystem (`dd conv=fsync`), and, with strace(1), how many fsync-family
# calls (fsync, fdatasync, syncfs, sync_file_range) each makes.
# Needs root (loop devices). BENCH_STRICT=1: exit 1 when an operation makes more than
# MAX_SYNCS (default 6) such calls.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
BK_BUILD=${BK_BUILD:-build/cc}
BANKCTL=$(realpath "$BK_BUILD/bankctl")
RUNS=${RUNS:-30}
MAX_SYNCS=${MAX_SYNCS:-6}
if [ "$(id -u)" -ne 0 ]; then
	echo "bench/bootops: needs root (loop devices), skipped"
	exit 0
fi
if [ -z "${BK_BENCH_NS:-}" ]; then
	exec env BK_BENCH_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
for t in mksquashfs python3 losetup partx; do
	command -v "$t" >/dev/null || { echo "bench/bootops: needs $t" >&2; exit 1; }
done
mkdir -p build/bench
run=$(mktemp -d "$PWD/build/bench/bootops.XXXXXX")
cleanup() {
	teardown 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
root=$run/root
. bench/lib/images.sh
bench_images "$run" "$root"
B() { "$BANKCTL" --root "$root" "$@" >/dev/null; }

# setup BACKEND: a fresh disk and sandbox state for BACKEND (file or grub): A good and booted,
# B staged. loop: the disk's loop device, kept between runs as on a host (bankctl's own goes
# when it exits); with grub, its boot partition is mounted on ROOT/boot.
setup() {
	teardown
	rm -rf "$root/var" "$root/boot" "$root/run" "$root/etc/bootbank/disk.json" "$run/disk.img"
	printf '[system]\ncompatible = bench\nbootloader = %s\n' "$1" >"$root/etc/bootbank/system.conf"
	truncate -s 48M "$run/disk.img"
	B disk init "$run/disk.img" --boot-size 8M --bank-size 16M
	loop=$(losetup -P -f --show "$run/disk.img")
	mkdir -p "$root/boot"
	if [ "$1" = grub ]; then
		# Partition nodes through BLKPG (partx): kernels without partition parsers make none.
		partx -a "$loop" 2>/dev/null || partx -u "$loop"
		for _ in $(seq 50); do [ -b "${loop}p1" ] && break; sleep 0.1; done
		mount -t ext4 "${loop}p1" "$root/boot"
		mkdir -p "$root/boot/bootbank"
	fi
	B stage "$run/1.0.bbi" --activate
	B boot --simulate
	B mark-good
	B stage "$run/2.0.bbi"
}
teardown() {
	local l
	if mountpoint -q "$root/boot" 2>/dev/null; then umount "$root/boot"; fi
	for l in $(losetup -j "$run/disk.img" 2>/dev/null | cut -d: -f1); do losetup -d "$l"; done
}

# The cycle, from "A good and booted, B staged": every step is timed and counted, in order.
STEPS=("activate B" "boot --simulate" "mark-good" "rollback" "roll-forward" "mark-bad B")
# Two more steps bring the state back, not measured: a boot (A, B being bad) and B staged again.
reset_state() { B boot --simulate && B stage "$run/2.0.bbi"; }

# syncs STEP: fsync-family calls of one run of bankctl STEP (strace -f -c), "-" without strace
syncs() {
	local out
	if ! command -v strace >/dev/null; then
		echo "-"
		return
	fi
	out=$(strace -f -qq -c -e trace=fsync,fdatasync,syncfs,sync_file_range,sync \
		"$BANKCTL" --root "$root" $1 2>&1 >/dev/null)
	awk '$NF ~ /^(fsync|fdatasync|syncfs|sync_file_range|sync)$/ { n += $4 } END { print n + 0 }' <<<"$out"
}

# measure BACKEND: RUNS timed cycles, then one counted cycle; prints a line per step.
measure() {
	local times=$run/times.$1 s n med p90 dd_med
	python3 - "$RUNS" "$BANKCTL" "$root" "$run" "${STEPS[@]}" <<'PY' >"$times"
import subprocess, sys, time
runs, bankctl, root, run, steps = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
def go(args):
    s = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - s) * 1000
extra = ["true", "dd conv=fsync (4 KiB)"]
t = {k: [] for k in steps + extra}
for _ in range(runs):
    for k in steps:
        t[k].append(go([bankctl, "--root", root] + k.split()))
    go([bankctl, "--root", root, "boot", "--simulate"])
    go([bankctl, "--root", root, "stage", run + "/2.0.bbi"])
    t["true"].append(go(["true"]))
    t["dd conv=fsync (4 KiB)"].append(go(["dd", "if=/dev/zero", "of=" + root + "/var/lib/bootbank/.bench",
                                          "bs=4096", "count=1", "conv=fsync", "status=none"]))
for k in steps + extra:
    v = sorted(t[k])
    print("%s\t%.2f\t%.2f" % (k, v[len(v) // 2], v[int(len(v) * 0.9)]))
PY
	rm -f "$root/var/lib/bootbank/.bench"
	echo "bench/bootops: $RUNS cycles, $1 backend (loop-backed disk; median and p90 of each)"
	for s in "true" "dd conv=fsync (4 KiB)"; do
		printf '  %-22s median %7.2f ms   p90 %7.2f ms\n' "$s" \
			"$(awk -F'\t' -v k="$s" '$1 == k { print $2 }' "$times")" \
			"$(awk -F'\t' -v k="$s" '$1 == k { print $3 }' "$times")"
	done
	dd_med=$(awk -F'\t' '$1 ~ /^dd/ { print $2 }' "$times")
	# The counted cycle starts from the same state as the timed ones.
	for s in "${STEPS[@]}"; do
		n=$(syncs "$s")
		med=$(awk -F'\t' -v k="$s" '$1 == k { print $2 }' "$times")
		p90=$(awk -F'\t' -v k="$s" '$1 == k { print $3 }' "$times")
		printf '  %-22s median %7.2f ms   p90 %7.2f ms   %5.1fx dd+fsync   fsync calls: %s\n' \
			"$s" "$med" "$p90" \
			"$(awk -v a="$med" -v b="$dd_med" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$n"
		if [ "$n" != "-" ] && [ "$n" -gt "$MAX_SYNCS" ]; then
			missed=1
		fi
	done
	reset_state
}

missed=0
for backend in file grub; do
	setup "$backend"
	measure "$backend"
done
teardown
if ! command -v strace >/dev/null; then
	echo "  fsync calls not counted: strace is not installed"
elif [ "$missed" -eq 0 ]; then
	echo "  target (design §6): a few fsyncs (at most $MAX_SYNCS) per operation: met"
else
	echo "  target (design §6): a few fsyncs (at most $MAX_SYNCS) per operation: MISSED"
	[ "${BENCH_STRICT:-0}" != 1 ] || exit 1
fi
