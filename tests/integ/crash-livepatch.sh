#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Crash injection for the live patch (issue 16, item 4; docs/crash-safety.md, "Live patch"):
# - `livepatch rollback` killed before each of its mutating calls, the disk image and the root
#   restored to the same starting point before each (1.0 booted from bank A, 1.1 applied from
#   bank B and in service, a reader workload on it);
# - `livepatch apply` and `livepatch rollback` with their helpers killed instead
#   (tests/crash/bk-crash.c BK_CRASH_MODE=helpers: the stage child of apply, the view-swap
#   helpers, the watchdog; the main process goes on), and with the whole process tree killed
#   (BK_CRASH_MODE=tree: the watchdog too, as a kill of the unit would), at every mutating
#   call the main process makes while a helper is alive (and, for tree, every 8th call of the
#   stage child).
# After each, `bankctl recover` runs and the invariants must hold: recover, status succeed; the
# maintenance flag and staging marker are gone; the workload is thawed, its view on the revision
# `current` names, and the boot choice on that revision's bank; bank A (booted, good) is
# byte-identical; no leftover of an interrupted write at any depth of the state and run
# directories and of both banks; a bank whose bank.json exists is complete.
. "$(dirname "$0")/lib.sh"
bk_need_root
bk_live_sandbox bk-crash-livepatch 200m debugfs
[ -n "$SO" ] || bk_skip "no crash injector (make tests)"
# Crash points: every STRIDE-th from a random OFFSET (both printed, so a failure can be run
# again), every 4th in make check and every 12th under the sanitizers (each point restores the
# disk, applies and starts a workload: about 6 s); BK_CRASH_STRIDE=1 takes them all (by hand,
# about 16 minutes), BK_CRASH_OFFSET picks the first.
STRIDE=${BK_CRASH_STRIDE:-4}
ldd "$BANKCTL" | grep -q libasan && STRIDE=${BK_CRASH_STRIDE:-12}
OFFSET=${BK_CRASH_OFFSET:-$((RANDOM % STRIDE))}
echo "# crash points: every ${STRIDE}th from offset $OFFSET (BK_CRASH_STRIDE=$STRIDE BK_CRASH_OFFSET=$OFFSET repeats this run)"

stop_reader() {
	[ -n "$reader" ] || return 0
	echo 0 >"$cg/app/cgroup.freeze" 2>/dev/null
	kill -9 "$reader" 2>/dev/null
	wait "$reader" 2>/dev/null
	reader=
}
bk_live_stop() { stop_reader; }

bk_live_bundle v10 1.0 a '"0.9"' || bk_skip "cannot build bundles"
bk_live_bundle v11 1.1 b '"1.0"'

truncate -s 48M "$disk"
bc disk init "$disk" --boot-size 8M --bank-size 16M >/dev/null || bk_skip "disk init failed"
bc stage "$T/img/v10.bbi" --activate >/dev/null && bc boot --simulate >/dev/null &&
	bc mark-good >/dev/null || bk_skip "cannot prepare: 1.0 booted in bank A"
read -r sa za < <(jq1 "' '.join('%d %d' % (p['start'], p['size']) for p in d['partitions'] if p['part'] == 'bank-a')" <"$root/var/lib/bootbank/disk.json")
read -r sb zb < <(jq1 "' '.join('%d %d' % (p['start'], p['size']) for p in d['partitions'] if p['part'] == 'bank-b')" <"$root/var/lib/bootbank/disk.json")
hash_a() {
	local h
	h=$(set -o pipefail; dd if="$disk" iflag=direct,skip_bytes,count_bytes skip="$sa" count="$za" bs=1M status=none | sha256sum) || h="unreadable-$RANDOM"
	echo "${h%% *}"
}
bankdump() { # A|B: the bank's filesystem copied to $T/dump/A|B (debugfs reads the image)
	local o
	if [ "$1" = A ]; then o=$sa; else o=$sb; fi
	rm -rf "$T/dump/$1"
	mkdir -p "$T/dump/$1"
	debugfs -c -R "rdump / $T/dump/$1" "$disk?offset=$o" >/dev/null 2>&1
}
mkdir -p "$cg/app" "$T/snap"

