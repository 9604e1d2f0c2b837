#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# make demo: bootbank's main job on a sparse disk image under build/demo, reached through loop
# devices (no real disk is touched): partition it, build two signed images, stage, activate,
# boot (simulated), mark good, roll back at the boot prompt, roll forward, and refuse a tampered
# bundle; then remediate (docs/remediation.md) a running demo workload (its own cgroup and mount
# namespace) to a desired third image on the live path, and to a fourth on the reboot path.
# Needs root. Everything it attaches, mounts or starts
# is removed when it ends, also when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
BK_BUILD=${BK_BUILD:-build/cc}
BANKCTL=$(realpath "$BK_BUILD/bankctl")
demo=$PWD/build/demo
img=$demo/disk.img
root=$demo/root
t0=$EPOCHREALTIME

if [ "$(id -u)" -ne 0 ]; then
	echo "make demo needs root: it attaches loop devices and mounts the banks (run: sudo make demo)" >&2
	exit 1
fi
for t in losetup mksquashfs openssl python3 dd sha256sum findmnt unshare; do
	command -v "$t" >/dev/null || { echo "make demo needs '$t' (make deps installs it)" >&2; exit 1; }
done

# Colours only on a terminal.
if [ -t 1 ]; then
	BOLD=$'\e[1m' DIM=$'\e[2m' GREEN=$'\e[32m' RED=$'\e[31m' CYAN=$'\e[36m' OFF=$'\e[0m'
	COLOR=1
else
	BOLD='' DIM='' GREEN='' RED='' CYAN='' OFF=''
	COLOR=0
fi

