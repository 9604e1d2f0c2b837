#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Remediation (docs/remediation.md) on a loop-backed bootbank disk with signed bundles and a
# running workload: desired set/show/clear; every compliance state with its reason and exit
# code; each of the 16 pre-checks failing alone; the verdict of each live-patch mode when the live path is
# possible and when it is not; remediate on the live path (same pid, compliant after) and on the
# reboot path (reboot required, finished by boot --simulate + mark-good, then compliant);
# remediate killed at every one of its mutating calls on both paths (every 4th from a random
# offset under the sanitizers): recover, scan tells the truth, nothing frozen, no temp file or
# marker at any depth, the booted bank untouched, a second remediate completes. --no-fsr
# workloads: the pre-check's dry run gives the scan hooks what the live patch gives them and
# checks their claims (a workload no hook claims, or whose view is gone, fails 'workloads':
# enforce refuses before staging, auto takes the reboot path).
. "$(dirname "$0")/lib.sh"
bk_need_root
bk_live_sandbox bk-remed 200m flock
# Crash points of each path: every STRIDE-th mutating call from a random OFFSET (both printed,
# so a failure can be run again): all of them (about 270) in make check, a point takes about
# 0.4 s (live path) and 0.3 s (reboot path), under two minutes in all; every 4th under the
# sanitizers, where a point takes a few times as long. BK_CRASH_OFFSET picks the first.
STRIDE=${BK_CRASH_STRIDE:-1}
[ -n "$SO" ] && ldd "$BANKCTL" | grep -q libasan && STRIDE=${BK_CRASH_STRIDE:-4}
OFFSET=${BK_CRASH_OFFSET:-$((RANDOM % STRIDE))}
[ -z "$SO" ] || echo "# crash points: every ${STRIDE}th from offset $OFFSET (BK_CRASH_STRIDE=$STRIDE BK_CRASH_OFFSET=$OFFSET repeats this run)"
# crash_points TOTAL: the points of this run, 1-based
crash_points() { seq $((1 + OFFSET)) "$STRIDE" "$1"; }
# elapsed T0_NS POINTS: "S s, M s a point" since T0_NS
elapsed() { python3 -c 'import sys,time; s=(time.time_ns()-int(sys.argv[1]))/1e9; n=max(1,len(sys.argv[2].split())); print("%.0f s, %.1f s a point" % (s, s/n))' "$1" "$2"; }
bk_live_stop() { mountpoint -q "$root/var/lib/bootbank" && umount "$root/var/lib/bootbank"; return 0; }
conf() { bk_live_conf "$@"; }

# bundle FILE VERSION STAMP FROM [OPTION=VALUE...]: bk_live_bundle, build "bVERSION" by default
bundle() { bk_live_bundle "$1" "$2" "$3" "$4" build="b$2" "${@:5}"; }
bundle v10 1.0 a '"0.9"' || bk_skip "cannot build bundles"
bundle v11 1.1 b '"1.0"'
bundle v12 1.2 c '"1.1"'
bundle v20 2.0 d '"0.9"'
bundle v21 2.1 e '"0.9"'
bundle v05 0.5 f '"1.0"'
bundle v15 1.5 g '"1.0"' compatible=other-arm64
bundle v16 1.6 h '"1.0"' epoch=0
bundle v17 1.7 i '"1.0"' kernel_bytes=20000000
# Same name and version, another build (and so another manifest): not the desired image.
bundle v10r2 1.0 j '"0.9"' build=b1.0-r2
bundle v22 2.2 k '"2.0"'
bundle v11r2 1.1 k '"1.0"' build=b1.1-r2
bundle v20r2 2.0 l '"0.9"' build=b2.0-r2

truncate -s 48M "$disk"
bc disk init "$disk" --boot-size 8M --bank-size 16M >/dev/null || bk_skip "disk init failed"
for l in $(losetup -j "$disk" | cut -d: -f1); do bk_track_loop "$l"; done
bc stage "$T/img/v10.bbi" --activate >/dev/null && bc boot --simulate >/dev/null &&
	bc mark-good >/dev/null || bk_skip "cannot prepare: 1.0 booted in bank A"
bc rev restore >/dev/null || bk_skip "rev restore failed"
for v in v11 v12 v20 v21 v05 v15 v16 v17; do
	bc depot import "$T/img/$v.bbi" >/dev/null || bk_skip "cannot import $v"
done

mkdir -p "$cg/app"
start_reader
bc workload add app --cgroup "$cgname/app" --view "$view" >/dev/null || bk_skip "workload add failed"
mkdir -p "$root/etc/bootbank/livepatch.d"
cat >"$root/etc/bootbank/livepatch.d/50-log" <<EOF2
#!/bin/sh
echo "\$1 dry=\${BOOTBANK_DRY_RUN:-0} \$BOOTBANK_OLD_VERSION \$BOOTBANK_NEW_VERSION" >>"$T/hooks.log"
echo "hook saw \$1"
EOF2
chmod 755 "$root/etc/bootbank/livepatch.d/50-log"
rev_of_app() { bc --json workload list | jq1 'd[0].get("revision", "")'; }
next_boot() { bc explain-next-boot --json | jq1 'd["next"]["bank"]'; }
scan_state() { bc scan --json | jq1 'd["state"]'; }
nevents() { bc events --json -n 0 | jq1 'len(d)'; }