# The starting point of every crash: 1.0 booted and good in bank A, nothing mounted.
cp --sparse=always "$disk" "$T/snap/disk.img"
cp -a "$root" "$T/snap/root"
pristine_a=$(hash_a)

# restore: back to the starting point (a new inode for the image: no loop device of an old run
# is reused), then 1.0 in service with the reader on it
restore() {
	stop_reader
	unmount_all
	cp --sparse=always "$T/snap/disk.img" "$disk.new"
	mv "$disk.new" "$disk"
	rm -rf "$root"
	cp -a "$T/snap/root" "$root"
	bc rev restore >/dev/null 2>&1 || return 1
	start_reader
}
restore_applied() { # the starting point with 1.1 applied and in service
	restore && bc livepatch apply "$T/img/v11.bbi" >/dev/null 2>&1
}
restore || bk_skip "cannot prepare the starting point"
bc workload add app --cgroup "$cgname/app" --view "$view" >/dev/null 2>&1 || bk_skip "workload add failed"
# The workload stays registered in the snapshot from now on.
stop_reader
unmount_all
rm -rf "$T/snap/root"
cp -a "$root" "$T/snap/root"
cp --sparse=always "$disk" "$T/snap/disk.img"

current() { readlink "$root/run/bootbank/current" | sed 's|^rev/||'; }
rev_of_app() { bc --json workload list | jq1 'd[0].get("revision", "")'; }
frozen_app() { grep -q '^frozen 1' "$cg/app/cgroup.events" && echo 1 || echo 0; }
next_boot() { bc explain-next-boot --json | jq1 'd["next"]["bank"]'; }

