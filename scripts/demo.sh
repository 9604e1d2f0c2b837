#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# make demo: bootbank's main job on a sparse disk image under build/demo, reached through loop
# devices (no real disk is touched): partition it, build two signed images, stage, activate,
# boot (simulated), mark good, roll back at the boot prompt, roll forward, and refuse a tampered
# bundle. Needs root. Everything it attaches is detached when it ends, also when it fails.
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
for t in losetup mksquashfs openssl python3 dd sha256sum; do
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
detach_all() {
	local l
	[ -e "$img" ] || return 0
	for l in $(losetup -j "$img" 2>/dev/null | cut -d: -f1); do
		losetup -d "$l" 2>/dev/null || true
	done
}
finish() {
	local rc=$?
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

step "Build two small signed images: a squashfs root, a kernel and an initrd each"
bash tests/pki/make-pki.sh "$demo/pki" >/dev/null
cp "$demo/pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
for v in 1.0.0 2.0.0; do
	s=$demo/src/$v
	mkdir -p "$s/root/etc" "$s/root/usr/bin"
	printf 'NAME="demo-os"\nVERSION="%s"\n' "$v" >"$s/root/etc/os-release"
	printf '#!/bin/sh\necho hello from demo-os %s\n' "$v" >"$s/root/usr/bin/hello"
	chmod +x "$s/root/usr/bin/hello"
	mksquashfs "$s/root" "$s/root.squashfs" -quiet -noappend -all-root >/dev/null
	# Stand-ins for a kernel and an initrd (real ones come with the bootloader integration).
	head -c $((6 << 20)) /dev/urandom >"$s/vmlinuz"
	head -c $((3 << 20)) /dev/urandom >"$s/initrd.img"
	cat >"$s/spec.json" <<EOF
{ "name": "demo-os", "version": "$v", "build": "${v//./}", "compatible": "demo-x86_64",
  "security_epoch": 1, "description": "bootbank demo image $v",
  "payloads": [
    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
    { "name": "initrd.img", "type": "initrd", "source": "initrd.img" },
    { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" } ] }
EOF
	"$BANKCTL" image build "$s/spec.json" -o "$demo/demo-os-$v.bbi" --key "$demo/pki/signer.key" \
		--cert "$demo/pki/signer.crt" --intermediate "$demo/pki/intermediate.crt" >/dev/null
	printf '   %s' "$CYAN"
	"$BANKCTL" image verify "$demo/demo-os-$v.bbi" --keyring "$demo/pki/keyring.pem" | tr -d '\n'
	printf '%s\n' "$OFF"
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

current="checking that nothing is left attached"
[ -z "$(losetup -j "$img")" ]
printf '\n%sdemo done in %s s%s: no loop device of %s is left attached\n' "$BOLD" \
	"$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $t0 }")" "$OFF" "$img"