# --- desired state -------------------------------------------------------------------------
expect_exit 23 "scan without a desired image: unknown, exit 23" bc scan
check "  ... says why" grep -q "reason .*no desired image is set" <<<"$OUT"
expect_exit 4 "desired set of an image not in the depot: exit 4" bc desired set acme-os 9.9
check "  ... names it" grep -q "no image 'acme-os 9.9' in the depot" <<<"$ERR"
expect_exit 2 "desired set with an unknown mode: exit 2" bc desired set acme-os 1.1 --live-patch-mode sometimes
expect_exit 0 "desired set acme-os 1.1 (mode from system.conf: auto)" bc desired set acme-os 1.1
check "  ... default mode auto" grep -q "live-patch mode auto" <<<"$OUT"
printf '[remediation]\nlive-patch-mode = disable\n' >>"$root/etc/bootbank/system.conf"
expect_exit 0 "desired set takes system.conf's [remediation] live-patch-mode" bc desired set acme-os 1.1
check "  ... disable" grep -q "live-patch mode disable" <<<"$OUT"
conf
expect_exit 0 "desired clear" bc desired clear
check "desired.json is gone" test ! -e "$root/var/lib/bootbank/desired.json"
expect_exit 0 "desired set acme-os 1.1 --live-patch-mode enforce" bc desired set acme-os 1.1 --live-patch-mode enforce
expect_exit 0 "desired show --json" bc desired show --json
check "  ... name, version, mode" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if (d["name"],d["version"],d["live_patch_mode"])==("acme-os","1.1","enforce") else 1)' "$OUT"
check "no temp file left in the state directory" bash -c "! ls -a '$root/var/lib/bootbank' | grep -q '^\.#'"

# --- compliance states ---------------------------------------------------------------------
expect_exit 20 "scan: non-compliant, exit 20" bc scan
check "  ... what differs: version, in service 1.0 booted from A, desired 1.1" grep -q "version differs: in service acme-os 1.0 (build b1.0) (booted from bank A), desired acme-os 1.1" <<<"$OUT"
expect_exit 20 "scan --json: non-compliant" bc scan --json
check "  ... state, exit code, banks" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["state"]=="non-compliant" and d["exit_code"]==20 and d["banks"]["A"]["booted"] and d["booted"]=="A" else 1)' "$OUT"
bc depot import "$T/img/v10r2.bbi" >/dev/null && bc desired set acme-os 1.0 >/dev/null
expect_exit 20 "scan, desired 1.0 but the depot's 1.0 is another build than the booted one: non-compliant, exit 20" bc scan
check "  ... the reason names the build" grep -q "build differs: in service acme-os 1.0 (build b1.0) (booted from bank A), desired acme-os 1.0 (build b1.0-r2)" <<<"$OUT"
bc depot remove acme-os 1.0 >/dev/null
bc desired set acme-os 1.1 --live-patch-mode enforce >/dev/null
incompat() { # VERSION DESC PATTERN (desired set fails for an image not in the depot: kept)
	bc desired set acme-os "$1" >/dev/null 2>&1
	expect_exit 22 "scan, desired $1: incompatible, exit 22 ($2)" bc scan
	check "  ... reason: $2" grep -q "$3" <<<"$OUT"
}
incompat 1.5 "another compatible" "is for 'other-arm64', this host is 'acme-x86_64'"
incompat 1.6 "below the security floor" "has security epoch 0, below the floor 1"
incompat 0.5 "a downgrade" "0.5 is older than 1.0, booted: a downgrade"
incompat 1.7 "bigger than a bank" "needs .* MiB, bank B has 16.0 MiB"
bc desired set acme-os 2.1 >/dev/null
bc depot remove acme-os 2.1 >/dev/null
incompat 2.1 "missing from the depot" "acme-os 2.1 is not in the depot"
expect_exit 22 "remediate refuses an incompatible image: exit 22" bc remediate
check "  ... with the reason" grep -q "incompatible: acme-os 2.1 is not in the depot" <<<"$ERR"
bc depot import "$T/img/v21.bbi" >/dev/null
mv "$root/var/lib/bootbank/bootstate.json" "$T/bootstate.json"
printf 'garbage' >"$root/var/lib/bootbank/bootstate.json"
expect_exit 23 "scan with a corrupt boot state: unknown, exit 23" bc scan
check "  ... says why" grep -q "cannot read the boot state: corrupt boot state" <<<"$OUT"
mv "$T/bootstate.json" "$root/var/lib/bootbank/bootstate.json"

