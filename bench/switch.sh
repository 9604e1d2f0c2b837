#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/switch: live-patch switch-over. For 1, 10 and 50 workloads and for a 64 MiB and a
# 1 GiB revision payload: each workload's frozen time (freeze start -> thaw done) p50, p99 and
# max, and the switch time (pointer + every workload, as measured by bankctl) p50 and max,
# over SWITCHES switch-overs (default 40) between two revisions. Ratio printed: switch time
# with the 1 GiB payload / with the 64 MiB one (target: about 1, it must not grow with the
# payload). Target: frozen p99 < 10 ms and, with 50 workloads, a switch under 500 ms.
# Each workload count is also run with a CPU hog beside it (one busy loop per core, normal
# priority, in a cgroup of its own: the "hog" rows), on the 64 MiB payload; the quiet rows are
# the figures without it. The hog rows are printed, not held to the target (docs/livepatch.md
# says what to expect under load). The switch freezes at most [livepatch] freeze-batch
# workloads at a time (default: twice the CPUs, the "batch" column); the "all" rows (ALL=0:
# none) freeze every workload at once, on the 64 MiB payload, quiet, for comparison in the
# same run.
#
# Workloads: each a reader (tests/tools/live-reader, when built: `make tests`; otherwise a
# sleeping process) in its own cgroup v2 and mount namespace, its view a bind mount of the
# current revision. Payloads: squashfs images of random bytes (uncompressed, so they are built
# fast), made once and cached in build/bench/. Needs root (cgroups, loop devices, mounts);
# runs itself in a private mount namespace. BENCH_STRICT=1: exit 1 when a target is missed;
# BENCH_DUMP=1 prints every switch-over's total and per-workload frozen times (us) to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
BK_BUILD=${BK_BUILD:-build/cc}
BANKCTL=$(realpath "$BK_BUILD/bankctl")
SWITCHES=${SWITCHES:-40}
WORKLOADS=${WORKLOADS:-1 10 50}
SIZES=${SIZES:-64m 1g}
HOG=${HOG:-1} # 0: no rows with a CPU hog
ALL=${ALL:-1} # 0: no rows freezing every workload at once
cache=build/bench

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/switch: needs root (cgroups, loop devices), skipped"
	exit 0
fi
if [ -z "${BK_BENCH_NS:-}" ]; then
	BK_BENCH_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
for t in mksquashfs python3 findmnt; do
	command -v "$t" >/dev/null || { echo "bench/switch: needs $t" >&2; exit 1; }
done
CGROOT=$(findmnt -n -o TARGET -t cgroup2 | head -n1)
[ -n "$CGROOT" ] || { echo "bench/switch: no cgroup2 mount" >&2; exit 1; }
READER=$BK_BUILD/tests/tools/live-reader
[ -x "$READER" ] && READER=$(realpath "$READER") || READER=

mkdir -p "$cache"
make_payload() { # name size_in_MiB stamp
	local out=$cache/live-$1.sqfs src
	[ -f "$out" ] && return 0
	echo "making $out ($2 MiB of random bytes, uncompressed squashfs, once)"
	src=$(mktemp -d "$cache/src.XXXXXX")
	mkdir -p "$src/d"
	head -c $(($2 * 1024 * 1024)) /dev/urandom >"$src/blob"
	for i in 0 1 2 3 4 5 6 7; do echo "rev=$3" >"$src/f00$i"; done
	cp "$src"/f00* "$src/d/"
	mksquashfs "$src" "$out.tmp" -quiet -noappend -no-progress -noI -noD -noF -noX >/dev/null
	mv "$out.tmp" "$out"
	rm -rf "$src"
}
make_payload 64m-a 64 a
make_payload 64m-b 64 b
case " $SIZES " in *" 1g "*) make_payload 1g-a 1024 a; make_payload 1g-b 1024 b ;; esac

