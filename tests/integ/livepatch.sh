#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankctl livepatch apply|rollback on a loop-backed bootbank disk with real signed bundles:
# `rev restore` mounts the booted bank's own live payload as the base revision; apply stages
# the image into the alternate bank, activates it, mounts the revision from the bank's copy and
# switches a reader workload over; refusals change nothing; a second patch while the bank holds
# the one in service is refused; rollback switches back and undoes the activation; a reboot
# (simulated) into the patched bank brings its revision back with `rev restore`; partial
# maintenance mode refuses the bank verbs with exit 3; apply is killed at each of its mutating
# calls and the next run leaves the workload thawed on one revision and the boot choice on it.
. "$(dirname "$0")/lib.sh"
bk_need_root
bk_live_sandbox bk-livepatch 160m

# bundle FILE VERSION STAMP FROM COMPATIBLE [SIGNER] [EPOCH] [KERNEL-PAYLOAD-NAME]
bundle() { bk_live_bundle "$1" "$2" "$3" "$4" compatible="$5" signer="${6:-signer}" epoch="${7:-1}" kernel="${8:-vmlinuz}"; }
bundle v10 1.0 a '"0.9"' acme-x86_64 || bk_skip "cannot build bundles"
bundle v11 1.1 b '"1.0"' acme-x86_64
bundle v12 1.2 c '"1.1"' acme-x86_64
bundle v20 2.0 d '"0.9"' acme-x86_64
bundle other 1.1 e '"1.0"' other-arm64
bundle rogue 1.1 f '"1.0"' acme-x86_64 other-signer
bundle down 0.9 g '"1.0"' acme-x86_64 signer
bundle epoch0 1.1 h '"1.0"' acme-x86_64 signer 0
bundle reserved 1.1 i '"1.0"' acme-x86_64 signer 1 bank.json

truncate -s 48M "$disk"
bc disk init "$disk" --boot-size 8M --bank-size 16M >/dev/null || bk_skip "disk init failed"
for l in $(losetup -j "$disk" | cut -d: -f1); do bk_track_loop "$l"; done
bc stage "$T/img/v10.bbi" --activate >/dev/null && bc boot --simulate >/dev/null &&
	bc mark-good >/dev/null || bk_skip "cannot prepare: 1.0 booted in bank A"

next_boot() { bc explain-next-boot --json | jq1 'd["next"]["bank"]'; }
bank_state() { bc status --json | jq1 "'%s:%d:%d' % (d['boot']['banks']['$1']['state'], d['boot']['banks']['$1']['generation'], d['boot']['banks']['$1']['tries_left'])"; }
current() { readlink "$root/run/bootbank/current" | sed 's|^rev/||'; }

expect_exit 0 "rev restore mounts the booted bank's live payload as the base revision" bc rev restore
check "it is current, out of bank A" bash -c "test \"\$(readlink '$root/run/bootbank/current')\" = rev/acme-os-1.0 &&
	grep -q '\"bank\": \"A\"' '$root/var/lib/bootbank/revisions/acme-os-1.0.json'"
check "bank A is mounted read-only in the host's namespace" bash -c "findmnt -n -o OPTIONS '$root/run/bootbank/bank/A' | grep -q '^ro'"
check "the base revision shows 1.0" grep -qx "rev=a" "$root/run/bootbank/rev/acme-os-1.0/f000"

mkdir -p "$cg/app"
start_reader
expect_exit 0 "workload add" bc workload add app --cgroup "$cgname/app" --view "$view"

mkdir -p "$root/etc/bootbank/livepatch.d"
cat >"$root/etc/bootbank/livepatch.d/50-log" <<EOF2
#!/bin/sh
echo "\$1 \$BOOTBANK_OLD_REV \$BOOTBANK_NEW_REV \$BOOTBANK_OLD_VERSION \$BOOTBANK_NEW_VERSION" >>"$T/hooks.log"
echo "hook saw \$1"
EOF2
chmod +x "$root/etc/bootbank/livepatch.d/50-log"

rev_of_app() {
	bc --json workload list | jq1 'd[0].get("revision", "")'
}
frozen_app() { grep -q '^frozen 1' "$cg/app/cgroup.events" && echo 1 || echo 0; }