# --- pre-check: each check failing alone ---------------------------------------------------
bc desired set acme-os 1.1 --live-patch-mode enforce >/dev/null
pre() { bc precheck --json "$@" >"$T/pre.json"; echo $? >"$T/pre.rc"; }
failing() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(c["name"] for c in d["checks"] if c["result"]=="fail"))' "$T/pre.json"; }
reason_of() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print([c["reason"] for c in d["checks"] if c["name"]==sys.argv[2]][0])' "$T/pre.json" "$1"; }
expect_exit 0 "precheck: everything passes (text)" bc precheck
check "  ... live path: possible, reboot path: possible" bash -c "grep -qx 'live path: possible' <<<\"\$0\" && grep -qx 'reboot path: possible' <<<\"\$0\"" "$OUT"
check "  ... the scan hooks ran with BOOTBANK_DRY_RUN=1" grep -qx "scan dry=1 1.0 1.1" "$T/hooks.log"
pre
check "  ... no check fails, 16 checks, each pass or skip with a reason" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
sys.exit(0 if len(d["checks"]) >= 15 and all(c["result"] in ("pass","skip") and c["reason"] for c in d["checks"]) else 1)' "$T/pre.json"
alone() { # CHECK DESC PATTERN
	pre
	check "precheck: '$1' fails alone ($2)" test "$(failing)" = "$1"
	check "  ... reason: $(reason_of "$1" 2>/dev/null | cut -c1-80)" grep -q "$3" <<<"$(reason_of "$1" 2>/dev/null)"
}
cp "$root/var/lib/bootbank/depot/acme-os_1.1.bbi" "$T/good.bbi"
off=$("$BANKCTL" --json image info "$T/good.bbi" | jq1 '[p for p in d["manifest"]["payloads"] if p["live"]][0]["offset"] + 100')
printf 'X' | dd of="$root/var/lib/bootbank/depot/acme-os_1.1.bbi" bs=1 seek="$off" conv=notrunc status=none
alone signature "a corrupt payload in the depot" "SHA-256 mismatch"
cp "$T/good.bbi" "$root/var/lib/bootbank/depot/acme-os_1.1.bbi"
conf other-arm64
alone compatible "another compatible" "the image is for 'acme-x86_64', this host is 'other-arm64'"
conf
bc desired set acme-os 1.6 >/dev/null
alone "security floor" "epoch below the floor" "security epoch 0 is below the floor 1"
bc desired set acme-os 0.5 >/dev/null
alone downgrade "older than the booted" "0.5 is older than 1.0, booted: a downgrade"
bc desired set acme-os 1.7 >/dev/null
alone "bank size" "bigger than the bank" "bank B too small"
bc desired set acme-os 1.1 --live-patch-mode enforce >/dev/null
mount --bind -o ro "$root/var/lib/bootbank" "$root/var/lib/bootbank" 2>/dev/null &&
	mount -o remount,bind,ro "$root/var/lib/bootbank"
alone "boot state store" "a read-only loader environment" "is on a read-only filesystem"
umount "$root/var/lib/bootbank"
cat >"$root/var/lib/bootbank/maintenance.json" <<EOF2
{ "operation": "livepatch", "reason": "live patch from 'gone' to 'acme-os-1.0'", "from": "gone",
  "to": "acme-os-1.0", "phase": "switching", "started": 1700000000, "pid": 1 }
EOF2
alone "maintenance mode" "partial maintenance mode" "busy: remediation refused, partial maintenance mode since"
rm "$root/var/lib/bootbank/maintenance.json"
flock -o "$root/run/bootbank/lock" sleep 30 &
holder=$!
pids+=("$holder")
sleep 0.3
alone lock "another operation holds the lock" "another bootbank operation .*holds"
kill "$holder"; wait "$holder" 2>/dev/null
cp "$root/var/lib/bootbank/bootstate.json" "$T/bootstate.json"
python3 - "$root/var/lib/bootbank/bootstate.json" <<'EOF2'
import json, sys
d = json.load(open(sys.argv[1]))
d["banks"]["A"]["state"] = "trying"; d["banks"]["A"]["tries_left"] = 1
json.dump(d, open(sys.argv[1], "w"))
EOF2
alone "booted bank" "a trial boot" "bank A is trying, not good: never remediate from a trial boot"
cp "$T/bootstate.json" "$root/var/lib/bootbank/bootstate.json"
bc desired set acme-os 2.0 --live-patch-mode enforce >/dev/null
alone "live-patch base" "not a base of the version in service" "cannot live-patch revision 'acme-os-1.0' (version 1.0)"
bc desired set acme-os 1.1 --live-patch-mode enforce >/dev/null
cat >"$root/etc/bootbank/livepatch.d/40-veto" <<'EOF2'
#!/bin/sh
[ "$BOOTBANK_DRY_RUN" = 1 ] && { echo "maintenance window closed" >&2; exit 10; }
exit 0
EOF2
chmod 755 "$root/etc/bootbank/livepatch.d/40-veto"
alone "scan hooks" "a scan hook vetoes (dry run)" "vetoed the live patch: maintenance window closed (dry run)"
rm "$root/etc/bootbank/livepatch.d/40-veto"
mkdir -p "$cg/nofsr"
sleep 60 &
nofsr=$!
pids+=("$nofsr")
echo "$nofsr" >"$cg/nofsr/cgroup.procs"
bc workload add nofsr --cgroup "$cgname/nofsr" --view /opt/acme --no-fsr >/dev/null
mv "$root/etc/bootbank/livepatch.d" "$T/hooks.d"
alone workloads "a --no-fsr workload no hook can restart" "cannot be suspended"
mv "$T/hooks.d" "$root/etc/bootbank/livepatch.d"
bc workload remove nofsr >/dev/null
kill "$nofsr"; wait "$nofsr" 2>/dev/null
bc desired clear >/dev/null
alone "desired image" "no desired image is set" "no desired image is set (bankctl desired set)"
check "  ... exit 24" test "$(cat "$T/pre.rc")" = 24
bc desired set acme-os 1.1 --live-patch-mode enforce >/dev/null
bc depot remove acme-os 1.1 >/dev/null
alone depot "the desired image removed from the depot" "the desired image is not in the depot"
bc depot import "$T/img/v11.bbi" >/dev/null
bc rev add acme-os-1.1 "$T/src-v11/app.squashfs" --image acme-os --version 1.1 >/dev/null
alone "revision room" "a revision of the new id from another file" "revision 'acme-os-1.1' exists and does not come from bank B"
umount "$root/run/bootbank/rev/acme-os-1.1" && rmdir "$root/run/bootbank/rev/acme-os-1.1" &&
	rm "$root/var/lib/bootbank/revisions/acme-os-1.1.json"

