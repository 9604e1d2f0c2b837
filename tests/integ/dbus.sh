#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankd on a private system-type dbus-daemon (its config written here, with the shipped policy
# file included), serving sandbox roots on loop-backed disks with real signed bundles; the
# clients are busctl and tests/integ/bankd-client.py (python3-dbus: busctl 252 cannot send an
# `h`, "UNIX file descriptor not supported as type").
# Every method: its result and its effect, checked against bankctl on the same root; a stage
# job's signals in order; a corrupt bundle through the API (verification error: both banks
# byte-identical; corrupt payload: the booted bank byte-identical); an unprivileged caller
# reads but every mutating method is AccessDenied with nothing changed, a member of the admin
# group may; busy while bankctl (flock) or a job holds the lock; bankd killed with SIGKILL in
# the middle of a stage and of a live patch, its job child killed alone: the next bankd (or a
# Recover call) recovers, invariants as in docs/crash-safety.md; SIGTERM ends bankd cleanly.
# Remediation: desired state, Scan, Precheck, Remediate on the live path and on the reboot path
# (a job ending "reboot required", then boot --simulate, mark-good and Scan saying compliant).
. "$(dirname "$0")/lib.sh"

bk_need_root
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
for t in dbus-daemon busctl setpriv flock mkfs.ext4 mksquashfs openssl losetup findmnt; do
	command -v "$t" >/dev/null || bk_skip "$t not installed"
done
PY=/usr/bin/python3
$PY -c 'import dbus, dbus.mainloop.glib; from gi.repository import GLib' 2>/dev/null ||
	bk_skip "needs python3-dbus and python3-gi"
BANKD=$(realpath "${BK_BUILD:-build/cc}/bin/bankd" 2>/dev/null) || bk_skip "no bankd (make)"
repo=$(cd "$(dirname "$0")/../.." && pwd)
CLIENT=$repo/tests/integ/bankd-client.py

T=$(bk_tmp)
chmod 0755 "$T" # the unprivileged caller reaches the bus socket and reads the bundles
A=unix:path=$T/bus/socket
dbus_pid= bankd_pid= holder=
declare -a disks=()