# --- refusals: nothing changes -------------------------------------------------------------
state0="$(bank_state A) $(bank_state B) $(next_boot)"
expect_exit 9 "an image that cannot live-patch 1.0: exit 9" bc livepatch apply "$T/img/v20.bbi"
check "the message names the versions" grep -q "cannot live-patch revision 'acme-os-1.0' (version '1.0')" <<<"$ERR"
expect_exit 9 "an image for another compatible: exit 9" bc livepatch apply "$T/img/other.bbi"
check "the message names both" grep -q "is for 'other-arm64', this host is 'acme-x86_64'" <<<"$ERR"
cp "$T/img/v11.bbi" "$T/img/corrupt.bbi"
off=$("$BANKCTL" --json image info "$T/img/corrupt.bbi" | jq1 '[p for p in d["manifest"]["payloads"] if p["live"]][0]["offset"] + 100')
printf 'X' | dd of="$T/img/corrupt.bbi" bs=1 seek="$off" conv=notrunc status=none
expect_exit 7 "a corrupt live payload: exit 7" bc livepatch apply "$T/img/corrupt.bbi"
expect_exit 5 "an untrusted signer: exit 5" bc livepatch apply "$T/img/rogue.bbi"
check "after the refusals: still on 1.0, no new revision, no hook ran, banks and boot state unchanged" bash -c "
	test \"\$(readlink '$root/run/bootbank/current')\" = rev/acme-os-1.0 &&
	test ! -e '$root/var/lib/bootbank/revisions/acme-os-1.1.json' && test ! -e '$T/hooks.log' &&
	test \"$state0\" = \"\$($(declare -f bc jq1 bank_state next_boot); BANKCTL='$BANKCTL' root='$root'; echo \"\$(bank_state A) \$(bank_state B) \$(next_boot)\")\""
check "the workload is on 1.0" test "$(rev_of_app)" = acme-os-1.0

# --- apply ---------------------------------------------------------------------------------
expect_exit 0 "livepatch apply 1.1" bc livepatch apply "$T/img/v11.bbi"
log=$OUT
for s in pre-check "maintenance mode" stage activate "mount revision" "scan hooks" switch-over "apply hooks"; do
	check "task log: step '$s' ok with its time" grep -Eq "^  [0-9:.]{12}  $s +ok +[0-9.]+ ms" <<<"$log"
done
check "task log: the workload's frozen time" grep -Eq "app +frozen [0-9.]+ ms" <<<"$log"
check "task log: hook output" grep -q "hook saw apply" <<<"$log"
check "bank B is staged with 1.1 and activated: it boots next" bash -c "test \"$(next_boot)\" = B && [[ '$(bank_state B)' == staged:*:3 ]]"
check "the revision is linked to bank B and mounted from its copy" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
sys.exit(0 if m["bank"] == "B" and m["source"] == sys.argv[2] and m["offset"] == 0 else 1)' \
	"$root/var/lib/bootbank/revisions/acme-os-1.1.json" "$(realpath "$root")/run/bootbank/bank/B/app.squashfs"
check "bank B is mounted read-only at run/bootbank/bank/B" bash -c "findmnt -n -o OPTIONS '$root/run/bootbank/bank/B' | grep -q '^ro'"
check "the workload is on 1.1" test "$(rev_of_app)" = acme-os-1.1
check "1.1's parent is 1.0" grep -q '"parent": "acme-os-1.0"' "$root/var/lib/bootbank/revisions/acme-os-1.1.json"
check "scan and apply hooks saw both versions" bash -c "grep -qx 'scan acme-os-1.0 acme-os-1.1 1.0 1.1' '$T/hooks.log' && grep -qx 'apply acme-os-1.0 acme-os-1.1 1.0 1.1' '$T/hooks.log'"
check "no maintenance flag left" test ! -e "$root/var/lib/bootbank/maintenance.json"
bc events --json -n 100 >"$T/events.json"
check "every step of the task is an event, hook output included" python3 -c '
import json, sys
ev = json.load(open(sys.argv[1]))
task = [e for e in ev if e["operation"] == "livepatch"][-1]["task"]
steps = [e["step"] for e in ev if e["task"] == task]
need = ["pre-check", "maintenance mode", "stage", "activate", "mount revision", "scan hooks", "switch-over", "apply hooks"]
ok = all(s in steps for s in need) and any("hook saw scan" in e["message"] for e in ev if e["task"] == task)
ok = ok and all(e["time"] > 1600000000000 and e["result"] == "ok" for e in ev if e["task"] == task)
sys.exit(0 if ok else 1)' "$T/events.json"
expect_exit 0 "livepatch status --json after the apply" bc livepatch status --json
check "livepatch status: idle, current 1.1 from bank B (mounted), previous 1.0, the workload" python3 -c '
import json, sys
s = json.loads(sys.argv[1])
ok = s["maintenance"] is None and s["current"]["id"] == "acme-os-1.1" and s["current"]["bank"] == "B"
ok = ok and s["current"]["mounted"] and s["previous"]["id"] == "acme-os-1.0"
ok = ok and [w["name"] for w in s["workloads"]] == ["app"]
sys.exit(0 if ok else 1)' "$OUT"
expect_exit 0 "livepatch status (text)" bc livepatch status
check "livepatch status text names the revision in service and its bank" grep -q "current revision   acme-os-1.1: acme-os 1.1 from bank B, mounted" <<<"$OUT"
expect_exit 1 "applying 1.1 again: already in service" bc livepatch apply "$T/img/v11.bbi"
check "the message says so" grep -q "revision 'acme-os-1.1' of '.*' is already in service" <<<"$ERR"
expect_exit 3 "a second live patch while bank B holds the one in service: exit 3" bc livepatch apply "$T/img/v12.bbi"
check "the message says why" grep -q "bank B holds the revision in service ('acme-os-1.1')" <<<"$ERR"
expect_exit 3 "stage into bank B while its revision is in service: busy" bc stage "$T/img/v20.bbi"