# --- the verdict of each mode, live possible (1.1) and impossible (2.0) ----------------------
verdict() { # VERSION MODE EXIT CHOSEN
	bc desired set acme-os "$1" >/dev/null
	pre --live-patch-mode "$2"
	check "precheck $1 --live-patch-mode $2: exit $3, chooses ${4:-nothing}" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
sys.exit(0 if int(open(sys.argv[2]).read()) == int(sys.argv[3]) and d["chosen"] == (sys.argv[4] or None) and d["mode"] == sys.argv[5] else 1)' \
		"$T/pre.json" "$T/pre.rc" "$3" "${4:-}" "$2"
}
verdict 1.1 disable 0 reboot
verdict 1.1 auto 0 live
verdict 1.1 enforce 0 live
verdict 2.0 disable 0 reboot
verdict 2.0 auto 0 reboot
verdict 2.0 enforce 24 ""
bc desired set acme-os 2.0 --live-patch-mode enforce >/dev/null
expect_exit 24 "precheck text: enforce with the live path impossible, exit 24" bc precheck
check "  ... live path: impossible (why)" grep -q "^live path: impossible (live-patch base: acme-os 2.0 cannot live-patch" <<<"$OUT"
n0=$(nevents)
expect_exit 24 "remediate 2.0 with enforce: refused, exit 24" bc remediate
check "  ... with the reasons" grep -q "remediation refused: live-patch mode enforce: the live path is impossible, refused: live-patch base" <<<"$ERR"
check "  ... the task log shows the failing check" grep -q "fail  live-patch base" <<<"$OUT"
check "nothing changed: bank A boots next, 1.0 in service" bash -c "test \"$(next_boot)\" = A && test \"$(rev_of_app)\" = acme-os-1.0"