unmount_all() {
	local d
	for d in "$T"/root*/run/bootbank/rev/* "$T"/root*/run/bootbank/bank/*; do
		[ -d "$d" ] && umount "$d" 2>/dev/null
	done
	return 0
}
cleanup() {
	local l d
	[ -n "$holder" ] && kill -9 "$holder" 2>/dev/null
	[ -n "$bankd_pid" ] && kill -9 "$bankd_pid" 2>/dev/null
	[ -n "$dbus_pid" ] && kill -9 "$dbus_pid" 2>/dev/null
	bk_nginx_stop "$T/nginx"
	wait 2>/dev/null
	unmount_all
	for d in "${disks[@]}"; do
		for l in $(losetup -j "$d" | cut -d: -f1); do losetup -d "$l" 2>/dev/null; done
	done
	bk_cleanup
}
trap cleanup EXIT

json() { $PY -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(str(r).lower() if isinstance(r,bool) else r)' "$1"; }
# C VERB ARGS...: the client, bounded
C() { timeout 300 $PY "$CLIENT" "$A" "$@"; }
# dcall DESC METHOD ARGS...: a call that must succeed; its value (a JSON document for most) in $OUT
dcall() {
	local desc=$1 r
	shift
	r=$(C call "$@")
	if [ "$(json "d['ok']" <<<"$r")" = true ]; then
		ok "$desc"
		OUT=$(json "d['value']" <<<"$r")
	else
		not_ok "$desc ($r)"
		OUT=
	fi
}
# dfail NAME DESC METHOD ARGS...: a call that must fail with the D-Bus error NAME
dfail() {
	local name=$1 desc=$2 r
	shift 2
	r=$(C call "$@")
	if [ "$(json "d['ok'] is False and d['error']" <<<"$r")" = "$name" ]; then
		ok "$desc"
		ERR=$(json "d['message']" <<<"$r")
	else
		not_ok "$desc (expected $name: $r)"
		ERR=
	fi
}
# djob DESC METHOD ARGS...: a job, its signals in $JOB (JSON)
djob() {
	local desc=$1
	shift
	JOB=$(C job "$@")
	if [ "$(json "d['ok'] and d['completed']" <<<"$JOB" 2>/dev/null)" = true ]; then
		ok "$desc"
	else
		not_ok "$desc ($JOB)"
	fi
}
completed() { json "[s for s in d['signals'] if s['signal'] == 'Completed'][-1]$1" <<<"$JOB"; }

# --- the bus ---------------------------------------------------------------------------------
bk_bus_start "$T/bus" || bk_skip "dbus-daemon did not start: $(cat "$T/bus/log")"
dbus_pid=$BK_BUS_PID
[ "$BK_BUS" = "$A" ] || bk_skip "the bus is not at $A"

# The admin group for the group-member checks: an existing group 'nobody' is not in.
grp=$(getent group users staff | head -n1 | cut -d: -f1)
gid=$(getent group "$grp" | cut -d: -f3)

start_bankd() { # ROOT: start bankd and wait for its name (it recovers before taking it)
	local r=0
	bk_bankd_start "$1" "$T/bankd.log" --admin-group "$grp" || r=1
	bankd_pid=$BK_BANKD_PID
	return $r
}
stop_bankd() { # SIGTERM, bounded wait; returns bankd's exit status
	local rc
	kill -TERM "$bankd_pid" 2>/dev/null
	for _ in $(seq 200); do kill -0 "$bankd_pid" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$bankd_pid" 2>/dev/null
	wait "$bankd_pid"
	rc=$?
	bankd_pid=
	return $rc
}
wait_gone() { # PID: reap a bankd we killed (bounded: one the client did not kill is killed now)
	for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	bankd_pid=
}
lock_free() { # ROOT: nobody holds the lock (bounded)
	for _ in $(seq 100); do flock -n "$1/run/bootbank/lock" true && return 0; sleep 0.05; done
	return 1
}

# --- a sandbox with a disk and signed bundles (as tests/integ/stage.sh) -------------------------
pki=$T/pki
bash "$repo/tests/pki/make-pki.sh" "$pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
root=$T/root
mkdir -p "$root/etc/bootbank" "$T/src" "$T/img" "$T/mnt"
cp "$pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = demo-x86_64\n' >"$root/etc/bootbank/system.conf"
B() { "$BANKCTL" --root "$root" "$@"; }
mkimage() { # NAME VERSION EPOCH [EXTRA_MIB]
	local name=$1 ver=$2 epoch=$3 extra=${4:-} d=$T/src/$1-$2 extra_json=""
	mkdir -p "$d/tree/etc"
	head -c 700001 /dev/urandom >"$d/vmlinuz"
	head -c 300003 /dev/urandom >"$d/initrd.img"
	echo "$name $ver" >"$d/tree/etc/os-release"
	mksquashfs "$d/tree" "$d/root.squashfs" -quiet -noappend -all-root >/dev/null
	if [ -n "$extra" ]; then
		head -c $((extra << 20)) /dev/urandom >"$d/big.bin"
		extra_json=', { "name": "big.bin", "type": "file", "source": "big.bin" }'
	fi
	cat >"$d/spec.json" <<-EOF
	{ "name": "$name", "version": "$ver", "build": "b-$ver", "compatible": "demo-x86_64",
	  "security_epoch": $epoch, "payloads": [
	    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
	    { "name": "initrd.img", "type": "initrd", "source": "initrd.img" },
	    { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" }$extra_json ] }
	EOF
	"$BANKCTL" image build "$d/spec.json" -o "$T/img/$name-$ver.bbi" --key "$pki/signer.key" \
		--cert "$pki/signer.crt" --intermediate "$pki/intermediate.crt" >/dev/null
}
mkimage demo-os 1.0.0 1 || bk_skip "cannot build bundles"
mkimage demo-os 2.0.0 1
mkimage demo-os 3.0.0 1 16
img=$T/img
chmod 0644 "$img"/*.bbi

disk=$T/disk.img
disks+=("$disk")
truncate -s 100M "$disk"
B disk init "$disk" --boot-size 8M --bank-size 24M >/dev/null || bk_skip "disk init failed"
read -r sa za sb zb < <(json "' '.join('%d %d' % (p['start'], p['size']) for p in d['partitions'] if p['part'] in ('bank-a', 'bank-b'))" <"$root/var/lib/bootbank/disk.json")
hashp() { # A|B: sha256 of the bank partition's bytes
	local off size h
	if [ "$1" = A ]; then off=$sa size=$za; else off=$sb size=$zb; fi
	h=$(set -o pipefail; dd if="$disk" iflag=direct,skip_bytes,count_bytes skip="$off" count="$size" bs=1M status=none | sha256sum) || h="unreadable-$RANDOM"
	echo "${h%% *}"
}
state=$root/var/lib/bootbank/bootstate.json
statehash() { sha256sum "$state" 2>/dev/null | cut -d' ' -f1; }
inbank() { # A|B CMD...: CMD in the bank mounted read-only at $T/mnt
	local off size l rc
	if [ "$1" = A ]; then off=$sa size=$za; else off=$sb size=$zb; fi
	shift
	l=$(losetup -r -o "$off" --sizelimit "$size" -f --show "$disk") || return 1
	bk_track_loop "$l"
	mount -o ro "$l" "$T/mnt" || { losetup -d "$l"; return 1; }
	(cd "$T/mnt" && "$@")
	rc=$?
	umount "$T/mnt"
	losetup -d "$l"
	return $rc
}
no_leftovers() { # ROOT: no marker, temp or partial file in the state and run dirs and the banks
	[ -z "$(find "$1/var/lib/bootbank" "$1/run/bootbank" -maxdepth 1 \( -name '.#*' -o -name '.partial.*' -o -name staging.json \) 2>/dev/null)" ] &&
		inbank A sh -c '! ls -A | grep -q "^\.partial\.\|^\.#"' &&
		inbank B sh -c '! ls -A | grep -q "^\.partial\.\|^\.#"'
}
bankstate() { B status --json | json "d['boot']['banks']['$1']['state']"; }
# same JSON: two documents equal once parsed
same_json() { $PY -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1]) == json.loads(sys.argv[2]) else 1)' "$1" "$2"; }

start_bankd "$root" || { not_ok "bankd starts and takes its name ($(tail -n 5 "$T/bankd.log"))"; bk_done; }
ok "bankd starts and takes org.bootbank.Manager1 on the private bus"

# --- introspection: the interface, as docs/dbus-api.md writes it --------------------------------
busctl --address="$A" introspect org.bootbank.Manager1 /org/bootbank/Manager1 >"$T/introspect" 2>&1
check "busctl introspect lists org.bootbank.Manager1" grep -q '^org\.bootbank\.Manager1 *interface' "$T/introspect"
for mth in Status ExplainNextBoot Stage StageURL Activate MarkGood MarkBad Rollback RollForward \
	Recover DepotImport DepotImportURL DepotList DepotRemove Events LivePatchApply \
	LivePatchRollback LivePatchStatus \
	DesiredSet DesiredShow DesiredClear Scan Precheck Remediate; do
	grep -q "^\.$mth *method" "$T/introspect" || not_ok "introspect: method $mth missing"
done
busctl --address="$A" introspect --xml-interface org.bootbank.Manager1 /org/bootbank/Manager1 >"$T/manager.xml"
check "docs/dbus-api.md carries the manager's introspection XML as bankd serves it" python3 - "$T/manager.xml" "$repo/docs/dbus-api.md" <<'EOF'
import re, sys
live = open(sys.argv[1]).read()
doc = open(sys.argv[2]).read()
def iface(text, name):
    m = re.search(r'<interface name="%s">.*?</interface>' % re.escape(name), text, re.S)
    return re.sub(r"\s+", " ", m.group(0)) if m else None
a, b = iface(live, "org.bootbank.Manager1"), iface(doc, "org.bootbank.Manager1")
sys.exit(0 if a and a == b else 1)
EOF

# --- reads: the same documents as bankctl --json ------------------------------------------------
dcall "Status" Status
check "Status is the document 'bankctl --json status' prints" same_json "$OUT" "$(B --json status)"
dcall "ExplainNextBoot" ExplainNextBoot
check "ExplainNextBoot is the document 'explain-next-boot --json' prints" same_json "$OUT" "$(B explain-next-boot --json)"
check "property OperationInProgress is empty while idle" test "$(C get OperationInProgress)" = '""'
check "property MaintenanceMode is false" test "$(C get MaintenanceMode)" = false

# --- stage v1 with activate: a job, its signals in order -----------------------------------------
djob "Stage(v1, activate) runs as a job to its end" Stage "@$img/demo-os-1.0.0.bbi" '{"activate": true}'
check "job signals: Progress to 100%, StepFinished 'stage' ok, then Completed (last, exit 0)" python3 -c '
import json, sys
d = json.loads(sys.argv[1]); s = d["signals"]
kinds = [x["signal"] for x in s]
prog = [x for x in s if x["signal"] == "Progress"]
steps = [x for x in s if x["signal"] == "StepFinished"]
ok = kinds[-1] == "Completed" and kinds.count("Completed") == 1 and s[-1]["exit_code"] == 0
ok = ok and s[-1]["error"] == "" and prog and prog[-1]["done"] == prog[-1]["total"] > 0
ok = ok and all(a["done"] <= b["done"] for a, b in zip(prog, prog[1:]))
ok = ok and any(x["step"] == "stage" and x["result"] == "ok" for x in steps)
ok = ok and kinds.index("StepFinished") > kinds.index("Progress")
ok = ok and d["job"].startswith("/org/bootbank/Manager1/job/")
ok or print("# signals:", json.dumps(s), file=sys.stderr)
sys.exit(0 if ok else 1)' "$JOB"
check "Completed carries the stage result: bank A, activated" test "$(completed "['result']" | json "d['bank'], d['activated']")" = "('A', True)"
task=$(json "[x['task'] for x in d['signals'] if x['signal'] == 'StepFinished'][0]" <<<"$JOB")
check "StepFinished's task is the job's Task property" test "$(busctl --address="$A" get-property org.bootbank.Manager1 "$(json "d['job']" <<<"$JOB")" org.bootbank.Job1 Task)" = "s \"$task\""
check "  ... and the task of the 'stage' event bankctl events shows" test "$(B events --json | json "[e['operation'] for e in d if e['task'] == '$task']")" = "['stage']"
check "effect: bankctl status shows A staged and activated" test "$(B status --json | json "d['boot']['text']")" = "A=staged:1:3:1 B=empty:0:0:0 floor=0 pin=none"
check "property NextBank is A" test "$(C get NextBank)" = '"A"'
B boot --simulate >/dev/null
check "property BootedBank is A after the (simulated) boot" test "$(C get BootedBank)" = '"A"'
dcall "MarkGood(\"\"): the booted bank" MarkGood ""
check "MarkGood answers with the boot result" test "$(json "d['verb'], d['bank']" <<<"$OUT")" = "('mark-good', 'A')"
check "the finished stage job's object lingers, State completed" test "$(busctl --address="$A" get-property org.bootbank.Manager1 "$(json "d['job']" <<<"$JOB")" org.bootbank.Job1 State)" = 's "completed"'
check "effect: A is good" test "$(bankstate A)" = good
dcall "Status after the stage shows bank A's content" Status
check "Status shows bank A's content record (version 1.0.0)" test "$(json "d['boot']['banks']['A']['content']['version']" <<<"$OUT")" = 1.0.0
check "  ... and still equals bankctl's document" same_json "$OUT" "$(B --json status)"

# Without the banks' record copies, Status mounts the banks to read bank.json: bankd goes back to
# the mount namespace it started in (a later live patch must make mounts the host sees).
mv "$root/var/lib/bootbank/banks" "$root/var/lib/bootbank/banks.off"
dcall "Status without the record copies (bankd mounts bank A to read its record)" Status
check "  ... bank A's content read from bank.json" test "$(json "d['boot']['banks']['A']['content']['version']" <<<"$OUT")" = 1.0.0
check "  ... the same document as bankctl's" same_json "$OUT" "$(B --json status)"
mv "$root/var/lib/bootbank/banks.off" "$root/var/lib/bootbank/banks"
check "  ... bankd is back in the mount namespace it started in" test "$(readlink "/proc/$bankd_pid/ns/mnt")" = "$(readlink /proc/self/ns/mnt)"
check "  ... no bank mount is left in it" bash -c "! findmnt -rn -o TARGET | grep -q '^$root/'"

# --- activate, rollback, roll-forward, mark-bad, recover ---------------------------------------------
djob "Stage(v2) without activate" Stage "@$img/demo-os-2.0.0.bbi" '{}'
check "effect: B staged, not activated" test "$(bankstate B)" = staged
dcall "Activate(\"B\", 2)" Activate B 2
check "effect: B activated with 2 tries, boots next" test "$(B status --json | json "d['boot']['banks']['B']['tries_left'], d['boot']['next_boot']['bank']")" = "(2, 'B')"
dcall "Rollback()" Rollback
check "effect: the next boot is A again (pinned)" test "$(B explain-next-boot --json | json "d['next']['bank'], d['pin']")" = "('A', 'A')"
dcall "RollForward()" RollForward
check "effect: the pin is gone, B boots next" test "$(B explain-next-boot --json | json "d['next']['bank'], d['pin']")" = "('B', None)"
dcall "MarkBad(\"B\", reason)" MarkBad B "not wanted by the test"
check "effect: B bad, with the reason" test "$(B status --json | json "d['boot']['banks']['B']['state'], d['boot']['banks']['B']['bad_reason']")" = "('bad', 'not wanted by the test')"
dfail org.bootbank.Error.NotFound "Activate with nothing staged: org.bootbank.Error.NotFound" Activate "" 0
dcall "Recover(): nothing to do" Recover
check "Recover answers with the recovery document" python3 -c 'import json,sys; json.loads(sys.argv[1])' "$OUT"
check "LastError names the failed activate" bash -c "C() { timeout 60 $PY '$CLIENT' '$A' \"\$@\"; }; C get LastError | grep -q '^\"activate: '"

# --- depot ----------------------------------------------------------------------------------------
djob "DepotImport(v1)" DepotImport "@$img/demo-os-1.0.0.bbi" '{}'
check "Completed names the depot file" test -n "$(completed "['result']" | json "d['imported']")"
dcall "DepotList" DepotList
check "DepotList lists demo-os 1.0.0" test "$(json "[(x['name'], x['version']) for x in d]" <<<"$OUT")" = "[('demo-os', '1.0.0')]"
check "  ... the same document" same_json "$OUT" "$(B depot list --json)"
dcall "DepotRemove(demo-os, 1.0.0)" DepotRemove demo-os 1.0.0
check "effect: the depot is empty" test "$(B depot list --json | json "len(d)")" = 0
dfail org.bootbank.Error.NotFound "DepotRemove of a bundle not there: NotFound" DepotRemove demo-os 9.9.9

# --- events ---------------------------------------------------------------------------------------
dcall "Events(5)" Events 5
check "Events(5) are the last five 'events --json -n 5' shows" same_json "$OUT" "$(B events --json -n 5)"
check "  ... the mark-bad is among them" grep -q mark-bad <<<"$(json "[e['operation'] for e in d]" <<<"$OUT")"

# --- from a URL: StageURL, DepotImportURL (nginx on 127.0.0.1, its own prefix and port) -------------
if command -v nginx >/dev/null && command -v curl >/dev/null; then
	UP=${BK_DBUS_URL_PORT:-18483}
	mkdir -p "$T/www"
	cp "$img/demo-os-2.0.0.bbi" "$img/demo-os-1.0.0.bbi" "$T/www/"
	if bk_nginx_start "$T/nginx" "$UP" "$T/www"; then
		W=http://127.0.0.1:$UP
		dfail org.bootbank.Error.Usage "StageURL of an ftp:// URL: org.bootbank.Error.Usage at once" StageURL "ftp://127.0.0.1/x.bbi" '{}'
		check "  ... the message names the URL" grep -q "'ftp://127.0.0.1/x.bbi' is not an http:// or https:// URL" <<<"$ERR"
		dfail org.bootbank.Error.Usage "StageURL with an unknown option: Usage" StageURL "$W/demo-os-2.0.0.bbi" '{"force": true}'
		ha=$(hashp A)
		djob "StageURL(v2 over http) runs as a job to its end" StageURL "$W/demo-os-2.0.0.bbi" '{}'
		# libcurl is dlopen()ed by whoever fetches: the job's child, never the daemon (idle RSS)
		check "  ... bankd itself never mapped libcurl (the job's child fetched)" \
			test "$(grep -c 'libcurl' "/proc/$bankd_pid/maps")" = 0
		check "  ... Completed: exit 0, bank B, image 2.0.0, every payload byte fetched" \
			test "$(completed "['exit_code']") $(completed "['result']" | json "d['bank'], d['image']['version'], d['bytes_fetched'] > 0")" = "0 ('B', '2.0.0', True)"
		check "  ... bank B holds 2.0.0 (bankctl status), staged; bank A byte-identical" \
			test "$(bankstate B) $(B status --json | json "d['boot']['banks']['B']['content']['version']") $(hashp A)" = "staged 2.0.0 $ha"
		check "  ... nginx served the bundle with range requests (HTTP 206)" grep -q '^/demo-os-2.0.0.bbi 206 ' "$T/nginx/access.log"
		djob "StageURL(a missing file) runs as a job" StageURL "$W/missing.bbi" '{}'
		check "  ... Completed: org.bootbank.Error.NotFound, exit 4" test "$(completed "['error']") $(completed "['exit_code']")" = "org.bootbank.Error.NotFound 4"
		djob "DepotImportURL(v1)" DepotImportURL "$W/demo-os-1.0.0.bbi" '{}'
		check "  ... Completed names the depot file; DepotList lists demo-os 1.0.0" \
			test "$(completed "['result']" | json "d['imported'].endswith('demo-os_1.0.0.bbi')") $(B depot list --json | json "[(x['name'], x['version']) for x in d]")" = "true [('demo-os', '1.0.0')]"
		dcall "DepotRemove(demo-os, 1.0.0) after the URL import" DepotRemove demo-os 1.0.0
	else
		not_ok "nginx on 127.0.0.1:$UP starts ($(tail -n 2 "$T/nginx/error.log" 2>/dev/null))"
	fi
	bk_nginx_stop "$T/nginx"
fi

# --- bad bundles through the API --------------------------------------------------------------------
flip() { python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))' "$1" "$2"; }
moff=$("$BANKCTL" image info --json "$img/demo-os-2.0.0.bbi" | json "d['header']['manifest_offset']")
cp "$img/demo-os-2.0.0.bbi" "$T/badsig.bbi" && flip "$T/badsig.bbi" $((moff + 40)) && chmod 0644 "$T/badsig.bbi"
h=$(hashp A)$(hashp B) s=$(statehash)
djob "Stage(manifest changed after signing) runs as a job" Stage "@$T/badsig.bbi" '{}'
check "  ... Completed: org.bootbank.Error.Verification, exit 5" test "$(completed "['error']") $(completed "['exit_code']")" = "org.bootbank.Error.Verification 5"
check "  ... both bank partitions byte-identical, boot state unchanged" test "$(hashp A)$(hashp B) $(statehash)" = "$h $s"
poff=$("$BANKCTL" image info --json "$img/demo-os-2.0.0.bbi" | json "[p['offset'] for p in d['manifest']['payloads'] if p['name'] == 'initrd.img'][0]")
cp "$img/demo-os-2.0.0.bbi" "$T/corrupt.bbi" && flip "$T/corrupt.bbi" $((poff + 1000)) && chmod 0644 "$T/corrupt.bbi"
h=$(hashp A)
djob "Stage(corrupt payload) runs as a job" Stage "@$T/corrupt.bbi" '{}'
check "  ... Completed: org.bootbank.Error.Corrupt, exit 7, the payload named" test "$(completed "['error']") $(completed "['exit_code']") $(completed "['message']" | grep -c "initrd.img")" = "org.bootbank.Error.Corrupt 7 1"
check "  ... the booted bank A byte-identical, B empty, nothing left behind" bash -c "test '$(hashp A)' = '$h' && test '$(bankstate B)' = empty" 
check "  ... no marker, partial or temp file" no_leftovers "$root"
cp "$img/demo-os-2.0.0.bbi" "$T/writable.bbi" && chmod 0666 "$T/writable.bbi"
dfail org.bootbank.Error.Refused "a bundle others can write: org.bootbank.Error.Refused at once" Stage "@$T/writable.bbi" '{}'
chown nobody "$T/writable.bbi" && chmod 0644 "$T/writable.bbi"
dfail org.bootbank.Error.Refused "a bundle its non-root owner can write: Refused" Stage "@$T/writable.bbi" '{}'
dfail org.bootbank.Error.Malformed "a bundle fd that is not a regular file: Malformed" Stage "@/dev/null" '{}'
dfail org.bootbank.Error.Usage "an unknown option: org.bootbank.Error.Usage" Stage "@$img/demo-os-2.0.0.bbi" '{"bogus": true}'

# --- an unprivileged caller: reads yes, changes no; a member of the admin group: yes ------------------
U() { timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups $PY "$CLIENT" "$A" "$@"; }
h=$(hashp A)$(hashp B) s=$(statehash) ne=$(B events --json -n 1000 | json "len(d)")
r=$(U call Status)
check "nobody reads Status" test "$(json "d['ok']" <<<"$r")" = true
check "  ... the same document" same_json "$(json "d['value']" <<<"$r")" "$(B --json status)"
check "nobody reads Events" test "$(U call Events 3 | json "d['ok']")" = true
check "nobody reads the properties" test "$(U get NextBank)" = "$(C get NextBank)"
denied=0
for c in "Stage @$img/demo-os-2.0.0.bbi {}" "Activate B 0" "MarkGood A" "MarkBad A x" "Rollback" \
	"RollForward" "Recover" "DepotImport @$img/demo-os-2.0.0.bbi {}" "DepotRemove demo-os 1.0.0" \
	"LivePatchApply @$img/demo-os-2.0.0.bbi {}" "LivePatchRollback" "DesiredSet demo-os 1.0.0 auto" \
	"DesiredClear" "Precheck auto" "StageURL http://127.0.0.1:9/x.bbi {}" \
	"DepotImportURL http://127.0.0.1:9/x.bbi {}"; do
	# shellcheck disable=SC2086
	r=$(U call $c)
	if [ "$(json "d['ok'] is False and d['error']" <<<"$r")" = org.freedesktop.DBus.Error.AccessDenied ]; then
		denied=$((denied + 1))
	else
		not_ok "nobody: ${c%% *} not denied ($r)"
	fi
done
check "nobody: all 16 mutating methods (and Precheck, which runs hooks) are AccessDenied" test "$denied" -eq 16
check "  ... nothing changed: banks, boot state, no new event" test "$(hashp A)$(hashp B) $(statehash) $(B events --json -n 1000 | json "len(d)")" = "$h $s $ne"
check "  ... bankd logged the refusals" grep -q "refused to uid 65534: not root, not in group '$grp'" "$T/bankd.log"
# The group counts as the user database has it (as dbus-daemon's <policy group=> and polkit
# do), never from the caller's /proc (sd-bus fills gids in from there: a pid can be reused).
r=$(timeout 60 setpriv --reuid=nobody --regid=nogroup --groups="$gid" $PY "$CLIENT" "$A" call Recover)
check "nobody holding '$grp' as a supplementary gid, but no member in the user database: denied" \
	test "$(json "d['ok'] is False and d['error']" <<<"$r")" = org.freedesktop.DBus.Error.AccessDenied
# nobody made a member of $grp in this mount namespace's /etc/group (bankd reads it per call)
sed "s/^\($grp:[^:]*:[^:]*:\)\(.*\)$/\1\2,nobody/; s/:,nobody$/:nobody/" /etc/group >"$T/group"
if grep -q "^$grp:.*nobody" "$T/group" && mount --bind "$T/group" /etc/group; then
	r=$(timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups $PY "$CLIENT" "$A" call Recover)
	check "nobody, a member of '$grp' in /etc/group, may call Recover (no gid of its own needed)" test "$(json "d['ok']" <<<"$r")" = true
	umount /etc/group
else
	not_ok "cannot make nobody a member of '$grp' in a copy of /etc/group"
fi

# --- busy: bankctl's lock (flock), and a job of bankd's own ----------------------------------------
# As bankctl holds it: flock(2) on the lock file, by a process that then just sleeps.
(exec 9>>"$root/run/bootbank/lock" && flock 9 && exec sleep 60) &
holder=$!
for _ in $(seq 100); do flock -n "$root/run/bootbank/lock" true || break; sleep 0.02; done
s=$(statehash)
r=$(C call MarkGood A)
ms=$(json "int(d['ms'])" <<<"$r")
check "MarkGood while the lock is held: org.bootbank.Error.Busy" test "$(json "d['error']" <<<"$r")" = org.bootbank.Error.Busy
check "  ... at once (in $ms ms; bound 1 s)" test "$ms" -lt 1000
ERR=$(json "d['message']" <<<"$r")
check "  ... naming the lock" grep -q "busy: another bootbank operation holds '$root/run/bootbank/lock'" <<<"$ERR"
dfail org.bootbank.Error.Busy "Stage while the lock is held: Busy at once, no job" Stage "@$img/demo-os-2.0.0.bbi" '{}'
dfail org.bootbank.Error.Busy "Recover while the lock is held: Busy" Recover
check "  ... nothing changed" test "$(statehash)" = "$s"
kill "$holder"; wait "$holder" 2>/dev/null; holder=
r=$(C calls Stage "@$img/demo-os-3.0.0.bbi" '{}' -- Activate B 0 -- Status)
check "Stage, then at once Activate: the stage job started" test "$(json "d[0]['ok']" <<<"$r")" = true
check "  ... Activate while the stage job runs: org.bootbank.Error.Busy" test "$(json "d[1]['error']" <<<"$r")" = org.bootbank.Error.Busy
check "  ... it names the running job" grep -q "busy: job [0-9]* (stage) is running" <<<"$(json "d[1]['message']" <<<"$r")"
check "  ... Status answers meanwhile (the loop never waits for a job)" test "$(json "d[2]['ok'] and json.loads(d[2]['value'])['configured']" <<<"$r")" = true
for _ in $(seq 600); do [ "$(C get OperationInProgress)" = '""' ] && break; sleep 0.1; done
check "the stage job ended; OperationInProgress is empty again" test "$(C get OperationInProgress)" = '""'

# --- the job child killed alone: Completed says so, Recover recovers -----------------------------------
B mark-bad B >/dev/null 2>&1
h=$(hashp A)
JOB=$(C job Stage "@$img/demo-os-3.0.0.bbi" '{}' --kill-on "progress:child-of-$bankd_pid")
check "job child killed at its first progress: Completed, Failed, killed by signal 9" test "$(completed "['error']") $(completed "['message']" | grep -c 'killed by signal 9')" = "org.bootbank.Error.Failed 1"
check "  ... bankd still serves" test "$(C get Version | json "d")" != ""
check "  ... a staging marker was left (the stage was cut)" test -e "$root/var/lib/bootbank/staging.json"
dcall "Recover() after the kill" Recover
check "  ... it recovered the interrupted stage of bank B" test "$(json "d['interrupted_stage']['bank'], d['interrupted_stage']['finished']" <<<"$OUT")" = "('B', True)"
check "  ... bank A byte-identical, B not left half-written, nothing left behind" bash -c "test '$(hashp A)' = '$h' && test '$(bankstate B)' != trying" 
check "  ... no marker, partial or temp file" no_leftovers "$root"

# --- bankd killed with SIGKILL in the middle of a stage: the next bankd recovers ------------------------
h=$(hashp A)
pid=$bankd_pid
JOB=$(C job Stage "@$img/demo-os-3.0.0.bbi" '{}' --kill-on "progress:$pid")
wait_gone "$pid"
check "bankd killed at the stage's first progress (no Completed)" test "$(json "d['completed']" <<<"$JOB")" = false
check "  ... its job child died with it (the lock is free)" lock_free "$root"
check "  ... the stage was cut: a staging marker is there" test -e "$root/var/lib/bootbank/staging.json"
start_bankd "$root"
check "the next bankd starts and recovers before taking its name" grep -q "recovery at start: recovered: .*stage" "$T/bankd.log"
check "  ... no staging marker, partial or temp file" no_leftovers "$root"
check "  ... bank A (good, booted) byte-identical and still good" bash -c "test '$(hashp A)' = '$h' && test '$(bankstate A)' = good"
check "  ... the boot state parses; A boots next" test "$(B explain-next-boot --json | json "d['next']['bank']")" = A
dcall "  ... and Status answers" Status

# --- SIGTERM in the middle of a stage: the job ends as a killed bankctl; the next start recovers -----
h=$(hashp A)
pid=$bankd_pid
JOB=$(C job Stage "@$img/demo-os-3.0.0.bbi" '{}' --term-on "progress:$pid")
for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
wait "$pid"
rc=$?
bankd_pid=
check "SIGTERM in the middle of a stage job: bankd exits 0 (no leak under ASan)" test "$rc" -eq 0
check "  ... it said it killed the job" grep -q "job [0-9]*: stage killed (shutting down)" "$T/bankd.log"
check "  ... the job's child is gone (the lock is free), the stage cut (marker there)" bash -c "$(declare -f lock_free); lock_free '$root' && test -e '$root/var/lib/bootbank/staging.json'"
n0=$(grep -c "recovery at start: recovered" "$T/bankd.log")
start_bankd "$root"
check "the next bankd recovers it at start" test "$(grep -c "recovery at start: recovered" "$T/bankd.log")" -gt "$n0"
check "  ... bank A byte-identical and good, nothing left behind" bash -c "test '$(hashp A)' = '$h' && test '$(bankstate A)' = good"
check "  ... no marker, partial or temp file" no_leftovers "$root"

# --- SIGTERM when idle: a clean stop -----------------------------------------------------------------
stop_bankd
check "SIGTERM stops bankd with exit 0 (no leak under ASan)" test $? -eq 0

# --- live patch through the API (a second sandbox; as tests/integ/livepatch.sh) --------------------------
root2=$T/root2
disk2=$T/disk2.img
disks+=("$disk2")
mkdir -p "$root2/etc/bootbank"
cp "$pki/keyring.pem" "$root2/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = acme-x86_64\n[keyring]\npath = /etc/bootbank/keyring.pem\n' >"$root2/etc/bootbank/system.conf"
B2() { "$BANKCTL" --root "$root2" "$@"; }
lbundle() { # NAME VERSION STAMP FROM
	local d=$T/lsrc-$1 i
	mkdir -p "$d/tree/d"
	for i in 0 1 2 3; do echo "rev=$3" >"$d/tree/f00$i"; done
	mksquashfs "$d/tree" "$d/app.squashfs" -quiet -noappend -all-root >/dev/null
	head -c 100000 /dev/urandom >"$d/vmlinuz"
	cat >"$d/spec.json" <<EOF
{ "name": "acme-os", "version": "$2", "build": "1", "compatible": "acme-x86_64", "security_epoch": 1,
  "live_patch": { "from": [ $4 ] },
  "payloads": [
    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
    { "name": "app.squashfs", "type": "component", "source": "app.squashfs",
      "live": true, "mountpoint": "/opt/acme" } ] }
EOF
	"$BANKCTL" image build "$d/spec.json" -o "$T/img/$1.bbi" --key "$pki/signer.key" \
		--cert "$pki/signer.crt" --intermediate "$pki/intermediate.crt" >/dev/null && chmod 0644 "$T/img/$1.bbi"
}
lbundle v10 1.0 a '"0.9"' && lbundle v11 1.1 b '"1.0"' || { not_ok "live-patch bundles"; bk_done; }
truncate -s 48M "$disk2"
B2 disk init "$disk2" --boot-size 8M --bank-size 16M >/dev/null &&
	B2 stage "$img/v10.bbi" --activate >/dev/null && B2 boot --simulate >/dev/null &&
	B2 mark-good >/dev/null && B2 rev restore >/dev/null || { not_ok "live-patch sandbox: 1.0 booted in bank A"; bk_done; }
current() { readlink "$root2/run/bootbank/current" | sed 's|^rev/||'; }
next2() { B2 explain-next-boot --json | json "d['next']['bank']"; }
start_bankd "$root2" || not_ok "bankd starts on the second sandbox"

dcall "LivePatchStatus" LivePatchStatus
check "LivePatchStatus: 1.0 is current" test "$(json "d['current']['id']" <<<"$OUT")" = acme-os-1.0
check "  ... the same document" same_json "$OUT" "$(B2 livepatch status --json)"
djob "LivePatchApply(1.1) runs as a job to its end" LivePatchApply "@$img/v11.bbi" '{}'
check "its steps in order as StepFinished, all ok, then Completed exit 0" python3 -c '
import json, sys
s = json.loads(sys.argv[1])["signals"]
steps = [x["step"] for x in s if x["signal"] == "StepFinished"]
want = ["pre-check", "maintenance mode", "stage", "activate", "mount revision", "switch-over"]
pos = [steps.index(w) for w in want]
ok = pos == sorted(pos) and all(x["result"] == "ok" for x in s if x["signal"] == "StepFinished")
ok = ok and s[-1]["signal"] == "Completed" and s[-1]["exit_code"] == 0
ok = ok and len({x["task"] for x in s if x["signal"] == "StepFinished"}) == 1
ok or print("# signals:", json.dumps(s), file=sys.stderr)
sys.exit(0 if ok else 1)' "$JOB"
check "  ... the Step property names each step from its start: set before its StepFinished" python3 -c '
import json, sys
s = json.loads(sys.argv[1])["signals"]
def first(kind, step):
    return next((i for i, x in enumerate(s) if x["signal"] == kind and x["step"] == step), None)
def first_kind(kind):
    return next((i for i, x in enumerate(s) if x["signal"] == kind), None)
ok = True
for w in ["pre-check", "maintenance mode", "stage", "mount revision", "scan hooks", "switch-over", "apply hooks"]:
    # set at its start and again at its end (a Step set only at the end would come once)
    a, b = first("Step", w), first("StepFinished", w)
    n = sum(1 for x in s if x["signal"] == "Step" and x["step"] == w)
    if a is None or b is None or a > b or n < 2:
        ok = False
        print("# %s: Step at %s (%d times), StepFinished at %s" % (w, a, n, b), file=sys.stderr)
# the stage: Step says "stage" before its first byte of progress
p, st = first_kind("Progress"), first("Step", "stage")
if p is None or st is None or st > p:
    ok = False
    print("# stage: Step at %s, first Progress at %s" % (st, p), file=sys.stderr)
sys.exit(0 if ok else 1)' "$JOB"
check "Completed carries the live-patch report (ok, the switch to 1.1)" test "$(completed "['result']" | json "d['ok'], d['switch']['to']")" = "(True, 'acme-os-1.1')"
check "effect: 1.1 current, bank B boots next" test "$(current) $(next2)" = "acme-os-1.1 B"
check "the revision's bank is mounted where the host sees it (not in a private namespace)" findmnt "$root2/run/bootbank/bank/B"
djob "LivePatchRollback() runs as a job" LivePatchRollback
check "effect: 1.0 current again, bank A boots next" test "$(current) $(next2)" = "acme-os-1.0 A"
check "MaintenanceMode is false after it" test "$(C get MaintenanceMode)" = false

pid=$bankd_pid
JOB=$(C job LivePatchApply "@$img/v11.bbi" '{}' --kill-on "step=stage:$pid")
wait_gone "$pid"
check "bankd killed right after the live patch's stage step (no Completed)" test "$(json "d['completed']" <<<"$JOB")" = false
check "  ... the live patch was in partial maintenance mode" test -e "$root2/var/lib/bootbank/maintenance.json"
check "  ... its child died with it (the lock is free)" lock_free "$root2"
start_bankd "$root2"
check "the next bankd recovers the live patch before taking its name" test ! -e "$root2/var/lib/bootbank/maintenance.json"
check "  ... no staging marker or temp file" test -z "$(find "$root2/var/lib/bootbank" "$root2/run/bootbank" -maxdepth 1 \( -name '.#*' -o -name staging.json \))"
cur=$(current) nb=$(next2)
check "  ... one revision in service, the boot choice on it ($cur, bank $nb)" bash -c "[ '$cur $nb' = 'acme-os-1.0 A' ] || [ '$cur $nb' = 'acme-os-1.1 B' ]"
check "  ... status parses" bash -c "'$BANKCTL' --root '$root2' status --json >/dev/null"
check "  ... MaintenanceMode is false" test "$(C get MaintenanceMode)" = false

# --- remediation through the API (docs/remediation.md), on the second sandbox ------------------------
[ "$(current)" = acme-os-1.1 ] && B2 livepatch rollback >/dev/null
B2 depot import "$img/v11.bbi" >/dev/null || not_ok "depot import of 1.1 for the remediation"
dfail org.bootbank.Error.NotFound "DesiredSet of an image not in the depot: NotFound" DesiredSet acme-os 9.9 ""
dfail org.bootbank.Error.Usage "DesiredSet with an unknown mode: Usage" DesiredSet acme-os 1.1 sometimes
dcall "DesiredSet(acme-os, 1.1, enforce)" DesiredSet acme-os 1.1 enforce
check "  ... answers the desired state" test "$(json "d['name'], d['version'], d['live_patch_mode']" <<<"$OUT")" = "('acme-os', '1.1', 'enforce')"
dcall "DesiredShow" DesiredShow
check "  ... the document 'bankctl desired show --json' prints" same_json "$OUT" "$(B2 desired show --json)"
dcall "Scan" Scan
check "Scan: non-compliant, exit code 20" test "$(json "d['state'], d['exit_code']" <<<"$OUT")" = "('non-compliant', 20)"
check "  ... the document 'bankctl scan --json' prints" same_json "$OUT" "$(B2 scan --json)"
dcall "Precheck(\"\"): every check, the mode's path" Precheck ""
check "  ... the live path possible and chosen" test "$(json "d['live']['possible'], d['chosen']" <<<"$OUT")" = "(True, 'live')"
check "  ... the checks and verdicts 'bankctl precheck --json' gives" test "$(json "[(c['name'], c['result']) for c in d['checks']], d['reboot']['possible']" <<<"$OUT")" = "$(B2 precheck --json | json "[(c['name'], c['result']) for c in d['checks']], d['reboot']['possible']")"
r=$(timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups $PY "$CLIENT" "$A" call Remediate "" '{}')
check "nobody: Remediate is AccessDenied" test "$(json "d['ok'] is False and d['error']" <<<"$r")" = org.freedesktop.DBus.Error.AccessDenied
r=$(timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups $PY "$CLIENT" "$A" call Scan)
check "nobody: Scan answers (a read)" test "$(json "d['ok']" <<<"$r")" = true
dfail org.bootbank.Error.Usage "Remediate with an unknown option: Usage" Remediate "" '{"bogus": true}'
djob "Remediate(\"\", {}) runs as a job to its end" Remediate "" '{}' 
check "its steps as StepFinished, one task: compliance scan, pre-check, the live patch, compliance check" python3 -c '
import json, sys
s = json.loads(sys.argv[1])["signals"]
steps = [x["step"] for x in s if x["signal"] == "StepFinished"]
want = ["compliance scan", "pre-check", "maintenance mode", "stage", "switch-over", "compliance check"]
pos = [steps.index(w) for w in want]
ok = pos == sorted(pos) and len({x["task"] for x in s if x["signal"] == "StepFinished"}) == 1
ok = ok and s[-1]["signal"] == "Completed" and s[-1]["exit_code"] == 0
ok or print("# signals:", json.dumps(s), file=sys.stderr)
sys.exit(0 if ok else 1)' "$JOB"
check "Completed carries the remediation result: compliant on the live path" test "$(completed "['result']" | json "d['outcome'], d['path'], d['after']['state']")" = "('compliant', 'live', 'compliant')"
check "effect: 1.1 current, bank B boots next; bankctl scan says compliant" bash -c "test '$(current) $(next2)' = 'acme-os-1.1 B' && '$BANKCTL' --root '$root2' scan >/dev/null"
dcall "Scan after it: compliant" Scan
check "  ... compliant, exit code 0" test "$(json "d['state'], d['exit_code']" <<<"$OUT")" = "('compliant', 0)"
djob "Remediate again: nothing to do, the job completes" Remediate "" '{}'
check "  ... outcome 'nothing to do', no step" test "$(completed "['result']" | json "d['outcome'], len(d['steps'])")" = "('nothing to do', 0)"

# The reboot path through the API: reboot into bank B (1.1, from the live path above), then 2.0,
# which cannot live-patch 1.x: auto takes the reboot path and the job ends "reboot required"
# (bankctl's exit 21); a simulated reboot into bank A and mark-good finish it.
reboot2() { # the host's reboot: bankd stops, run/ is emptied, the loader picks a bank
	stop_bankd || not_ok "bankd stops with exit 0 for the reboot"
	unmount_all
	find "$root2/run/bootbank" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
	B2 boot --simulate >/dev/null && B2 mark-good >/dev/null && B2 rev restore >/dev/null &&
		start_bankd "$root2"
}
lbundle v20 2.0 c '"0.9"' && B2 depot import "$img/v20.bbi" >/dev/null || not_ok "depot import of 2.0"
check "reboot into bank B (boot --simulate, mark-good, rev restore), bankd again" reboot2
dcall "DesiredSet(acme-os, 2.0, auto)" DesiredSet acme-os 2.0 auto
djob "Remediate(\"\", {}) to 2.0: the reboot path runs as a job to its end" Remediate "" '{}'
check "  ... its steps as StepFinished, one task: compliance scan, pre-check, stage, activate, compliance check, reboot required" python3 -c '
import json, sys
s = json.loads(sys.argv[1])["signals"]
steps = [x["step"] for x in s if x["signal"] == "StepFinished"]
want = ["compliance scan", "pre-check", "stage", "activate", "compliance check", "reboot required"]
pos = [steps.index(w) if w in steps else -1 for w in want]
ok = -1 not in pos and pos == sorted(pos) and "switch-over" not in steps
ok = ok and len({x["task"] for x in s if x["signal"] == "StepFinished"}) == 1
ok = ok and s[-1]["signal"] == "Completed" and s[-1]["exit_code"] == 0
ok or print("# signals:", json.dumps(s), file=sys.stderr)
sys.exit(0 if ok else 1)' "$JOB"
check "  ... Completed: outcome 'reboot required' on the reboot path, exit_code 21, pending reboot" test "$(completed "['result']" | json "d['outcome'], d['path'], d['exit_code'], d['after']['state']")" = "('reboot required', 'reboot', 21, 'compliant-pending-reboot')"
check "  ... effect: 1.1 still current, bank A boots next" test "$(current) $(next2)" = "acme-os-1.1 A"
dcall "Scan: compliant-pending-reboot" Scan
check "  ... exit code 21, bank A holds 2.0" test "$(json "d['state'], d['exit_code'], d['banks']['A']['image']" <<<"$OUT")" = "('compliant-pending-reboot', 21, 'acme-os 2.0 (build 1)')"
check "reboot into bank A (boot --simulate, mark-good), bankd again" reboot2
dcall "Scan after the reboot and mark-good" Scan
check "  ... compliant, exit code 0: 2.0 booted from bank A" test "$(json "d['state'], d['exit_code'], d['in_service'], d['booted']" <<<"$OUT")" = "('compliant', 0, 'acme-os 2.0 (build 1)', 'A')"
check "  ... the document 'bankctl scan --json' prints" same_json "$OUT" "$(B2 scan --json)"
dcall "DesiredClear" DesiredClear
check "  ... cleared; Scan says unknown" test "$(json "d['cleared']" <<<"$OUT") $(C call Scan | json "json.loads(d['value'])['state']")" = "true unknown"
stop_bankd
check "SIGTERM stops the second bankd with exit 0" test $? -eq 0
bk_done
