#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/revisions: the scale target of the design brief (§6): 100 retained revisions list and
# GC in under 1 s. N revisions (default 100) of a small squashfs are added with `bankctl rev
# add` (each hashed, recorded and mounted on its own loop device), then timed:
#   rev list, rev list --json   median of RUNS runs (default 20), against `findmnt --list`
#                               (reading the same mount table, the floor of any listing);
#   rev gc --keep 2             one run per round (it removes N-2 revisions), ROUNDS rounds
#                               (default 3), against unmounting as many loop mounts of the same
#                               file with umount(8) in a shell loop, measured in the same round.
# Needs root (loop devices, mounts); runs in its own mount namespace, detaches everything.
# BENCH_STRICT=1: exit 1 when a list or a GC takes 1 s or more.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
BK_BUILD=${BK_BUILD:-build/cc}
BANKCTL=$(realpath "$BK_BUILD/bankctl")
N=${N:-100}
RUNS=${RUNS:-20}
ROUNDS=${ROUNDS:-3}
if [ "$(id -u)" -ne 0 ]; then
	echo "bench/revisions: needs root (loop devices, mounts), skipped"
	exit 0
fi
if [ -z "${BK_BENCH_NS:-}" ]; then
	exec env BK_BENCH_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
for t in mksquashfs python3 losetup findmnt; do
	command -v "$t" >/dev/null || { echo "bench/revisions: needs $t" >&2; exit 1; }
done
mkdir -p build/bench
run=$(mktemp -d "$PWD/build/bench/revisions.XXXXXX")
cleanup() {
	local m l
	for m in $(findmnt -l -n -o TARGET | grep -F "$run/" | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	for l in $(losetup -l -n -O NAME,BACK-FILE | awk -v r="$run/" 'index($2, r) == 1 { print $1 }'); do
		losetup -d "$l" 2>/dev/null || true
	done
	rm -rf "$run"
}
trap cleanup EXIT
root=$run/root
mkdir -p "$root" "$run/tree" "$run/base"
echo bench >"$run/tree/version"
mksquashfs "$run/tree" "$run/payload.squashfs" -quiet -noappend -all-root >/dev/null
B() { "$BANKCTL" --root "$root" "$@"; }

# ms CMD...: wall time of one run of CMD in milliseconds (output discarded)
ms() {
	local t0 t1
	t0=$EPOCHREALTIME
	"$@" >/dev/null 2>&1
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1000 }'
}
# median_ms CMD...: median over RUNS runs
median_ms() {
	local i v=()
	for ((i = 0; i < RUNS; i++)); do
		v+=("$(ms "$@")")
	done
	printf '%s\n' "${v[@]}" | sort -g | awk '{ a[NR] = $1 } END { printf "%.2f", a[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
under_1s() { awk -v a="$1" 'BEGIN { exit !(a < 1000) }'; }

add_all() {
	local i
	for ((i = 1; i <= N; i++)); do
		B rev add "r$i" "$run/payload.squashfs" >/dev/null
	done
}
# baseline_umount K: mount K copies of the payload (a loop device each, autoclear, as mount(8)
# sets up; copies, since mount(8) reuses one loop device for one file), then time unmounting
# them all, each loop device going with its mount.
baseline_umount() {
	local i t0 t1
	for ((i = 1; i <= $1; i++)); do
		mkdir -p "$run/base/$i"
		cp "$run/payload.squashfs" "$run/base/$i.squashfs"
		mount -o loop,ro -t squashfs "$run/base/$i.squashfs" "$run/base/$i" || return 1
	done
	t0=$EPOCHREALTIME
	for ((i = 1; i <= $1; i++)); do
		umount "$run/base/$i" || return 1
	done
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1000 }'
}

missed=0
echo "bench/revisions: $N revisions (squashfs, one loop device each); list: median of $RUNS, gc: $ROUNDS rounds"
for ((round = 1; round <= ROUNDS; round++)); do
	t0=$EPOCHREALTIME
	add_all
	t1=$EPOCHREALTIME
	add=$(awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN { printf "%.0f ms (%.2f ms each)", (b - a) * 1000, (b - a) * 1000 / n }')
	[ "$(B rev list | tail -n +2 | wc -l)" -eq "$N" ] || { echo "bench/revisions: rev list does not show $N revisions" >&2; exit 1; }
	if [ "$round" -eq 1 ]; then
		echo "  rev add x$N:  $add"
		base=$(median_ms findmnt --list)
		list=$(median_ms B rev list)
		json=$(median_ms B rev list --json)
		echo "  rev list:             median $list ms   (findmnt --list: $base ms, ratio $(ratio "$list" "$base"))"
		echo "  rev list --json:      median $json ms   (ratio $(ratio "$json" "$base"))"
		under_1s "$list" && under_1s "$json" || missed=1
	fi
	gc=$(ms B rev gc --keep 2)
	left=$(B rev list | tail -n +2 | wc -l)
	[ "$left" -eq 2 ] || { echo "bench/revisions: rev gc --keep 2 left $left revisions" >&2; exit 1; }
	um=$(baseline_umount $((N - 2)))
	echo "  round $round: rev gc --keep 2 ($((N - 2)) removed): $gc ms   (umount x$((N - 2)): $um ms, ratio $(ratio "$gc" "$um"))"
	under_1s "$gc" || missed=1
	B rev gc --keep 0 >/dev/null
done
if [ "$missed" -eq 0 ]; then
	echo "  target (design §6): list and GC of $N retained revisions under 1 s: met"
else
	echo "  target (design §6): list and GC of $N retained revisions under 1 s: MISSED"
	[ "${BENCH_STRICT:-0}" != 1 ] || exit 1
fi