# --- crash injection, live path ------------------------------------------------------------
bc desired set acme-os 1.1 --live-patch-mode enforce >/dev/null
pid0=$(cat "$cg/app/cgroup.procs" | head -n1)
# leftovers: temp files of atomic writes and the staging marker, at any depth of the state and
# run directories (not into the bank and revision mounts: -xdev)
leftovers() { find "$root/var/lib/bootbank" "$root/run/bootbank" -xdev \( -name '.#*' -o -name staging.json \) -print 2>/dev/null; }
if [ -n "$SO" ]; then
	failures=()
	hashA=$(sha256sum <"$root/run/bootbank/bank/A/vmlinuz" 2>/dev/null | cut -d' ' -f1)
	[ -n "$hashA" ] || failures+=("the booted bank A's kernel cannot be read at run/bootbank/bank/A")
	rm -f "$T/count"
	LD_PRELOAD=$SO BK_CRASH_COUNT=$T/count bc remediate >/dev/null 2>&1
	rc=$?
	total=$(cat "$T/count" 2>/dev/null || echo 0)
	[ "$(scan_state)" = compliant ] || failures+=("@0: not compliant after a remediate under the injector (exit $rc)")
	bc livepatch rollback >/dev/null 2>&1
	points=$(crash_points "$total")
	t0=$(date +%s%N)
	for n in $points; do
		LD_PRELOAD=$SO BK_CRASH_AT=$n bc remediate >/dev/null 2>&1
		out=$(bc --wait recover 2>&1) || failures+=("@$n: recover: $out")
		st=$(scan_state)
		cur=$(readlink "$root/run/bootbank/current" | sed 's|^rev/||')
		case "$st:$cur" in
		compliant:acme-os-1.1 | non-compliant:acme-os-1.0) ;;
		*) failures+=("@$n: scan says '$st' with '$cur' in service") ;;
		esac
		[ "$(rev_of_app)" = "$cur" ] || failures+=("@$n: the workload is on '$(rev_of_app)', current '$cur'")
		[ ! -e "$root/var/lib/bootbank/maintenance.json" ] || failures+=("@$n: maintenance flag left")
		grep -qx 'frozen 0' "$cg/app/cgroup.events" || failures+=("@$n: the workload is left frozen")
		left=$(leftovers)
		[ -z "$left" ] || failures+=("@$n: left: $left")
		[ "$(sha256sum <"$root/run/bootbank/bank/A/vmlinuz" 2>/dev/null | cut -d' ' -f1)" = "$hashA" ] || failures+=("@$n: the booted bank A changed")
		bc remediate >"$T/re.out" 2>&1 || failures+=("@$n: second remediate: $(tail -n2 "$T/re.out")")
		[ "$(scan_state)" = compliant ] || failures+=("@$n: not compliant after the second remediate")
		bc livepatch rollback >/dev/null 2>&1 || failures+=("@$n: rollback to reset failed")
	done
	if [ ${#failures[@]} -eq 0 ] && [ "$total" -gt 10 ]; then
		ok "remediate (live path) killed at $(wc -w <<<"$points") of its $total mutating calls (every ${STRIDE}th from $((OFFSET + 1)), $(elapsed "$t0" "$points")): recovered, scan tells the truth, nothing frozen or left over, bank A untouched, a second remediate completes"
	else
		for f in "${failures[@]:0:10}"; do not_ok "live crash $f"; done
		not_ok "live path crash loop: ${#failures[@]} failures over $total calls"
	fi
fi

# --- remediate: the live path --------------------------------------------------------------
n0=$(nevents)
expect_exit 0 "remediate 1.1 (enforce): the live path, exit 0" bc remediate
log=$OUT
check "task log: header with the task id" grep -Eq "^remediate to 'acme-os 1.1' \(task [0-9a-f]{16}\)" <<<"$log"
for s in "compliance scan" pre-check "maintenance mode" stage activate "mount revision" "scan hooks" switch-over "apply hooks" "compliance check"; do
	check "task log: step '$s' with its time" grep -Eq "^  [0-9:.]{12}  $s +ok +[0-9.]+ ms" <<<"$log"
done
check "task log: entering and exiting partial maintenance mode" bash -c "grep -q 'entering partial maintenance mode' <<<\"\$0\" && grep -q 'exiting partial maintenance mode' <<<\"\$0\"" "$log"
check "task log: hook messages" grep -q "hook saw apply" <<<"$log"
check "task log: the last line says compliant" bash -c "tail -n1 <<<\"\$0\" | grep -q '^compliant: acme-os 1.1 (build b1.1) is in service (live-patched'" "$log"
check "the running workload switched (same pid) to 1.1" bash -c "test \"$(rev_of_app)\" = acme-os-1.1 && grep -qx '$pid0' '$cg/app/cgroup.procs'"
bc events --json -n 0 >"$T/events.json"
check "every step is an event of one task" python3 -c '
import json, sys
ev = json.load(open(sys.argv[1]))[int(sys.argv[2]):]
tasks = set(e["task"] for e in ev)
steps = [e["step"] for e in ev]
sys.exit(0 if len(tasks) == 1 and "compliance scan" in steps and "switch-over" in steps and "compliance check" in steps else 1)' "$T/events.json" "$n0"
expect_exit 0 "scan: compliant, exit 0" bc scan
check "  ... live-patched, bank B boots next and holds it" grep -q "acme-os 1.1 (build b1.1) is in service (live-patched: revision 'acme-os-1.1' from bank B, booted bank A); bank B, which boots next, holds it" <<<"$OUT"
bc depot remove acme-os 1.1 >/dev/null && bc depot import "$T/img/v11r2.bbi" >/dev/null
expect_exit 20 "scan, the depot's 1.1 another build than the live-patched 1.1: non-compliant, exit 20" bc scan
check "  ... the reason names the build" grep -q "build differs: in service acme-os 1.1 (build b1.1) (live-patched: revision 'acme-os-1.1' from bank B, booted bank A), desired acme-os 1.1 (build b1.1-r2)" <<<"$OUT"
bc depot remove acme-os 1.1 >/dev/null && bc depot import "$T/img/v11.bbi" >/dev/null
n0=$(nevents)
expect_exit 0 "remediate again: nothing to do, exit 0" bc remediate
check "  ... says so" grep -q "nothing to do" <<<"$OUT"
check "  ... and records no event" test "$(nevents)" = "$n0"
bc desired set acme-os 1.2 --live-patch-mode enforce >/dev/null
alone "alternate bank" "bank B holds the revision in service" "bank B holds the revision in service ('acme-os-1.1')"

# --- reboot into bank B, then the reboot path to 2.0 -----------------------------------------
bc desired set acme-os 1.1 >/dev/null
kill -9 "$reader"; wait "$reader" 2>/dev/null; reader=
unmount_all
find "$root/run/bootbank" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
bc boot --simulate >/dev/null && bc mark-good >/dev/null && bc rev restore >/dev/null
expect_exit 0 "after the reboot into bank B and mark-good: compliant" bc scan
check "  ... booted from bank B" grep -q "in service       acme-os 1.1 (build b1.1), booted from bank B" <<<"$OUT"
start_reader
hashB=$(sha256sum <"$root/run/bootbank/bank/B/vmlinuz" 2>/dev/null | cut -d' ' -f1)

bc desired set acme-os 2.0 --live-patch-mode auto >/dev/null
if [ -n "$SO" ]; then
	failures=()
	# Reset between runs: desired alternates between 2.0 and 2.1, both staged into bank A.
	rm -f "$T/count"
	LD_PRELOAD=$SO BK_CRASH_COUNT=$T/count bc remediate >/dev/null 2>&1
	rc=$?
	total=$(cat "$T/count" 2>/dev/null || echo 0)
	[ "$rc" = 21 ] || failures+=("@0: exit $rc under the injector, not 21")
	points=$(crash_points "$total")
	t0=$(date +%s%N)
	v=2.1
	for n in $points; do
		bc desired set acme-os "$v" --live-patch-mode auto >/dev/null
		LD_PRELOAD=$SO BK_CRASH_AT=$n bc remediate >/dev/null 2>&1
		out=$(bc --wait recover 2>&1) || failures+=("@$n: recover: $out")
		# The truth, from status and explain-next-boot: pending exactly when bank A holds
		# the desired version, staged, and boots next; non-compliant otherwise.
		bc scan --json >"$T/scan.json"
		bc status --json >"$T/status.json"
		bc explain-next-boot --json >"$T/explain.json"
		why=$(python3 - "$T/scan.json" "$T/status.json" "$T/explain.json" "$v" <<'EOF2'
import json, sys
sc, st, ex = (json.load(open(f)) for f in sys.argv[1:4])
a = st["banks"]["A"] if "banks" in st else None
rec = (st.get("content") or {}).get("A") if isinstance(st.get("content"), dict) else None
state_a = st["boot"]["banks"]["A"]["state"]
nb = ex["next"]["bank"]
holds = sc["banks"]["A"]["image"] or ""
want = "compliant-pending-reboot" if (nb == "A" and state_a == "staged" and holds.startswith("acme-os %s " % sys.argv[4])) else "non-compliant"
if sc["state"] != want:
    print("scan says %s, expected %s (bank A %s holding %r, bank %s boots next)" % (sc["state"], want, state_a, holds, nb))
EOF2
)
		[ -z "$why" ] || failures+=("@$n: $why")
		left=$(leftovers)
		[ -z "$left" ] || failures+=("@$n: temp files or a staging marker left: $left")
		bc remediate >"$T/re.out" 2>&1
		rc=$?
		[ "$rc" = 21 ] || failures+=("@$n: second remediate exit $rc: $(tail -n2 "$T/re.out")")
		[ "$(scan_state)" = compliant-pending-reboot ] || failures+=("@$n: not pending reboot after the second remediate")
		[ "$(sha256sum <"$root/run/bootbank/bank/B/vmlinuz" | cut -d' ' -f1)" = "$hashB" ] || failures+=("@$n: the booted bank B changed")
		v=$([ "$v" = 2.1 ] && echo 2.0 || echo 2.1)
	done
	if [ ${#failures[@]} -eq 0 ] && [ "$total" -gt 10 ]; then
		ok "remediate (reboot path) killed at $(wc -w <<<"$points") of its $total mutating calls (every ${STRIDE}th from $((OFFSET + 1)), $(elapsed "$t0" "$points")): recovered, scan tells the truth, a second remediate completes, bank B untouched"
	else
		for f in "${failures[@]:0:10}"; do not_ok "reboot crash $f"; done
		not_ok "reboot path crash loop: ${#failures[@]} failures over $total calls"
	fi
	bc desired set acme-os 2.1 --live-patch-mode auto >/dev/null
	bc remediate >/dev/null 2>&1 # now 2.1 is staged: 2.0 below is a fresh stage
fi
bc desired set acme-os 2.0 --live-patch-mode auto >/dev/null
n0=$(nevents)
expect_exit 21 "remediate 2.0 (auto, not live-patchable): the reboot path, exit 21" bc remediate
log=$OUT
bc events --json -n 0 >"$T/events.json"
check "the reboot path's events: one task, stage and activate among them" python3 -c '
import json, sys
ev = json.load(open(sys.argv[1]))[int(sys.argv[2]):]
steps = [e["step"] for e in ev]
sys.exit(0 if len(set(e["task"] for e in ev)) == 1 and "stage" in steps and "activate" in steps and "reboot required" in steps else 1)' "$T/events.json" "$n0"
for s in "compliance scan" pre-check stage activate "compliance check" "reboot required"; do
	check "task log: step '$s'" grep -Eq "^  [0-9:.]{12}  $s +ok " <<<"$log"
done
check "  ... the pre-check chose the reboot path" grep -q "live-patch mode auto: the reboot path (the live path is impossible)" <<<"$log"
check "  ... ends with 'reboot required'" bash -c "tail -n1 <<<\"\$0\" | grep -q '^reboot required: acme-os 2.0'" "$log"
check "bank A boots next, 1.1 still in service" bash -c "test \"$(next_boot)\" = A && test \"$(rev_of_app)\" = acme-os-1.1"
expect_exit 21 "scan: compliant-pending-reboot, exit 21" bc scan
check "  ... staged and activated in bank A" grep -q "acme-os 2.0 (build b2.0) is staged and activated in bank A, which boots next" <<<"$OUT"
bc depot remove acme-os 2.0 >/dev/null && bc depot import "$T/img/v20r2.bbi" >/dev/null
expect_exit 20 "scan, the depot's 2.0 another build than the one staged in bank A: non-compliant, exit 20" bc scan
check "  ... the reason names the build" grep -q "version differs: in service acme-os 1.1 (build b1.1) (booted from bank B), desired acme-os 2.0 (build b2.0-r2); bank A holds acme-os 2.0 (build b2.0), staged" <<<"$OUT"
pre
check "  ... precheck: bank A's 2.0 is not the desired image staged intact" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["reboot"]["staged_intact"] is False and d["reboot"]["possible"] else 1)' "$T/pre.json"
bc depot remove acme-os 2.0 >/dev/null && bc depot import "$T/img/v20.bbi" >/dev/null
expect_exit 21 "remediate again: nothing staged again, reboot required, exit 21" bc remediate
check "  ... no stage step" bash -c "! grep -Eq '^  [0-9:.]{12}  stage ' <<<\"\$0\"" "$OUT"
expect_exit 1 "remediate --reboot in a sandbox is refused" bc remediate --reboot
check "  ... says why" grep -q "reboot refused: the root .* is a sandbox" <<<"$ERR"
kill -9 "$reader"; wait "$reader" 2>/dev/null; reader=
unmount_all
find "$root/run/bootbank" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
expect_exit 0 "boot --simulate boots bank A" bc boot --simulate
expect_exit 0 "scan after the boot: compliant (on trial)" bc scan
check "  ... on trial" grep -q "on trial: mark-good confirms it" <<<"$OUT"
expect_exit 0 "mark-good" bc mark-good
expect_exit 0 "scan: compliant, booted from bank A" bc scan
check "  ... 2.0 booted from bank A" grep -q "in service       acme-os 2.0 (build b2.0), booted from bank A" <<<"$OUT"

# --- stage --desired, then remediate only activates ----------------------------------------
bc desired set acme-os 2.1 --live-patch-mode disable >/dev/null
expect_exit 0 "stage --desired writes the desired image into the alternate bank" bc stage --desired
check "  ... bank B" grep -q "bank B" <<<"$OUT"
expect_exit 0 "precheck: staged already" bc precheck
check "  ... says so" grep -q "reboot path: possible (staged already: remediate only activates)" <<<"$OUT"
expect_exit 21 "remediate --json: the reboot path without a stage, exit 21" bc remediate --json
check "--json: JSON Lines of steps, the stage skipped, then the result" python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.argv[1].splitlines()]
steps = {l["step"]: l["result"] for l in lines if l["event"] == "step"}
res = lines[-1]
ok = res["event"] == "result" and res["exit_code"] == 21 and res["outcome"] == "reboot required" and res["path"] == "reboot"
ok = ok and steps.get("stage") == "skipped" and steps.get("activate") == "ok" and res["after"]["state"] == "compliant-pending-reboot"
sys.exit(0 if ok else 1)' "$OUT"
bc desired set acme-os 2.0 >/dev/null
expect_exit 20 "desired 2.0 in service, but bank B (2.1) boots next: non-compliant, exit 20" bc scan
check "  ... says so" grep -q "acme-os 2.0 (build b2.0) is in service (booted from bank A), but the next boot would boot bank B (acme-os 2.1 (build b2.1))" <<<"$OUT"

# --- the reboot path after a rolled-back live patch: its revision out of the alternate bank ---
# is stale (stage is about to overwrite that bank) and is released, not a busy bank mid-way
bc depot import "$T/img/v22.bbi" >/dev/null
expect_exit 0 "rev restore: the booted 2.0's live payload in service" bc rev restore
bc desired set acme-os 2.2 --live-patch-mode enforce >/dev/null
expect_exit 0 "remediate 2.2 (enforce): the live path from 2.0" bc remediate
expect_exit 0 "livepatch rollback: 2.0 in service again, 2.2's revision out of bank B stays mounted" bc livepatch rollback
check "  ... the revision out of bank B is still mounted" mountpoint -q "$root/run/bootbank/rev/acme-os-2.2"
bc desired set acme-os 2.1 --live-patch-mode disable >/dev/null
expect_exit 21 "remediate 2.1 (disable): the reboot path stages bank B, exit 21" bc remediate
check "  ... the stage step released the stale revision" grep -Eq "^  [0-9:.]{12}  stage +ok .*a stale revision out of it released" <<<"$OUT"
check "  ... which is unmounted and forgotten" bash -c "! mountpoint -q '$root/run/bootbank/rev/acme-os-2.2' && test ! -e '$root/var/lib/bootbank/revisions/acme-os-2.2.json'"
expect_exit 21 "scan: compliant-pending-reboot, exit 21" bc scan

# --- --no-fsr workloads: the pre-check asks the scan hooks as the live patch does -----------------
# Two workloads that cannot be suspended, each in its own mount namespace with its view a plain
# directory; a scan hook claims what $T/claims says ("all": every name of
# BOOTBANK_NOFSR_WORKLOADS, the way a real hook learns them) and logs what it was given.
bc desired set acme-os 2.2 --live-patch-mode enforce >/dev/null
for w in vm1 vm2; do
	mkdir -p "$cg/$w" "$T/$w-view"
	(
		echo "$BASHPID" >"$cg/$w/cgroup.procs"
		exec unshare -m --propagation private sleep 600
	) &
	pids+=("$!")
	eval "pid_$w=$!"
done
for _ in $(seq 1 100); do [ -s "$cg/vm1/cgroup.procs" ] && [ -s "$cg/vm2/cgroup.procs" ] && break; sleep 0.05; done
bc workload add vm1 --cgroup "$cgname/vm1" --view "$T/vm1-view" --no-fsr >/dev/null
bc workload add vm2 --cgroup "$cgname/vm2" --view "$T/vm2-view" --no-fsr >/dev/null
cat >"$root/etc/bootbank/livepatch.d/40-restart" <<EOF2
#!/bin/sh
echo "\$1 dry=\${BOOTBANK_DRY_RUN:-0} old=\$BOOTBANK_OLD_REV/\$BOOTBANK_OLD_VERSION new=\$BOOTBANK_NEW_REV/\$BOOTBANK_NEW_VERSION nofsr=\$BOOTBANK_NOFSR_WORKLOADS restart=\$BOOTBANK_RESTART_WORKLOADS" >>"$T/restart.log"
[ "\$1" = scan ] || exit 0
claims=\$(cat "$T/claims")
[ "\$claims" = all ] && claims=\$BOOTBANK_NOFSR_WORKLOADS
for w in \$claims; do echo "restart \$w"; done
EOF2
chmod 755 "$root/etc/bootbank/livepatch.d/40-restart"
echo vm1 >"$T/claims"
pre
check "precheck, a scan hook claims vm1 only: exit 24, 'workloads' fails alone" bash -c "test \"\$(cat '$T/pre.rc')\" = 24 && test \"$(failing)\" = workloads"
check "  ... naming vm2, not vm1" bash -c "grep -q \"workload 'vm2' cannot be suspended (--no-fsr) and no hook restarts it\" <<<\"\$0\" && ! grep -q vm1 <<<\"\$0\"" "$(reason_of workloads)"
check "  ... the dry run gave the scan hook the --no-fsr workloads, the revisions and versions" grep -qx "scan dry=1 old=acme-os-2.0/2.0 new=acme-os-2.2/2.2 nofsr=vm1 vm2 restart=" "$T/restart.log"
expect_exit 24 "precheck text: live path impossible" bc precheck
check "  ... says why, naming vm2" grep -q "^live path: impossible (workloads: workload 'vm2' cannot be suspended (--no-fsr) and no hook restarts it" <<<"$OUT"
sync
hash0=$(sha256sum "$disk" "$root/var/lib/bootbank/bootstate.json" | sha256sum)
: >"$T/restart.log"
expect_exit 24 "remediate 2.2 (enforce), vm2 claimed by no hook: refused, exit 24" bc remediate
check "  ... with the reason" grep -q "remediation refused: live-patch mode enforce: the live path is impossible, refused: workloads: workload 'vm2' cannot be suspended" <<<"$ERR"
check "  ... before anything was staged: no stage, no maintenance mode step" bash -c "! grep -Eq '^  [0-9:.]{12}  (stage|activate|maintenance mode|mount revision) ' <<<\"\$0\"" "$OUT"
check "  ... only the dry run asked the hooks" bash -c "test \"\$(grep -c . '$T/restart.log')\" = 1 && grep -q '^scan dry=1 ' '$T/restart.log'"
sync
check "  ... the banks (the whole disk) and the boot state are byte-identical" test "$(sha256sum "$disk" "$root/var/lib/bootbank/bootstate.json" | sha256sum)" = "$hash0"
echo all >"$T/claims"
: >"$T/restart.log"
expect_exit 0 "precheck, the scan hook claims every BOOTBANK_NOFSR_WORKLOADS name: live path possible" bc precheck
check "  ... live path: possible" grep -qx "live path: possible" <<<"$OUT"
check "  ... workloads pass, the --no-fsr ones claimed" grep -Eq "^pass +workloads +live +0 running workloads can be suspended; --no-fsr vm1 vm2: claimed by the scan hooks \(dry run\)$" <<<"$OUT"
rmdir "$T/vm2-view"
pre
check "precheck, vm2's view gone: 'workloads' fails alone" test "$(failing)" = workloads
check "  ... naming the view" grep -q "^workload 'vm2': view '$T/vm2-view' does not exist in its mount namespace$" <<<"$(reason_of workloads)"
mkdir "$T/vm2-view"
: >"$T/restart.log"
expect_exit 0 "remediate 2.2 (enforce), both claimed: the live path, exit 0" bc remediate
check "  ... the switch-over did not freeze them: restarted by hook" grep -q "restarted by hook" <<<"$OUT"
check "  ... the dry run and the real scan hook were given the same, but BOOTBANK_DRY_RUN" bash -c "test \"\$(grep '^scan ' '$T/restart.log' | sed 's/ dry=[01] / /' | uniq | wc -l)\" = 1 && test \"\$(grep -c '^scan ' '$T/restart.log')\" = 2"
check "  ... the apply hook told to restart both" grep -qx "apply dry=0 old=acme-os-2.0/2.0 new=acme-os-2.2/2.2 nofsr=vm1 vm2 restart=vm1 vm2" "$T/restart.log"
check "  ... their views show 2.2, same pids" bash -c "grep -qx rev=k /proc/$pid_vm1/root$T/vm1-view/f000 && grep -qx rev=k /proc/$pid_vm2/root$T/vm2-view/f000 && grep -qx $pid_vm1 '$cg/vm1/cgroup.procs' && grep -qx $pid_vm2 '$cg/vm2/cgroup.procs'"
expect_exit 0 "livepatch rollback: 2.0 in service again, bank B 2.2 staged, not activated" bc livepatch rollback
echo vm1 >"$T/claims"
expect_exit 21 "remediate 2.2 (auto), vm2 claimed by no hook: falls back to the reboot path, exit 21" bc remediate --live-patch-mode auto
check "  ... the pre-check chose the reboot path, naming vm2" bash -c "grep -q 'live-patch mode auto: the reboot path (the live path is impossible)' <<<\"\$0\" && grep -q \"live path: impossible (workloads: workload 'vm2' cannot be suspended\" <<<\"\$0\"" "$OUT"
check "  ... ends with 'reboot required'" bash -c "tail -n1 <<<\"\$0\" | grep -q '^reboot required: acme-os 2.2'" "$OUT"
expect_exit 21 "scan: compliant-pending-reboot, exit 21" bc scan
bk_done
