#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# make check-boot: real boots in QEMU (TCG) with real GRUB, BIOS and UEFI (docs/check-boot.md).
#   BK_BUILD=build/cc tests/boot/run.sh [FILTER...]
# FILTER selects scenarios by name, e.g. "bios", "uefi/fallback", "rollback" (substring of
# FIRMWARE/SCENARIO). Each scenario starts from a fresh copy of the disk with GRUB installed,
# brings the banks into its starting state with bankctl on the host, then boots: every boot
# checks what GRUB chose (bank, reason), what it saved before the kernel (the grubenv seen from
# the booted system) against bankctl's selection model (explain-next-boot) and against the
# expected values written below, which image and bank content booted, and the boot state after
# the booted system marked itself good or failed on purpose. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/boot/lib.sh

[ "$(id -u)" -eq 0 ] || die "needs root (loop devices, mounts)"
if [ -z "${BK_BOOT_NS:-}" ]; then
	# Our own mount namespace: every mount of the run goes away with it.
	exec env BK_BOOT_NS=1 unshare -m --propagation private "$0" "$@"
fi
for t in qemu-system-x86_64 grub-install grub-mkimage mkfs.vfat mmd mcopy sfdisk partx losetup \
	udevadm mksquashfs cpio gzip python3 apt-get dpkg-deb openssl; do
	command -v "$t" >/dev/null || die "'$t' is missing (scripts/deps.sh ensure-boot installs it)"
done
for f in /bin/busybox "$OVMF_CODE" "$OVMF_VARS" /usr/lib/grub/i386-pc/modinfo.sh \
	/usr/lib/grub/x86_64-efi/modinfo.sh "$BANKCTL"; do
	[ -e "$f" ] || die "'$f' is missing (scripts/deps.sh ensure-boot installs it)"
done
trap cleanup EXIT
mkdir -p "$W"
exec > >(tee "$W/check-boot.log") 2>&1
FILTERS=("$@")
declare -A GOLDEN=()
KNOWN_LIST=()
BOOTS=()
T0=$(date +%s)