# --- rollback --------------------------------------------------------------------------------
expect_exit 0 "livepatch rollback" bc livepatch rollback
check "rollback task log: switch-over and boot choice" bash -c "grep -Eq '^  [0-9:.]{12}  switch-over +ok' <<<\"\$0\" && grep -q 'activation of bank B undone' <<<\"\$0\"" "$OUT"
check "the workload is back on 1.0" test "$(rev_of_app)" = acme-os-1.0
check "current is 1.0 again" test "$(current)" = acme-os-1.0
check "the rollback ran the revert hooks" grep -qx 'revert acme-os-1.1 acme-os-1.0 1.1 1.0' "$T/hooks.log"
check "boot choice restored: bank A boots next, B staged and not activated" bash -c "test \"$(next_boot)\" = A && test '$(bank_state B)' = staged:0:0"

# --- late refusals after an apply and a rollback change nothing (issue 17, item 6) ---------
# The previous revision (1.1, out of bank B) keeps its pointer, metadata and mount; each
# refusal is one line (issue 17, item 7: no "recovered: ..." line about the run's own failure).
prev_state() {
	echo "$(readlink "$root/run/bootbank/previous") $(test -e "$root/var/lib/bootbank/revisions/acme-os-1.1.json" && echo meta)" \
		"$(findmnt -n -o SOURCE "$root/run/bootbank/rev/acme-os-1.1" >/dev/null && echo mounted)" \
		"$(findmnt -n -o TARGET "$root/run/bootbank/bank/B" >/dev/null && echo bank-mounted) $(bank_state B) $(next_boot)"
}
prev0=$(prev_state)
check "before the refusals: previous is 1.1, recorded and mounted, bank B mounted" \
	bash -c "[[ '$prev0' == 'rev/acme-os-1.1 meta mounted bank-mounted staged:0:0 A' ]]"
cp "$T/img/v11.bbi" "$T/img/corrupt-kernel.bbi"
off=$("$BANKCTL" --json image info "$T/img/corrupt-kernel.bbi" | jq1 '[p for p in d["manifest"]["payloads"] if p["name"] == "vmlinuz"][0]["offset"] + 100')
printf 'X' | dd of="$T/img/corrupt-kernel.bbi" bs=1 seek="$off" conv=notrunc status=none
for c in "down 9 a downgrade" "epoch0 9 an epoch below the floor" "reserved 6 a reserved payload name" "corrupt-kernel 7 a corrupt payload that is not the live one"; do
	set -- $c
	img=$1 code=$2
	shift 2
	expect_exit "$code" "late refusal of $*: exit $code" bc livepatch apply "$T/img/$img.bbi"
	check "  ... the previous revision, bank B and the boot choice are as they were" test "$(prev_state)" = "$prev0"
	check "  ... one line on stderr, no recovery line" bash -c "test \$(wc -l <<<\"\$0\") -eq 1 && ! grep -q recovered <<<\"\$0\"" "$ERR"
	check "  ... the workload is on 1.0" test "$(rev_of_app)" = acme-os-1.0
done

# A failure after the stage (the revision's mount point is taken): the live patch is undone
# and the one line says so, not "recovered: ..." about this run's own work (issue 17 item 7).
mkdir -p "$root/run/bootbank/rev"
: >"$root/run/bootbank/rev/acme-os-1.1b"
expect_exit 1 "a failure after the stage (the mount point is a file)" bc livepatch apply "$T/img/v11.bbi" --id acme-os-1.1b
check "  ... one line: the failure and that the live patch was undone" bash -c "test \$(wc -l <<<\"\$0\") -eq 1 && grep -q 'the live patch was undone' <<<\"\$0\" && ! grep -q recovered <<<\"\$0\"" "$ERR"
check "  ... no flag left, 1.0 in service, bank A boots next, B staged not activated" bash -c "test ! -e '$root/var/lib/bootbank/maintenance.json' && test \"\$(readlink '$root/run/bootbank/current')\" = rev/acme-os-1.0 && test \"$(next_boot)\" = A && test '$(bank_state B)' = staged:0:0"
rm -f "$root/run/bootbank/rev/acme-os-1.1b"