run=$(mktemp -d /tmp/bk-bench-switch.XXXXXX)
cgname=bk-bench-$$
cg=$CGROOT/$cgname
mkdir "$cg"
pids=()
cleanup() {
	local d
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for d in "$cg"/*/; do [ -d "$d" ] && { echo 0 >"$d/cgroup.freeze"; rmdir "$d" 2>/dev/null || true; }; done
	rmdir "$cg" 2>/dev/null || true
	for d in "$run"/root-*/run/bootbank/rev/*; do umount "$d" 2>/dev/null || true; done
	umount "$run" 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
# The run directory is tmpfs, as /run is: the pointer's fsync costs nothing there.
mount -t tmpfs bk-bench "$run"

echo "bench/switch: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start," \
	"kernel $(uname -r), $SWITCHES switch-overs per case," \
	"workloads: $([ -n "$READER" ] && echo "live-reader (1 ms pause)" || echo "sleeping processes")"
printf '%-8s %-6s %-10s %-6s %12s %12s %12s %14s %12s\n' payload load workloads batch "frozen p50" \
	"frozen p99" "frozen max" "switch p50" "switch max"

missed=0
declare -A switch_p50
cases=()
for size in $SIZES; do cases+=("$size quiet"); done
[ "$HOG" = 0 ] || cases+=("64m hog")
[ "$ALL" = 0 ] || cases+=("64m all")
for c in "${cases[@]}"; do
	read -r size load <<<"$c"
	for nw in $WORKLOADS; do
		root=$run/root-$size-$load-$nw
		view=$run/view
		mkdir -p "$root/etc/bootbank" "$view"
		batch=$((2 * $(nproc)))
		if [ "$load" = all ]; then
			batch=$nw
			printf '[livepatch]\nfreeze-batch = %s\n' "$nw" >"$root/etc/bootbank/system.conf"
		fi
		"$BANKCTL" --root "$root" rev add a "$cache/live-$size-a.sqfs" >/dev/null
		"$BANKCTL" --root "$root" rev add b "$cache/live-$size-b.sqfs" >/dev/null
		"$BANKCTL" --root "$root" rev switch a >/dev/null
		case_pids=()
		for i in $(seq 1 "$nw"); do
			mkdir -p "$cg/w$i"
			if [ -n "$READER" ]; then
				cmd=("$READER" "$view" 8 "$run/stats-$i" 1000)
			else
				cmd=(sleep 3600)
			fi
			(
				echo "$BASHPID" >"$cg/w$i/cgroup.procs"
				exec unshare -m --propagation private sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' \
					_ "$root/run/bootbank/current" "$view" "${cmd[@]}"
			) &
			case_pids+=($!)
			pids+=($!)
		done
		if [ "$load" = hog ]; then
			mkdir -p "$cg/hog"
			for _ in $(seq 1 "$(nproc)"); do
				(
					echo "$BASHPID" >"$cg/hog/cgroup.procs"
					exec sh -c 'while :; do :; done'
				) &
				case_pids+=($!)
				pids+=($!)
			done
		fi
		sleep 0.5
		for i in $(seq 1 "$nw"); do
			"$BANKCTL" --root "$root" workload add "w$i" --cgroup "$cgname/w$i" --view "$view" >/dev/null
		done
		: >"$run/results.jsonl"
		for s in $(seq 1 "$SWITCHES"); do
			if [ $((s % 2)) -eq 1 ]; then t=b; else t=a; fi
			"$BANKCTL" --root "$root" --json rev switch "$t" | tr -d '\n' >>"$run/results.jsonl"
			[ -z "${BENCH_DUMP:-}" ] || tail -n1 "$run/results.jsonl" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["total_us"], [w["frozen_us"] for w in d["workloads"]][:12])' >&2
			echo >>"$run/results.jsonl"
		done
		read -r f50 f99 fmax s50 smax < <(python3 - "$run/results.jsonl" "$nw" <<'EOF'
import json, sys
frozen, total = [], []
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert not d["rolled_back"]
    ws = [w for w in d["workloads"] if w["switched"]]
    assert len(ws) == int(sys.argv[2]), "not every workload switched"
    frozen += [w["frozen_us"] for w in ws]
    total.append(d["total_us"])
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]
print(pct(frozen, 50), pct(frozen, 99), max(frozen), pct(total, 50), max(total))
EOF
)
		awk -v s="$size" -v l="${load/all/quiet}" -v n="$nw" -v bt="$batch" -v a="$f50" -v b="$f99" -v c="$fmax" -v d="$s50" -v e="$smax" \
			'BEGIN { printf "%-8s %-6s %-10s %-6s %9.3f ms %9.3f ms %9.3f ms %11.3f ms %9.3f ms\n", s, l, n, bt, a / 1000, b / 1000, c / 1000, d / 1000, e / 1000 }'
		if [ "$load" = quiet ]; then
			switch_p50[$size-$nw]=$s50
			[ "$f99" -lt 10000 ] || missed=1
			[ "$nw" -lt 50 ] || [ "$smax" -lt 500000 ] || missed=1
		fi
		for p in "${case_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
		wait "${case_pids[@]}" 2>/dev/null || true
		for i in $(seq 1 "$nw"); do rmdir "$cg/w$i"; done
		[ "$load" != hog ] || rmdir "$cg/hog"
		for d in "$root"/run/bootbank/rev/*; do umount "$d"; done
	done
done

echo
for nw in $WORKLOADS; do
	a=${switch_p50[64m-$nw]:-} b=${switch_p50[1g-$nw]:-}
	[ -n "$a" ] && [ -n "$b" ] || continue
	awk -v n="$nw" -v a="$a" -v b="$b" 'BEGIN { printf "switch time 1 GiB / 64 MiB, %s workloads: %.2fx\n", n, b / a }'
done
if [ "$missed" -ne 0 ]; then
	echo "bench/switch: target missed (quiet rows): frozen p99 >= 10 ms, or a switch of 50 workloads >= 500 ms"
	[ "${BENCH_STRICT:-0}" = 1 ] && exit 1
else
	echo "bench/switch: target met (quiet rows): frozen p99 < 10 ms, a switch of 50 workloads < 500 ms"
fi
exit 0