failures=()
after_crash() { # WHAT N
	local w="$1@$2" out cur rev nb line
	out=$(bc --wait recover 2>&1) || { failures+=("$w: recover: $out"); return; }
	[ ! -e "$root/var/lib/bootbank/maintenance.json" ] || failures+=("$w: flag left")
	[ ! -e "$root/var/lib/bootbank/staging.json" ] || failures+=("$w: staging marker left")
	[ "$(frozen_app)" = 0 ] || failures+=("$w: the workload is frozen")
	cur=$(current)
	rev=$(rev_of_app)
	[ "$rev" = "$cur" ] || failures+=("$w: workload on '$rev', current '$cur'")
	nb=$(next_boot)
	case $cur in
	acme-os-1.1) [ "$nb" = B ] || failures+=("$w: 1.1 in service, but bank $nb boots next") ;;
	acme-os-1.0) [ "$nb" = A ] || failures+=("$w: 1.0 in service, but bank $nb boots next") ;;
	*) failures+=("$w: current is '$cur'") ;;
	esac
	bc status --json >/dev/null 2>&1 || failures+=("$w: status fails")
	[ "$(hash_a)" = "$pristine_a" ] || failures+=("$w: bank A changed")
	bankdump A && bankdump B || failures+=("$w: cannot read the banks")
	while IFS= read -r line; do
		failures+=("$w: $line")
	done < <(python3 "$repo/tests/crash/check-tree.py" --scanned "$T/scanned" \
		--tree "var/lib/bootbank:$root/var/lib/bootbank" --tree "run/bootbank:$root/run/bootbank" \
		--bank "bank A:$T/dump/A" --bank "bank B:$T/dump/B")
}
report() { # WHAT TOTAL
	if [ ${#failures[@]} -eq 0 ]; then
		ok "$1: killed at each of $2 points, recovered, invariants hold"
	else
		for f in "${failures[@]:0:10}"; do not_ok "$f"; done
		not_ok "$1: ${#failures[@]} failed checks over $2 crash points"
	fi
	failures=()
}
summary=()

# --- livepatch rollback, the main process killed at each mutating call -----------------------
restore_applied || bk_skip "cannot apply 1.1"
[ "$(current)" = acme-os-1.1 ] || bk_skip "1.1 is not in service after apply"
rm -f "$T/count" "$T/trace-rollback"
LD_PRELOAD=$SO BK_CRASH_COUNT=$T/count BK_CRASH_TRACE=$T/trace-rollback bc livepatch rollback >/dev/null 2>&1
rc=$?
total=$(cat "$T/count" 2>/dev/null || echo 0)
if [ "$rc" -ne 0 ] || [ "$total" -lt 5 ]; then
	not_ok "rollback runs under the crash injector (exit $rc, $total mutating calls)"
else
	after_crash rollback 0
	tested=0
	for n in $(seq $((1 + OFFSET)) "$STRIDE" "$total"); do
		tested=$((tested + 1))
		restore_applied || { failures+=("rollback@$n: cannot restore"); continue; }
		LD_PRELOAD=$SO BK_CRASH_AT=$n bc livepatch rollback >/dev/null 2>&1
		after_crash rollback "$n"
	done
	report "livepatch rollback" "$tested of $total"
	summary+=("rollback: $tested of $total")
fi

# --- the helpers killed (the main process goes on), and the whole tree killed ----------------
# helper_points MODE TOP TRACE: where to kill. helpers: the calls the main process makes while
# a helper is alive (the view helpers and the watchdog of the switch-over; a stage child
# killed at its own calls is what livepatch.sh's crash test already does, as BK_CRASH_MODE=self
# kills the process making the call). tree: those, and every 8th call of the stage child (the
# main process killed while it waits for the child, which dies with it).
helper_points() {
	awk -v mode="$1" -v top="$2" '
		$2 == top && $3 > 0 { print $1; next }
		mode == "tree" && $2 != top && (k++ % 8) == 0 { print $1 }' "$3" | sort -un |
		awk -v s="$STRIDE" -v o="$OFFSET" '{ a[NR - 1] = $0 }
			END { for (i = 0; i < NR; i++) if (i % s == o) { print a[i]; k++ }
			      if (!k && NR) print a[o % NR] }' | tr '\n' ' '
}
# apply: the starting point is 1.0 in service; which calls have helpers?
restore || bk_skip "cannot restore"
rm -f "$T/count" "$T/trace-apply"
LD_PRELOAD=$SO BK_CRASH_COUNT=$T/count BK_CRASH_TRACE=$T/trace-apply bc livepatch apply "$T/img/v11.bbi" >/dev/null 2>&1 &
wait $!
apply_top=$(awk 'NR == 1 { print $2 }' "$T/trace-apply")
rollback_top=$(awk 'NR == 1 { print $2 }' "$T/trace-rollback")
for mode in helpers tree; do
	pts=($(helper_points "$mode" "$apply_top" "$T/trace-apply"))
	if [ ${#pts[@]} -eq 0 ]; then
		not_ok "apply: no mutating call with a helper alive (trace: $(wc -l <"$T/trace-apply") calls)"
	else
		for n in "${pts[@]}"; do
			restore || { failures+=("apply/$mode@$n: cannot restore"); continue; }
			LD_PRELOAD=$SO BK_CRASH_AT=$n BK_CRASH_MODE=$mode bc livepatch apply "$T/img/v11.bbi" >/dev/null 2>&1
			after_crash "apply/$mode" "$n"
		done
		report "livepatch apply, $mode killed" "${#pts[@]}"
		summary+=("apply/$mode: ${#pts[@]}")
	fi
	pts=($(helper_points "$mode" "$rollback_top" "$T/trace-rollback"))
	if [ ${#pts[@]} -eq 0 ]; then
		not_ok "rollback: no mutating call with a helper alive"
	else
		for n in "${pts[@]}"; do
			restore_applied || { failures+=("rollback/$mode@$n: cannot restore"); continue; }
			LD_PRELOAD=$SO BK_CRASH_AT=$n BK_CRASH_MODE=$mode bc livepatch rollback >/dev/null 2>&1
			after_crash "rollback/$mode" "$n"
		done
		report "livepatch rollback, $mode killed" "${#pts[@]}"
		summary+=("rollback/$mode: ${#pts[@]}")
	fi
done
echo "crash points tested: $(IFS=,; echo "${summary[*]}" | sed 's/,/, /g')"
echo "leftovers looked for at every depth in: $(sed ':a;N;$!ba;s/\n/, /g' "$T/scanned")"
bk_done