selected() { # NAME: run this scenario?
	local f
	[ ${#FILTERS[@]} -eq 0 ] && return 0
	for f in "${FILTERS[@]}"; do
		[[ $1 == *"$f"* ]] && return 0
	done
	return 1
}

# json EXPR: a Python expression over the JSON document d on stdin
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print("none" if r is None else r)' "$1"; }

# --- the things we boot -------------------------------------------------------------------
echo "== preparing (kernel, images, disks) in $W"
mkdir -p "$W/images"
kernel_prepare
echo "kernel: Debian $KVER"
pki_prepare
image_build 1.0.0 good
image_build 2.0.0 good
image_build 3.0.0 fail
image_build 1.0.1 good 1.0.0
img() { echo "$W/images/bootbank-test-$1.bbi"; }

# golden FW: a disk for FW with GRUB installed and both banks empty, kept as golden.img with
# its sandbox root; every scenario starts from a copy.
golden() {
	local t=$SECONDS
	disk_create "$1"
	mv "$D/disk.img" "$D/golden.img"
	mv "$D/root" "$D/golden-root"
	echo "$1: disk with GRUB ($1) ready in $((SECONDS - t)) s"
}

# scenario FW NAME: start NAME on a fresh copy of FW's golden disk; returns 1 when not selected.
scenario() {
	SCEN=$1/$2
	selected "$SCEN" || return 1
	FW=$1
	D=$W/$FW
	[ -n "${GOLDEN[$FW]:-}" ] || golden "$FW"
	GOLDEN[$FW]=1
	echo "== $SCEN"
	rm -rf "$D/root" "$D/$2".*.log "$D/$2".*.json
	cp --sparse=always "$D/golden.img" "$D/disk.img"
	cp -a "$D/golden-root" "$D/root"
	[ "$FW" = bios ] || cp "$OVMF_VARS" "$D/vars.fd"
	NBOOT=0
	return 0
}

# host CMD...: run a bankctl command on the host, boot partition mounted; fails the test on
# error.
host() {
	local out
	host_open
	if out=$(B "$@" 2>&1); then
		host_close
		return 0
	fi
	host_close
	not_ok "$SCEN: bankctl $* failed: $(tail -n1 <<<"$out")"
	return 1
}

# state_text: the boot state as bankctl reads it from the disk (compact form).
state_text() {
	host_open
	B status --json | json "d['boot']['text']"
	host_close
}

# boot KEY BANK REASON GRUBENV AFTER VERSION: boot once with KEY (none, r, shift-r, ctrl, ctrl-r) and
# check: GRUB boots BANK for REASON, as the model predicts; the grubenv GRUB saved before the
# kernel is GRUBENV, as the model predicts; the image VERSION booted from the partition of
# BANK; the boot state is AFTER once the system marked itself good or failed.
boot() {
	local key=$1 bank=$2 reason=$3 grubenv=$4 after=$5 version=$6 name pre which
	NBOOT=$((NBOOT + 1))
	name=${SCEN#*/}.$NBOOT
	# What bankctl's model says GRUB will do, from the state on the disk.
	which=next
	[ "$key" = none ] || which=with_rollback_key
	host_open
	pre=$(B explain-next-boot --json | json "' '.join(str(d['$which'][k]) for k in ('bank', 'reason', 'state_after'))")
	host_close

	vm_boot "$name" "$key"
	local t what="$SCEN boot $NBOOT" kl=""
	[ "$key" = none ] || kl=" $key"
	t=" ($(res seconds) s)"
	[ "$key" = none ] || what="$SCEN boot $NBOOT, key $key"
	BOOTS+=("$(printf '%-34s %6.1f s   GRUB %5.1f s  kernel %5.1f s  init %5.1f s  silent %4.1f s   bank %s (%s)' \
		"$FW/${SCEN#*/} #$NBOOT$kl" "$(num seconds)" "$(num seconds_to_grub)" \
		"$(num seconds_to_kernel)" "$(num seconds_to_init)" "$(num longest_silence)" \
		"$(res bank)" "$(res reason)")")
	echo "   boot $NBOOT (key $key): $(res seconds) s, bank $(res bank) ($(res reason)), log $D/$name.log"
	if [ "$(res powered_off)" != true ] || [ -z "$(res bank)" ]; then
		# Nothing to check further: say what happened and how the console ended.
		not_ok "$what: did not boot and power off by itself$t: $(res errors)"
		console_tail "$D/$name.log"
		return 1
	fi
	same "$what: powered off by itself, no errors$t" "$(res errors)" ""
	[ "$key" = none ] || same "$what: the key was typed at the prompt" "$(res key_sent)" true
	same "$what: GRUB booted bank $bank ($reason)" "$(res bank) $(res reason)" "$bank $reason"
	same "$what: GRUB's choice is the model's" "$(res bank) $(res reason)" "$(cut -d' ' -f1,2 <<<"$pre")"
	same "$what: GRUB saved $grubenv" "$(res grubenv)" "$grubenv"
	same "$what: GRUB saved what the model says" "$(res grubenv)" "$(cut -d' ' -f3- <<<"$pre")"
	same "$what: image $version booted from bank $bank's partition" \
		"$(res image) $(res bank_version)" "$version $version"
	same "$what: after rev restore, the live payload of $version is in service" \
		"$(res revision) $(res revision_version)" "bootbank-test-$version $version"
	if [ "$(res behaviour)" = good ]; then
		same "$what: the booted system marked it good" "$(res mark_good_rc)" 0
	else
		same "$what: the booted system failed on purpose" "$(res failed_on_purpose)" true
	fi
	same "$what: boot state after: $after" "$(state_text)" "$after"
	# The host now knows what it booted (as /proc/cmdline would tell it).
	mkdir -p "$D/root/run/bootbank"
	printf '{ "bank": "%s", "reason": "%s", "time": %s }\n' "$(res bank)" "$(res reason)" \
		"$(date +%s)" >"$D/root/run/bootbank/booted.json"
}

# known WHY: the checks up to known_end are a known failure.
known() {
	KNOWN=$1
	KNOWN_AT=$_known
}
known_end() {
	local why=$KNOWN
	[ -n "$why" ] || return 0
	KNOWN=
	if [ "$_known" -eq "$KNOWN_AT" ]; then
		not_ok "$SCEN passed although marked as a known failure ($why): remove the mark"
	else
		KNOWN_LIST+=("$SCEN: $why")
	fi
}

# num FIELD: a number of the last boot's result, 0 when it has none
num() {
	local v
	v=$(res "$1")
	echo "${v:-0}"
}

# console_tail LOG: the last lines of a console log, escape sequences removed
console_tail() {
	sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' "$1" | tr '\r' '\n' | grep -a -v '^ *$' | tail -n 6 |
		cut -c1-120 | sed 's/^/      | /'
}

# host_livepatch IMAGE [rollback]: on the host, the booted bank's live payload brought back
# as the revision in service (rev restore), then a live patch to IMAGE (livepatch apply:
# stages the alternate bank, activates it, switches to the revision mounted from its copy)
# and, with "rollback", its rollback (back to the revision before, the activation undone);
# checks the revision in service; then the host "shuts down": its run/ goes (mounts and
# pointers).
host_livepatch() {
	local out rc=0 want before
	want=$(basename "$1" .bbi)
	host_open
	out=$(B rev restore 2>&1) || rc=$?
	before=$(readlink "$D/root/run/bootbank/current")
	if [ $rc -eq 0 ]; then
		out=$(B livepatch apply "$1" 2>&1) || rc=$?
	fi
	if [ $rc -eq 0 ]; then
		same "$SCEN: on the host, $want is in service after livepatch apply" \
			"$(readlink "$D/root/run/bootbank/current")" "rev/$want"
	fi
	if [ $rc -eq 0 ] && [ "${2:-}" = rollback ]; then
		out=$(B livepatch rollback 2>&1) || rc=$?
		[ $rc -ne 0 ] || same "$SCEN: on the host, ${before#rev/} is in service again after livepatch rollback" \
			"$(readlink "$D/root/run/bootbank/current")" "$before"
	fi
	[ $rc -eq 0 ] || not_ok "$SCEN: live patch on the host failed: $(tail -n1 <<<"$out")"
	findmnt -l -n -o TARGET | grep -F "$D/root/run/" | sort -r | while read -r m; do
		umount "$m" || umount -l "$m"
	done
	rm -rf "$D/root/run"
	host_close
	return $rc
}

# Starting states, made with bankctl on the host: stage, activate, a simulated boot (the
# model's; only the boots below are real) and mark-good.
setup_a_good() {
	host stage "$(img 1.0.0)" --activate && host boot --simulate && host mark-good A
}
setup_both_good() { # A 1.0.0 good, B 2.0.0 good and newer (generation 2)
	setup_a_good && host stage "$(img 2.0.0)" --activate && host boot --simulate &&
		host mark-good B
}

run_firmware() {
	local fw=$1
	local A1="A=good:1:0:1" B0="B=empty:0:0:0" AB="A=good:1:0:1 B=good:2:0:1 floor=1"

	if scenario "$fw" normal; then
		setup_a_good &&
			boot none A primary "$A1 $B0 floor=1 pin=none" "$A1 $B0 floor=1 pin=none" 1.0.0
	fi

	if scenario "$fw" try-boot; then
		setup_a_good && host stage "$(img 2.0.0)" --activate &&
			boot none B primary "$A1 B=trying:2:2:1 floor=1 pin=none" \
				"$A1 B=good:2:0:1 floor=1 pin=none" 2.0.0
	fi

	if scenario "$fw" fallback; then
		# 3.0.0 never marks itself good: two tries, then GRUB marks it bad and boots A.
		setup_a_good && host stage "$(img 3.0.0)" && host activate --tries 2 B &&
			boot none B primary "$A1 B=trying:2:1:1 floor=1 pin=none" \
				"$A1 B=trying:2:1:1 floor=1 pin=none" 3.0.0 &&
			boot none B primary "$A1 B=trying:2:0:1 floor=1 pin=none" \
				"$A1 B=trying:2:0:1 floor=1 pin=none" 3.0.0 &&
			boot none A fallback "$A1 B=bad:2:0:1 floor=1 pin=none" \
				"$A1 B=bad:2:0:1 floor=1 pin=none" 1.0.0
	fi

	if scenario "$fw" rollback-r; then
		# r at the countdown: bank A, pinned; the next boot without a key stays on A.
		setup_both_good &&
			boot r A rollback "$AB pin=A" "$AB pin=A" 1.0.0 &&
			boot none A rollback "$AB pin=A" "$AB pin=A" 1.0.0
	fi

	if scenario "$fw" rollback-shift-r; then
		setup_both_good && boot shift-r A rollback "$AB pin=A" "$AB pin=A" 1.0.0
	fi

	if scenario "$fw" rollback-ctrl; then
		# BIOS: Ctrl held through the window. UEFI: Ctrl+R, since GRUB 2.06's EFI console
		# reports modifiers only with a key stroke (ReadKeyStrokeEx), never a Ctrl held
		# alone (docs/grub.md).
		local key=ctrl
		[ "$fw" = uefi ] && key=ctrl-r
		setup_both_good && boot $key A rollback "$AB pin=A" "$AB pin=A" 1.0.0
	fi

	if scenario "$fw" roll-forward; then
		# The operator rolled back with bankctl (GRUB honours the pin it wrote), then rolls
		# forward: B boots again as the primary bank.
		setup_both_good && host rollback &&
			boot none A rollback "$AB pin=A" "$AB pin=A" 1.0.0 &&
			host roll-forward &&
			boot none B primary "$AB pin=none" "$AB pin=none" 2.0.0
	fi

	if scenario "$fw" livepatch-reboot; then
		# A 1.0.0 booted and good, its live payload in service; a live patch to 1.0.1 on the
		# host stages and activates bank B; the reboot boots B (a try), and the patch's live
		# payload is in service again, from bank B's copy.
		setup_a_good && host_livepatch "$(img 1.0.1)" &&
			boot none B primary "$A1 B=trying:2:2:1 floor=1 pin=none" \
				"$A1 B=good:2:0:1 floor=1 pin=none" 1.0.1
	fi

	if scenario "$fw" livepatch-rollback-reboot; then
		# The same live patch, rolled back on the host before the reboot: bank B is staged
		# but no longer activated, so A boots, its live payload in service again.
		setup_a_good && host_livepatch "$(img 1.0.1)" rollback &&
			boot none A primary "$A1 B=staged:0:0:1 floor=1 pin=none" \
				"$A1 B=staged:0:0:1 floor=1 pin=none" 1.0.0
	fi
}

run_firmware bios
run_firmware uefi

echo
echo "== boot times (TCG; a boot is given up after $BOOT_STALL s without console output or $BOOT_CAP s in all)"
for b in "${BOOTS[@]}"; do
	echo "$b"
done
echo "check-boot: ${#BOOTS[@]} boots in $(($(date +%s) - T0)) s"
echo
for k in "${KNOWN_LIST[@]}"; do
	echo "known failure: $k"
done
echo "$_passed passed, $_failed failed, $_known known failures"
[ "$_failed" -eq 0 ] && [ "$_passed" -gt 0 ]