# --- partial maintenance mode that cannot be recovered: the bank verbs refuse --------------
cat >"$root/var/lib/bootbank/maintenance.json" <<EOF2
{ "operation": "livepatch", "reason": "live patch from 'gone' to 'acme-os-1.0'", "from": "gone",
  "to": "acme-os-1.0", "phase": "switching", "started": 1700000000, "pid": 1 }
EOF2
for v in "stage $T/img/v11.bbi" "activate B" "rollback" "roll-forward" "mark-bad B" "workload add x --cgroup $cgname --view /x" "livepatch rollback"; do
	expect_exit 3 "partial maintenance mode: '${v%% /*}' refused with exit 3" bc $v
	check "  ... the message says busy, since when and why" grep -q "busy: .* refused, partial maintenance mode since 2023-11-14T22:13:20Z (live patch from 'gone' to 'acme-os-1.0')" <<<"$ERR"
done
check "status shows the flag (text)" bash -c "bc() { '$BANKCTL' --root '$root' \"\$@\"; }; bc status | grep -q \"maintenance    partial maintenance mode since .*: live patch from 'gone' to 'acme-os-1.0' (livepatch, phase switching)\""
check "status --json shows it with reason, start time and operation" bash -c "'$BANKCTL' --root '$root' status --json | python3 -c '
import json,sys; m=json.load(sys.stdin)[\"maintenance\"]
sys.exit(0 if m[\"operation\"]==\"livepatch\" and m[\"started\"]==1700000000 and m[\"phase\"]==\"switching\" else 1)'"
check "livepatch status shows the live patch in progress" bash -c "'$BANKCTL' --root '$root' livepatch status | grep -q \"live patch: in progress (partial maintenance mode since 2023-11-14 22:13:20 UTC)\""
check "status shows the last error" bash -c "'$BANKCTL' --root '$root' status | grep -q 'last error .*partial maintenance mode'"
rm "$root/var/lib/bootbank/maintenance.json"
check "the boot state was not touched meanwhile" bash -c "test \"$(next_boot)\" = A && test '$(bank_state B)' = staged:0:0"

# --- crash during apply at every mutating call ------------------------------------------------
if [ -n "$SO" ]; then
	failures=()
	normalize() { # back to 1.0 in service
		[ "$(current)" = acme-os-1.1 ] && bc livepatch rollback >/dev/null 2>&1
		return 0
	}
	after_crash() { # N
		local n=$1 out cur rev nb line
		out=$(bc --wait recover 2>&1) || { failures+=("@$n: recover: $out"); return; }
		[ ! -e "$root/var/lib/bootbank/maintenance.json" ] || failures+=("@$n: flag left")
		[ ! -e "$root/var/lib/bootbank/staging.json" ] || failures+=("@$n: staging marker left")
		[ "$(frozen_app)" = 0 ] || failures+=("@$n: the workload is frozen")
		cur=$(current)
		rev=$(rev_of_app)
		[ "$rev" = "$cur" ] || failures+=("@$n: workload on '$rev', current '$cur'")
		nb=$(next_boot)
		case $cur in
		acme-os-1.1) [ "$nb" = B ] || failures+=("@$n: 1.1 in service, but bank $nb boots next") ;;
		acme-os-1.0) [ "$nb" = A ] || failures+=("@$n: 1.0 in service, but bank $nb boots next") ;;
		*) failures+=("@$n: current is '$cur'") ;;
		esac
		bc status --json >/dev/null 2>&1 || failures+=("@$n: status fails")
		# Leftovers of interrupted writes at every depth (mounted banks and revisions are
		# other mounts: not entered; tests/integ/crash-livepatch.sh reads the banks).
		while IFS= read -r line; do
			failures+=("@$n: $line")
		done < <(python3 "$repo/tests/crash/check-tree.py" --scanned "$T/scanned" \
			--tree "var/lib/bootbank:$root/var/lib/bootbank" --tree "run/bootbank:$root/run/bootbank")
	}
	rm -f "$T/count"
	LD_PRELOAD=$SO BK_CRASH_COUNT=$T/count bc livepatch apply "$T/img/v11.bbi" >/dev/null 2>&1
	rc=$?
	total=$(cat "$T/count" 2>/dev/null || echo 0)
	if [ "$rc" -ne 0 ] || [ "$total" -lt 10 ]; then
		not_ok "apply runs under the crash injector (exit $rc, $total mutating calls)"
	else
		after_crash 0
		normalize
		for n in $(seq 1 "$total"); do
			LD_PRELOAD=$SO BK_CRASH_AT=$n bc livepatch apply "$T/img/v11.bbi" >/dev/null 2>&1
			after_crash "$n"
			normalize
		done
		if [ ${#failures[@]} -eq 0 ]; then
			ok "apply killed at each of its $total mutating calls: workload thawed on the current revision, flag cleared, the boot choice on it"
			echo "# leftovers looked for at every depth in: $(sed ':a;N;$!ba;s/\n/, /g' "$T/scanned")"
		else
			for f in "${failures[@]:0:10}"; do not_ok "crash $f"; done
			not_ok "apply: ${#failures[@]} failed checks over $total crash points"
		fi
	fi
fi

# --- a plain stage after a rollback: the stale revision out of bank B is released first -------
bc livepatch apply "$T/img/v11.bbi" >/dev/null && bc livepatch rollback >/dev/null
check "after an apply and a rollback, 1.1's revision is still mounted out of bank B" findmnt -n "$root/run/bootbank/rev/acme-os-1.1"
expect_exit 0 "stage into bank B after the rollback" bc stage "$T/img/v11.bbi" --json
check "  ... the result counts one stale revision released" test "$(tail -n 1 <<<"$OUT" | jq1 'd["revisions_released"]')" = 1
check "  ... 1.1's revision unmounted, its metadata and the previous pointer gone; 1.0 in service" \
	bash -c "! findmnt -n '$root/run/bootbank/rev/acme-os-1.1' >/dev/null && test ! -e '$root/var/lib/bootbank/revisions/acme-os-1.1.json' && test ! -e '$root/run/bootbank/previous' && test \"\$(readlink '$root/run/bootbank/current')\" = rev/acme-os-1.0"
check "  ... the workload is still on 1.0, bank A boots next" bash -c "test '$(rev_of_app)' = acme-os-1.0 && test '$(next_boot)' = A"
check "  ... the stage event says so" bash -c "'$BANKCTL' --root '$root' events -n 1 | grep -q 'staged into bank B .*; a stale revision out of it released'"
# as before: 1.1 applied and rolled back (the next apply releases it itself)
bc livepatch apply "$T/img/v11.bbi" >/dev/null && bc livepatch rollback >/dev/null

# --- apply again after the rollback, then reboot into the patched bank -------------------
expect_exit 0 "apply 1.1 again after the rollback (the stale revision of bank B is released), --json" bc livepatch apply "$T/img/v11.bbi" --json
check "--json: one document with the steps and the switch report" python3 -c '
import json, sys
d = json.loads(sys.argv[1])
steps = [s["step"] for s in d["steps"]]
ok = d["ok"] and d["exit_code"] == 0 and "stage" in steps and "switch-over" in steps
ok = ok and d["switch"]["to"] == "acme-os-1.1" and d["switch"]["workloads"][0]["frozen_us"] >= 0
sys.exit(0 if ok else 1)' "$OUT"
check "the workload is on 1.1" test "$(rev_of_app)" = acme-os-1.1
kill -USR1 "$reader"
sleep 0.3
check "the reader never failed an open nor mixed revisions" bash -c "grep -qx 'failed_opens 0' '$T/stats' && grep -qx 'mixed 0' '$T/stats'"

# Reboot: the workload and every mount go, /run is empty again.
kill -9 "$reader"; wait "$reader" 2>/dev/null; reader=
unmount_all
find "$root/run/bootbank" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
expect_exit 0 "boot (simulated): the loader boots bank B" bc boot --simulate
check "  ... bank B" grep -q "booted bank B" <<<"$OUT"
expect_exit 0 "rev restore after the reboot" bc rev restore
check "the patched revision is back and current" bash -c "test \"\$(readlink '$root/run/bootbank/current')\" = rev/acme-os-1.1 && grep -qx 'rev=b' '$root/run/bootbank/current/f000'"
check "bank A's revision stays down (its bank is not booted)" bash -c "! findmnt '$root/run/bootbank/rev/acme-os-1.0' >/dev/null"
check "only bank B is mounted" bash -c "findmnt '$root/run/bootbank/bank/B' >/dev/null && ! findmnt '$root/run/bootbank/bank/A' >/dev/null"
bk_done