# Whatever happens, no loop device of the demo image survives the demo. bankctl's own loop
# devices are autoclear (gone when it exits); this catches anything else.
current="starting"
workload_pid=
cgroup=
# The live patch's pieces: the workload, its cgroup, the revisions and banks mounted in this
# mount namespace (their loop devices are autoclear: they go with the mounts).
stop_live() {
	local d
	if [ -n "$workload_pid" ]; then
		kill -9 "$workload_pid" 2>/dev/null || true
		wait "$workload_pid" 2>/dev/null || true
		workload_pid=
	fi
	if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then
		rmdir "$cgroup" 2>/dev/null || true
	fi
	for d in "$root"/run/bootbank/rev/* "$root"/run/bootbank/bank/*; do
		[ -d "$d" ] && { umount "$d" 2>/dev/null || umount -l "$d" 2>/dev/null || true; }
	done
	return 0
}
detach_all() {
	local l
	[ -e "$img" ] || return 0
	for l in $(losetup -j "$img" 2>/dev/null | cut -d: -f1); do
		losetup -d "$l" 2>/dev/null || true
	done
}
finish() {
	local rc=$?
	stop_live
	detach_all
	if [ "$rc" -ne 0 ]; then
		echo "${RED}demo failed while: $current (exit $rc)${OFF}" >&2
	fi
}
trap finish EXIT

n=0
step() {
	n=$((n + 1))
	current=$*
	printf '\n%s%2d. %s%s\n' "$BOLD" "$n" "$*" "$OFF"
}
run() { # show the command, run it indented
	printf '%s$ bankctl %s%s\n' "$DIM" "$*" "$OFF"
	"$BANKCTL" --root "$root" "$@" 2>&1 | sed 's/^./   &/'
	return "${PIPESTATUS[0]}"
}

# The banks at a glance, from `bankctl status --json`.
banks() {
	"$BANKCTL" --root "$root" status --json | python3 -c '
import json, sys
color = sys.argv[1] == "1"
def c(code, s): return "\033[%sm%s\033[0m" % (code, s) if color else s
d = json.load(sys.stdin)["boot"]
nb = d["next_boot"]
booted = (d.get("booted") or {}).get("bank")
tint = {"good": "32", "staged": "36", "trying": "33", "bad": "31", "empty": "2"}
print()
for b in "AB":
    x = d["banks"][b]
    img = x.get("content") or {}
    what = "%s %s (build %s)" % (img["name"], img["version"], img["build"]) if "version" in img else "-"
    notes = []
    if x["state"] in ("staged", "trying"):
        notes.append("%d %s left" % (x["tries_left"], "try" if x["tries_left"] == 1 else "tries"))
    if booted == b: notes.append(c("1", "booted"))
    if nb["bank"] == b: notes.append(c("1", "boots next"))
    if d["pin"] == b: notes.append("rollback pin")
    mark = "*" if booted == b else " "
    line = "   %s bank %s  %s  gen %-2d epoch %-2d %-32s %s" % (mark, b, c(tint[x["state"]], "%-7s" % x["state"]),
           x["generation"], x["epoch"], what, ", ".join(notes))
    print(line.rstrip())
nxt = "bank %s (%s)" % (nb["bank"], nb["reason"]) if nb["bank"] else "nothing"
pin = "rollback pin on bank %s" % d["pin"] if d["pin"] else "no rollback pin"
print(c("2", "     next boot: %s; security floor %d; %s" % (nxt, d["floor"], pin)))
' "$COLOR"
}

# sha256 of a bank partition's bytes, read from the image (offsets from disk.json).
bank_hash() {
	local off size
	read -r off size < <(python3 -c '
import json, sys
p = [p for p in json.load(open(sys.argv[1]))["partitions"] if p["part"] == sys.argv[2]][0]
print(p["start"], p["size"])' "$root/var/lib/bootbank/disk.json" "bank-$1")
	dd if="$img" iflag=direct,skip_bytes,count_bytes skip="$off" count="$size" bs=1M status=none |
		sha256sum | cut -c1-16
}

echo "${BOLD}bootbank demo${OFF}: A/B boot banks on a sparse disk image, $demo"
echo "${DIM}(loop devices only; no real disk is touched; bankctl runs on the sandbox root $root)${OFF}"
stop_live
detach_all
rm -rf "$demo"
mkdir -p "$root/etc/bootbank" "$demo/src"

step "Partition a 320 MiB sparse disk image: boot, bank A, bank B (GPT, ext4)"
truncate -s 320M "$img"
cat >"$root/etc/bootbank/system.conf" <<EOF
[system]
compatible = demo-x86_64
bootloader = file
EOF
run disk init "$img" --boot-size 32M --bank-size 128M
banks

step "Build two small signed images: a squashfs root, a kernel, an initrd and a live app payload"
bash tests/pki/make-pki.sh "$demo/pki" >/dev/null
cp "$demo/pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
# build_image VERSION LIVE_PATCH_FROM: a squashfs root, a kernel, an initrd and the live
# payload app.squashfs (what the demo workload sees at its view: a stamp with the version).
build_image() {
	local v=$1 from=$2 s=$demo/src/$1
	mkdir -p "$s/root/etc" "$s/root/usr/bin" "$s/app"
	printf 'NAME="demo-os"\nVERSION="%s"\n' "$v" >"$s/root/etc/os-release"
	printf '#!/bin/sh\necho hello from demo-os %s\n' "$v" >"$s/root/usr/bin/hello"
	chmod +x "$s/root/usr/bin/hello"
	echo "demo-app of demo-os $v" >"$s/app/stamp"
	mksquashfs "$s/root" "$s/root.squashfs" -quiet -noappend -all-root >/dev/null
	mksquashfs "$s/app" "$s/app.squashfs" -quiet -noappend -all-root >/dev/null
	# Stand-ins for a kernel and an initrd (real ones come with the bootloader integration).
	head -c $((6 << 20)) /dev/urandom >"$s/vmlinuz"
	head -c $((3 << 20)) /dev/urandom >"$s/initrd.img"
	cat >"$s/spec.json" <<EOF
{ "name": "demo-os", "version": "$v", "build": "${v//./}", "compatible": "demo-x86_64",
  "security_epoch": 1, "description": "bootbank demo image $v",
  $([ -n "$from" ] && echo "\"live_patch\": { \"from\": [ $from ] },")
  "payloads": [
    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
    { "name": "initrd.img", "type": "initrd", "source": "initrd.img" },
    { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" },
    { "name": "app.squashfs", "type": "component", "source": "app.squashfs",
      "live": true, "mountpoint": "/opt/demo-app" } ] }
EOF
	"$BANKCTL" image build "$s/spec.json" -o "$demo/demo-os-$v.bbi" --key "$demo/pki/signer.key" \
		--cert "$demo/pki/signer.crt" --intermediate "$demo/pki/intermediate.crt" >/dev/null
	printf '   %s' "$CYAN"
	"$BANKCTL" image verify "$demo/demo-os-$v.bbi" --keyring "$demo/pki/keyring.pem" | tr -d '\n'
	printf '%s\n' "$OFF"
}
for v in 1.0.0 2.0.0; do
	build_image "$v" ""
done

step "Stage 1.0.0: nothing is booted yet, so it goes into the empty bank A; activate it"
run stage "$demo/demo-os-1.0.0.bbi" --activate
banks

step "Boot (simulated): the loader takes a try from bank A and boots it"
run boot --simulate
banks

step "The system came up fine: mark bank A good"
run mark-good
banks

step "Stage 2.0.0 into the alternate bank B (bank A, booted, is never written); activate"
run stage "$demo/demo-os-2.0.0.bbi" --activate
banks

step "Reboot into bank B and confirm it"
run boot --simulate
run mark-good
banks

step "Operator rollback at the boot prompt (the R key): bank A boots, and stays the choice"
run boot --simulate --rollback-key
banks

step "Roll forward from the shell, then reboot: bank B again"
run roll-forward
run boot --simulate
banks

step "A bundle changed after signing is refused before anything is written"
cp "$demo/demo-os-2.0.0.bbi" "$demo/tampered.bbi"
python3 -c '
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(200); b = f.read(1); f.seek(200); f.write(bytes([b[0] ^ 0x20]))' "$demo/tampered.bbi"
before="A $(bank_hash a)  B $(bank_hash b)"
rc=0
run stage "$demo/tampered.bbi" || rc=$?
after="A $(bank_hash a)  B $(bank_hash b)"
echo "   exit code $rc (5: verification failed)"
echo "   bank partitions (sha256) before: $before"
echo "                            after:  $after"
[ "$rc" -eq 5 ] && [ "$before" = "$after" ]
echo "   ${GREEN}both banks untouched${OFF}"

step "The full status"
run status

step "Remediation, 0/7: the booted bank's live payload is the revision in service; a workload runs on it"
run rev restore
cgroot=$(findmnt -n -o TARGET -t cgroup2 | head -n1)
[ -n "$cgroot" ] || { echo "make demo needs a cgroup2 mount" >&2; exit 1; }
cgroup=$cgroot/bootbank-demo-$$
mkdir "$cgroup"
view=$demo/view
mkdir -p "$view"
# The workload: its own cgroup and mount namespace, the revision bound at its view, reading the
# stamp ten times a second (a line each time it changes).
(
	echo "$BASHPID" >"$cgroup/cgroup.procs"
	exec unshare -m --propagation private sh -c '
		mount --bind "$1" "$2" || exit 1
		last=
		while :; do
			s=$(cat "$2/stamp" 2>&1)
			[ "$s" != "$last" ] && echo "$(date +%T.%N | cut -c1-12) pid $$ reads: $s" >>"$3"
			last=$s
			sleep 0.1
		done' _ "$root/run/bootbank/current" "$view" "$demo/workload.log"
) &
workload_pid=$!
for _ in $(seq 1 50); do [ -s "$demo/workload.log" ] && break; sleep 0.1; done
sed 's/^/   workload: /' "$demo/workload.log"
run workload add demo-app --cgroup "${cgroup#"$cgroot"/}" --view "$view"

# expect CODE VERB...: run a verb that must end with exit code CODE (scan, precheck, remediate
# branch on their exit codes: docs/remediation.md).
expect() {
	local want=$1 rc=0
	shift
	run "$@" || rc=$?
	echo "   ${DIM}exit code $rc${OFF}"
	[ "$rc" -eq "$want" ]
}

step "Remediation, 1/7: build 2.1.0, live-patchable from 2.0.0, import it into the depot, and make it the desired image with enforce live patch"
build_image 2.1.0 '"2.0.0"'
run depot import "$demo/demo-os-2.1.0.bbi"
run desired set demo-os 2.1.0 --live-patch-mode enforce

step "Remediation, 2/7: compliance scan: non-compliant (what differs is said)"
expect 20 scan

step "Remediation, 3/7: pre-check: every check of both paths; the live path is possible"
expect 0 precheck

step "Remediation, 4/7: remediate: the live path (partial maintenance mode, stage, revision, hooks, switch-over), then a compliance check"
expect 0 remediate
sleep 0.3
echo "   the workload, never restarted (same pid), now reads the new stamp:"
tail -n 2 "$demo/workload.log" | sed 's/^/   workload: /'
grep -q "reads: demo-app of demo-os 2.1.0" "$demo/workload.log"
[ "$(grep -o 'pid [0-9]*' "$demo/workload.log" | sort -u | wc -l)" -eq 1 ]
echo "   bank A holds 2.1.0 and is activated: a reboot keeps the patch"
banks

step "Remediation, 5/7: compliance scan: compliant; every step was an event of one task"
expect 0 scan
run events -n 6

step "Remediation, 6/7: 3.0.0 cannot be live-patched: with enforce, remediate refuses and says why"
build_image 3.0.0 ""
run depot import "$demo/demo-os-3.0.0.bbi"
run desired set demo-os 3.0.0 --live-patch-mode enforce
expect 24 remediate
echo "   reboot into bank A (2.1.0, the live patch) first: bank A holds the revision in service"
# A reboot: the workload and every mount go, /run is empty again.
reboot_sim() {
	stop_live
	find "$root/run/bootbank" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
}
reboot_sim
run boot --simulate
run mark-good
run rev restore

step "Remediation, 7/7: with auto, remediate takes the reboot path: stage, activate, reboot required"
expect 21 remediate --live-patch-mode auto
expect 21 scan
banks
echo "   the reboot (simulated) and mark-good finish it:"
reboot_sim
run boot --simulate
run mark-good
expect 0 scan
current="removing the workload, its cgroup and the live patch's mounts"
stop_live

current="checking that nothing is left attached"
for _ in $(seq 1 50); do [ -z "$(losetup -j "$img")" ] && break; sleep 0.1; done
[ -z "$(losetup -j "$img")" ]
printf '\n%sdemo done in %s s%s: no loop device of %s is left attached\n' "$BOLD" \
	"$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $t0 }")" "$OFF" "$img"
