#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# /init of the check-boot initramfs (busybox sh): the whole "operating system" of a test image.
# It reports on the serial console what GRUB booted and what the bank holds, then either
# confirms the boot with `bankctl mark-good` (as the host's boot assessment would) or fails on
# purpose (powers off without confirming), and powers off. The harness (tests/boot/vm.py)
# reads these lines, all starting with "BOOTBANK-":
#   BOOTBANK-BOOTED bank=B reason=primary image=2.0.0 behaviour=good
#   BOOTBANK-GRUBENV A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none   (what GRUB saved)
#   BOOTBANK-BANK bank=B version=2.0.0                 (bank.json of the partition booted)
#   BOOTBANK-REVISION id=bootbank-test-2.0.0 version=2.0.0
#                      (after `bankctl rev restore`: the revision in service, and the
#                       "version" file of the live payload it shows)
#   BOOTBANK-MARK-GOOD rc=0 | BOOTBANK-FAIL on purpose: not marking good
#   BOOTBANK-ERROR what                                 (anything unexpected)
#   BOOTBANK-POWEROFF
# /etc/bootbank-test.conf (written by tests/boot/lib.sh) sets IMAGE_VERSION and BEHAVIOUR.
export PATH=/bin:/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /boot /bank
mount -t tmpfs tmpfs /run

IMAGE_VERSION=unknown
BEHAVIOUR=fail
. /etc/bootbank-test.conf

say() { echo "$*" >/dev/console; }
error() { say "BOOTBANK-ERROR $*"; }
finish() {
	sync
	for m in /run/bootbank/rev/* /run/bootbank/bank/*; do
		umount "$m" 2>/dev/null
	done
	umount /bank 2>/dev/null
	umount /boot 2>/dev/null
	say "BOOTBANK-POWEROFF"
	poweroff -f
	sleep 60
}

# The kernel's modules for the disk and ext4, in dependency order (tests/boot/lib.sh).
while read -r m; do
	[ -n "$m" ] || continue
	insmod "/lib/modules/$m" 2>/dev/null || error "insmod $m failed"
done </etc/modules.list

bank="" reason=""
for w in $(cat /proc/cmdline); do
	case $w in
	bootbank.bank=*) bank=${w#bootbank.bank=} ;;
	bootbank.reason=*) reason=${w#bootbank.reason=} ;;
	esac
done
say "BOOTBANK-BOOTED bank=${bank:-none} reason=${reason:-none} image=$IMAGE_VERSION behaviour=$BEHAVIOUR"

# findfs DEV-LABEL: the device of a filesystem label; the disk may take a moment to appear.
find_label() {
	i=0
	while [ $i -lt 50 ]; do
		d=$(findfs "LABEL=$1" 2>/dev/null) && [ -n "$d" ] && echo "$d" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# The boot state exactly as GRUB left it, in bankctl's compact form (docs/banks.md).
dev=$(find_label bootbank_boot) || { error "no filesystem labelled bootbank_boot"; finish; }
mount -t ext4 "$dev" /boot || { error "cannot mount $dev on /boot"; finish; }
env=/boot/bootbank/grubenv
v() { # NAME DEFAULT: a grubenv variable
	x=$(grep -a "^$1=" "$env" | head -n1)
	x=${x#*=}
	echo "${x:-$2}"
}
pin=$(v bootbank_pin none)
say "BOOTBANK-GRUBENV A=$(v bootbank_A_state empty):$(v bootbank_A_gen 0):$(v bootbank_A_tries 0):$(v bootbank_A_epoch 0)" \
	"B=$(v bootbank_B_state empty):$(v bootbank_B_gen 0):$(v bootbank_B_tries 0):$(v bootbank_B_epoch 0)" \
	"floor=$(v bootbank_floor 0) pin=$pin"

# What the booted bank's partition holds (its content record, written by bankctl stage).
case $bank in
A) label=bootbank_a ;;
B) label=bootbank_b ;;
*) label="" ;;
esac
if [ -n "$label" ] && d=$(find_label "$label") && mount -t ext4 -o ro "$d" /bank; then
	ver=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' /bank/bank.json | head -n1)
	say "BOOTBANK-BANK bank=$bank version=${ver:-none}"
	umount /bank
else
	error "cannot mount the partition of bank '$bank'"
fi

# The live payload comes back after the boot, as a host's boot sequence would bring it back
# (docs/livepatch.md, `rev restore`): from the booted bank's copy, as the revision in service.
if bankctl rev restore >/tmp/rev.out 2>&1; then
	cur=$(readlink /run/bootbank/current)
	say "BOOTBANK-REVISION id=${cur#rev/} version=$(cat /run/bootbank/current/version 2>/dev/null || echo none)"
else
	sed 's/^/bankctl: /' /tmp/rev.out >/dev/console
	error "bankctl rev restore failed"
fi

if [ "$BEHAVIOUR" = good ]; then
	bankctl mark-good >/tmp/mark.out 2>&1
	rc=$?
	sed 's/^/bankctl: /' /tmp/mark.out >/dev/console
	say "BOOTBANK-MARK-GOOD rc=$rc"
else
	say "BOOTBANK-FAIL on purpose: not marking good"
fi
finish
