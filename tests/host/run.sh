#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# make check-host: a real Debian 12 system with systemd boots from a bootbank bank in QEMU
# (TCG, BIOS and UEFI, GRUB) and looks after itself (docs/check-host.md). The root filesystem
# comes from mmdebstrap (cached under build/check-host/cache, keyed by the package list), this
# project's Debian package is installed into it, and it is packed as the squashfs rootfs
# payload of signed images 1.0.0, 2.0.0, 2.0.1 (a live patch of 2.0.0), 3.0.0 (carries a
# failing required health check) and 4.0.0; the Debian kernel and an initramfs made by
# initramfs-tools with bootbank's boot method are payloads beside it. Three VMs on one disk,
# each driven through its serial console across its own reboots (tests/host/vm-host.py):
#   BIOS  1 first-boot   1.0.0 activated in bank A on the host: A's trial boot, marked good
#         2 update       stage 2.0.0 inside the VM (--activate), reboot: B's trial boot,
#                        marked good, A keeps 1.0.0
#         4 rollback     the rollback key at GRUB: A (1.0.0) boots, reason rollback;
#                        roll-forward inside the VM, reboot: B again
#   UEFI  3 bad-update   stage 3.0.0 (into A), reboot: its required check fails, A is marked
#                        bad with that reason, the VM reboots by itself into B (fallback)
#         5 live patch   of a systemd workload unit (2.0.1), then a reboot into the patched bank
#   then the disk's boot state is read on the host, and 3.0.0 staged into B with a damaged payload
#   BIOS  6 corrupt      the initramfs says so and reboots, GRUB falls back to A
#         7 deadline     stage 4.0.0 with a hanging required check and a 60 s deadline in /etc:
#                        bootbank-deadline.timer marks B bad and reboots, GRUB falls back to A
#         8 remediate    depot import, desired set, scan, remediate --reboot: 4.0.0 in B,
#                        assessed good, scan compliant
# then the disk's boot state is read on the host again. check.py judges the three runs.
set -u
export BK_BOOT_DIR=${BK_HOST_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build/check-host/work}
. "$(dirname "$0")/../boot/lib.sh"

if [ -z "${BK_HOST_UNSHARED:-}" ]; then
	[ "$(id -u)" -eq 0 ] || die "needs root (loop devices, mounts, chroot)"
	export BK_HOST_UNSHARED=1
	exec unshare -m --propagation private "$0" "$@"
fi

H=$REPO/build/check-host
CACHE=$H/cache
STALL=${BK_HOST_STALL_TIMEOUT:-600}
CAP=${BK_HOST_TIMEOUT:-7200}
SUITE=bookworm
MIRROR=${BK_HOST_MIRROR:-http://deb.debian.org/debian}
PACKAGES="systemd-sysv udev initramfs-tools busybox linux-image-amd64 util-linux mount libmount1
libblkid1 libfdisk1 libssl3 libjson-c5 libinih1 libubootenv0.1 e2fsprogs"
MMDEB_OPTS="--variant=minbase --dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-exclude=/usr/share/man/* --dpkgopt=path-exclude=/usr/share/locale/*"
# the modules the initramfs needs besides what bootbank's hook adds (ext4 squashfs erofs
# overlay loop): the virtio disk
INITRAMFS_MODULES="virtio_pci virtio_blk"
trap cleanup EXIT
rm -rf "$W"
mkdir -p "$W" "$CACHE" "$W/images"
T0=$(date +%s)
phase() { echo "# $(($(date +%s) - T0)) s: $*"; }

# make check-host builds the package first (make deb, build/deb); BK_HOST_DEB names another.
DEB=${BK_HOST_DEB:-$(ls "$REPO"/build/deb/bootbank_*.deb 2>/dev/null | head -n1)}
[ -f "$DEB" ] || die "no bootbank_*.deb in build/deb (make deb)"
# The package's own dependencies (first alternatives, no versions) go into the root too: a
# library the package starts to need (libcurl4 with URL staging) can never fail its dpkg -i.
PACKAGES="$PACKAGES $(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep -v '^$' | sort -u | tr '\n' ' ')"

# --- the root filesystem (cached) ---------------------------------------------------------
KEY=$(printf '%s\n' "$SUITE" "$MIRROR" "$MMDEB_OPTS" $PACKAGES | sha256sum | cut -c1-16)
ROOT_TAR=$CACHE/root-$KEY.tar
if [ ! -s "$ROOT_TAR" ]; then
	phase "mmdebstrap $SUITE (cache $ROOT_TAR)"
	# shellcheck disable=SC2086
	nice mmdebstrap $MMDEB_OPTS --format=tar --include="$(echo $PACKAGES | tr ' ' ,)" "$SUITE" \
		"$ROOT_TAR.tmp" "$MIRROR" >"$H/mmdebstrap.log" 2>&1 ||
		die "mmdebstrap failed: $(tail -n3 "$H/mmdebstrap.log")"
	mv "$ROOT_TAR.tmp" "$ROOT_TAR"
fi
R=$W/root
mkdir -p "$R"
phase "unpack the root"
tar -C "$R" -xf "$ROOT_TAR" || die "cannot unpack $ROOT_TAR"
KVER=$(ls "$R/lib/modules" | head -n1)
[ -n "$KVER" ] && [ -f "$R/boot/vmlinuz-$KVER" ] || die "no kernel in the root"

# --- this build into it: the project's Debian package ------------------------------------------
phase "dpkg -i $(basename "$DEB") in the root"
cp "$DEB" "$R/tmp/bootbank.deb"
# initramfs-tools' trigger (the package adds a hook) would rebuild the root's own initramfs:
# this test builds the one the image carries itself, below
sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$R/etc/initramfs-tools/update-initramfs.conf"
chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg -i /tmp/bootbank.deb \
	>"$W/dpkg.log" 2>&1 || die "dpkg -i failed: $(tail -n3 "$W/dpkg.log")"
rm -f "$R/tmp/bootbank.deb"
check "the package is installed in the root" \
	bash -c "chroot '$R' dpkg-query -W -f='\${Status}' bootbank | grep -q 'install ok installed'"
UNITS="/usr/lib/systemd/system/bootbank-assess.service /usr/lib/systemd/system/bootbank-deadline.timer
/usr/lib/systemd/system/bootbank-deadline.service /usr/lib/systemd/system/bootbank-rev-restore.service
/usr/lib/tmpfiles.d/bootbank.conf /usr/share/initramfs-tools/hooks/bootbank
/usr/share/initramfs-tools/scripts/bootbank"
for f in /usr/sbin/bankctl $UNITS; do
	check "the package installs $f" test -f "$R$f"
done
for d in /etc/bootbank/health.d/required.d /etc/bootbank/health.d/wanted.d; do
	check "the package makes $d" test -d "$R$d"
done
# make install DESTDIR= installs the same (the issue's list), into a directory of its own
phase "make install DESTDIR="
make -C "$REPO" --no-print-directory install DESTDIR="$W/destdir" PREFIX=/usr \
	O="${BK_BUILD:-build/cc}" >"$W/install.log" 2>&1 ||
	die "make install failed: $(tail -n3 "$W/install.log")"
for f in /usr/sbin/bankctl $UNITS; do
	check "make install DESTDIR= installs $f" test -f "$W/destdir$f"
done
for d in /etc/bootbank/health.d/required.d /etc/bootbank/health.d/wanted.d; do
	check "make install DESTDIR= makes $d" test -d "$W/destdir$d"
done
rm -rf "$W/destdir"

# The host's configuration, as an installer writes it (docs/install.md).
pki_prepare
echo bkhost >"$R/etc/hostname"
printf '127.0.1.1 bkhost\n' >>"$R/etc/hosts"
printf 'LABEL=bootbank_boot /boot ext4 defaults 0 2\n' >"$R/etc/fstab"
printf '[system]\ncompatible = %s\nbootloader = grub\n' "$COMPATIBLE" >"$R/etc/bootbank/system.conf"
cp "$W/pki/keyring.pem" "$R/etc/bootbank/keyring.pem"
: >"$R/etc/machine-id"
chroot "$R" passwd -qd root >/dev/null 2>&1 # the emergency shell lets a person look
mkdir -p "$R/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$R/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<-'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200 %I linux
EOF
# the check every image carries: the system came up (the assessment runs after multi-user)
cat >"$R/etc/bootbank/health.d/required.d/10-booted" <<-'EOF'
#!/bin/sh
# check-host: the booted bank is what the initramfs mounted as /
. /run/bootbank/root.env || exit 1
grep -q "bootbank.bank=$BANK" /proc/cmdline || { echo "mounted bank $BANK is not the booted one" >&2; exit 1; }
echo "root $PAYLOAD from bank $BANK, data in $DATA"
EOF
chmod 0755 "$R/etc/bootbank/health.d/required.d/10-booted"
# a workload that is a systemd unit (scenario 5): it reads the revision in service at its view
# every second; its drop-in is bootbank's example with that view
mkdir -p "$R/opt/bkhost-app" "$R/etc/systemd/system/bkhost-app.service.d"
cat >"$R/etc/systemd/system/bkhost-app.service" <<-'EOF'
[Unit]
Description=check-host workload (reads /opt/bkhost-app/version)
[Service]
ExecStart=/bin/sh -c 'while :; do cat /opt/bkhost-app/version >/run/bkhost-app.seen.new 2>&1; mv /run/bkhost-app.seen.new /run/bkhost-app.seen; sleep 1; done'
[Install]
WantedBy=multi-user.target
EOF
sed 's|/opt/acme|/opt/bkhost-app|' "$R/usr/share/bootbank/systemd/workload.conf.example" \
	>"$R/etc/systemd/system/bkhost-app.service.d/bootbank.conf"
systemctl --root="$R" enable bkhost-app.service >/dev/null 2>&1 || die "cannot enable bkhost-app"
systemctl --root="$R" enable bootbank-assess.service bootbank-deadline.timer \
	bootbank-rev-restore.service >"$W/enable.log" 2>&1 ||
	die "systemctl enable failed: $(tail -n2 "$W/enable.log")"
# units that only slow a test VM down or cannot work in it (no network, no VGA console used,
# no kernel modules in the root: they are in the initramfs)
systemctl --root="$R" mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
	e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-networkd-wait-online.service \
	getty@tty1.service systemd-pstore.service sys-kernel-debug.mount sys-kernel-tracing.mount \
	dev-hugepages.mount systemd-hwdb-update.service ldconfig.service \
	systemd-journal-catalog-update.service getty-static.service systemd-journal-flush.service \
	modprobe@configfs.service modprobe@dm_mod.service modprobe@fuse.service \
	modprobe@loop.service modprobe@drm.service modprobe@efi_pstore.service >/dev/null 2>&1 || true
# the journal in RAM (no flush to the data partition at each boot), a stop job never waits
# the default 90 s at a reboot of the test VM
mkdir -p "$R/etc/systemd/journald.conf.d" "$R/etc/systemd/system.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$R/etc/systemd/journald.conf.d/check-host.conf"
printf '[Manager]\nDefaultTimeoutStopSec=20s\n' >"$R/etc/systemd/system.conf.d/check-host.conf"

# --- the initramfs: initramfs-tools with bootbank's boot method, only the modules needed -----
phase "mkinitramfs $KVER"
printf '%s\n' $INITRAMFS_MODULES >"$R/etc/initramfs-tools/modules"
sed -i 's/^MODULES=.*/MODULES=list/; s/^COMPRESS=.*/COMPRESS=zstd/' \
	"$R/etc/initramfs-tools/initramfs.conf"
mount -t proc proc "$R/proc"
chroot "$R" mkinitramfs -o /tmp/initrd.img "$KVER" >"$W/mkinitramfs.log" 2>&1
rc=$?
umount "$R/proc"
[ $rc -eq 0 ] || die "mkinitramfs failed: $(tail -n3 "$W/mkinitramfs.log")"
mv "$R/tmp/initrd.img" "$W/initrd.img"
cp "$R/boot/vmlinuz-$KVER" "$W/vmlinuz"
check "the initramfs has bootbank's boot method" \
	bash -c "cp '$W/initrd.img' '$R/tmp/' && chroot '$R' unmkinitramfs /tmp/initrd.img /tmp/x && test -f '$R/tmp/x/scripts/bootbank' && test -x '$R/tmp/x/sbin/blkid'"
rm -rf "$R/tmp/x" "$R/tmp/initrd.img"
echo "# initramfs $(du -h "$W/initrd.img" | cut -f1), kernel $(du -h "$W/vmlinuz" | cut -f1)"

# --- the images ----------------------------------------------------------------------------
# image VERSION: the root as it is now, versioned, as a squashfs without the kernel and its
# modules (they are in the initramfs and beside it)
image() {
	local ver=$1 from=${2:-} lp="" d=$W/images/src-$1
	mkdir -p "$d/app"
	printf 'PRETTY_NAME="bkhost %s"\nNAME=bkhost\nVERSION=%s\nID=debian\n' "$ver" "$ver" \
		>"$R/etc/os-release"
	echo "$ver" >"$R/etc/bkhost-version"
	echo "$ver" >"$R/etc/bkhost-conflict"
	echo "$ver" >"$d/app/version"
	# the directories stay (mount points), their content does not
	nice mksquashfs "$R" "$d/root.squashfs" -quiet -noappend -comp zstd -Xcompression-level 3 \
		-wildcards -e 'usr/lib/modules/*' 'boot/*' 'tmp/*' 'proc/*' >/dev/null 2>&1 ||
		die "mksquashfs $ver failed"
	mksquashfs "$d/app" "$d/app.squashfs" -quiet -noappend -all-root >/dev/null 2>&1 ||
		die "mksquashfs app $ver failed"
	cp "$W/vmlinuz" "$d/vmlinuz"
	cp "$W/initrd.img" "$d/initrd.img"
	[ -z "$from" ] || lp="\"live_patch\": { \"from\": [ \"$from\" ] },"
	cat >"$d/spec.json" <<-EOF
	{ "name": "bkhost", "version": "$ver", "build": "check-host", "compatible": "$COMPATIBLE",
	  "security_epoch": 1, $lp "payloads": [
	    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
	    { "name": "initrd.img", "type": "initrd", "source": "initrd.img" },
	    { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" },
	    { "name": "app.squashfs", "type": "component", "source": "app.squashfs",
	      "live": true, "mountpoint": "/opt/bkhost-app" } ] }
	EOF
	"$BANKCTL" image build "$d/spec.json" -o "$W/images/bkhost-$ver.bbi" \
		--key "$W/pki/signer.key" --cert "$W/pki/signer.crt" \
		--intermediate "$W/pki/intermediate.crt" >/dev/null || die "image build $ver failed"
	echo "# image $ver: root.squashfs $(du -h "$d/root.squashfs" | cut -f1)"
	rm -rf "$d"
}
phase "images"
image 1.0.0
image 2.0.0
image 2.0.1 2.0.0
cat >"$R/etc/bootbank/health.d/required.d/50-v3-broken" <<-'EOF'
#!/bin/sh
echo "check-host: 3.0.0 is broken on purpose" >&2
exit 1
EOF
chmod 0755 "$R/etc/bootbank/health.d/required.d/50-v3-broken"
image 3.0.0
# 4.0.0 is healthy again (2.0.0's root, another version): scenario 7's trial boot (whose /etc
# layer brings a check that hangs) and scenario 8's remediation target
rm "$R/etc/bootbank/health.d/required.d/50-v3-broken"
image 4.0.0

# --- the disk ------------------------------------------------------------------------------
phase "disk"
# One disk for both firmwares: GRUB for BIOS (the BIOS boot partition) and for UEFI (the ESP,
# written with mtools), one boot partition and grubenv. The first VM runs under SeaBIOS, the
# second under OVMF, the third under SeaBIOS again.
FW=bios
D=$W/disk
mkdir -p "$D/root/etc/bootbank" "$D/root/boot"
cp "$W/pki/keyring.pem" "$D/root/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = %s\nbootloader = grub\n' "$COMPATIBLE" >"$D/root/etc/bootbank/system.conf"
truncate -s 1600M "$D/disk.img"
B disk init "$D/disk.img" --boot-size 48M --bank-size 320M --data-size 640M --bios-boot \
	--esp-size 16M >"$D/disk-init.log" 2>&1 || die "disk init failed: $(tail -n1 "$D/disk-init.log")"
host_open
install_grub_files
cat >"$D/root/boot/bootbank/local.cfg" <<-'EOF'
# check-host: the bootbank boot method, the kernel's console on the serial port
set bootbank_cmdline="boot=bootbank console=ttyS0,115200 panic=30 systemd.show_status=1"
set bootbank_timeout=3
EOF
install_grub_bios
install_grub_uefi
# 1.0.0 into A, activated: the first boot is A's trial boot
B stage "$W/images/bkhost-1.0.0.bbi" --activate >"$D/stage.log" 2>&1 ||
	die "stage 1.0.0 failed: $(tail -n2 "$D/stage.log")"
B status >"$D/status-0.txt"
# 2.0.0 and 3.0.0 on the data partition, for the VM to stage
mkdir -p "$W/data"
mount -t ext4 "${LOOP}p4" "$W/data" || die "cannot mount the data partition"
mkdir -p "$W/data/bkhost"
cp "$W/images/bkhost-2.0.0.bbi" "$W/images/bkhost-2.0.1.bbi" "$W/images/bkhost-3.0.0.bbi" \
	"$W/images/bkhost-4.0.0.bbi" "$W/data/bkhost/"
# scenario 7: what the admin puts into /etc before the stage (carried into the new bank's
# layer): a required check that hangs, and a deadline of 60 s instead of 20 min (the empty
# OnActiveSec= first: without it the drop-in adds a second deadline to the unit's 20 min)
cat >"$W/data/bkhost/60-hang" <<-'EOF'
#!/bin/sh
# check-host scenario 7: a required check that never ends
echo "check-host: 60-hang hangs" >/dev/console
exec sleep infinity
EOF
chmod 0755 "$W/data/bkhost/60-hang"
printf '[Timer]\nOnActiveSec=\nOnActiveSec=60s\n' >"$W/data/bkhost/deadline.conf"
umount "$W/data"
host_close
phase "boot"

# --- the VM ----------------------------------------------------------------------------------
PROMPT='root@bkhost:[^\n]*# '
# status_of BANK: "bankctl status" line pattern helper is done on the host afterwards
cat >"$W/script.json" <<EOF
[
 {"name": "1: GRUB boots A (primary)", "expect": "Command line: [^\\n]*bootbank.bank=A bootbank.reason=primary"},
 {"name": "1: initramfs mounts A's root", "expect": "bootbank: bank A \\\\(primary\\\\): root root.squashfs from (/dev/\\\\S+), data in (\\\\w+)"},
 {"name": "1: login", "expect": "$PROMPT"},
 {"name": "1: assessment done", "run": "systemctl is-system-running --wait >/dev/null; systemctl show -p ActiveState,Result bootbank-assess.service; cat /run/bootbank/assess.json; echo"},
 {"name": "1: status", "run": "bankctl status"},
 {"name": "1: root is read-only, /etc writable", "run": "touch /usr/x 2>/dev/null && echo ROOT-RW || echo ROOT-RO; echo keep-me >/etc/bkhost-local && echo local >/etc/bkhost-conflict && echo ETC-RW; findmnt -no FSTYPE /; findmnt -no FSTYPE /etc"},
 {"name": "2: stage 2.0.0 --activate", "run": "bankctl stage /run/bootbank/data/bkhost/bkhost-2.0.0.bbi --activate; cat /run/bootbank/data/etc/B/image"},
 {"name": "2: reboot", "send": "systemctl reboot\\n"},
 {"name": "2: GRUB boots B (primary)", "expect": "Command line: [^\\n]*bootbank.bank=B bootbank.reason=primary"},
 {"name": "2: initramfs mounts B's root", "expect": "bootbank: bank B \\\\(primary\\\\): root root.squashfs"},
 {"name": "2: login", "expect": "$PROMPT"},
 {"name": "2: assessment done", "run": "systemctl is-system-running --wait >/dev/null; systemctl show -p ActiveState,Result bootbank-assess.service; cat /run/bootbank/assess.json; echo; cat /etc/bkhost-version"},
 {"name": "2: status", "run": "bankctl status"},
 {"name": "2: /etc carried forward", "run": "cat /etc/bkhost-local /etc/bkhost-conflict; bankctl events -n 30 | grep -a 'etc carry-forward'"},
 {"name": "4: reboot for the rollback key", "send": "systemctl reboot\\n"},
 {"name": "4: rollback key at GRUB", "key": "r", "expect": "Roll back to bank"},
 {"name": "4: GRUB boots A (rollback)", "expect": "Command line: [^\\n]*bootbank.bank=A bootbank.reason=rollback"},
 {"name": "4: initramfs mounts A's root", "expect": "bootbank: bank A \\\\(rollback\\\\): root root.squashfs"},
 {"name": "4: login", "expect": "$PROMPT"},
 {"name": "4: version and status", "run": "systemctl is-system-running --wait >/dev/null; cat /etc/bkhost-version; bankctl status; systemctl show -p ActiveState bootbank-assess.service"},
 {"name": "4: roll-forward", "run": "bankctl roll-forward"},
 {"name": "4: reboot", "send": "systemctl reboot\\n"},
 {"name": "4: GRUB boots B (primary) again", "expect": "Command line: [^\\n]*bootbank.bank=B bootbank.reason=primary"},
 {"name": "4: login", "expect": "$PROMPT"},
 {"name": "4: version after roll-forward", "run": "cat /etc/bkhost-version; cat /proc/cmdline"},
 {"name": "4: where the boot's time went", "run": "systemd-analyze time; systemd-analyze blame --no-pager | head -n 12"},
 {"name": "4: poweroff (the next VM runs under UEFI)", "send": "systemctl poweroff\\n"},
 {"name": "4: VM off", "wait_exit": true}
]
EOF
cat >"$W/script-uefi.json" <<EOF
[
 {"name": "3: OVMF, GRUB boots B (primary)", "expect": "Command line: [^\\n]*bootbank.bank=B bootbank.reason=primary"},
 {"name": "3: login (UEFI)", "expect": "$PROMPT"},
 {"name": "3: booted under UEFI", "run": "test -d /sys/firmware/efi && echo UEFI"},
 {"name": "3: stage 3.0.0 --activate", "run": "bankctl stage /run/bootbank/data/bkhost/bkhost-3.0.0.bbi --activate"},
 {"name": "3: reboot", "send": "systemctl reboot\\n"},
 {"name": "3: GRUB boots A (primary)", "expect": "Command line: [^\\n]*bootbank.bank=A bootbank.reason=primary"},
 {"name": "3: initramfs mounts A's root", "expect": "bootbank: bank A \\\\(primary\\\\): root root.squashfs"},
 {"name": "3: assess marks A bad", "expect": "bank A \\\\(trying, trial boot\\\\): marked bad"},
 {"name": "3: the VM reboots by itself, GRUB falls back to B", "expect": "Command line: [^\\n]*bootbank.bank=B bootbank.reason=fallback"},
 {"name": "3: initramfs mounts B's root (fallback)", "expect": "bootbank: bank B \\\\(fallback\\\\): root root.squashfs"},
 {"name": "3: login", "expect": "$PROMPT"},
 {"name": "3: status", "run": "cat /proc/cmdline; cat /etc/bkhost-version; bankctl status"},
 {"name": "3: /etc layers", "run": "cat /etc/bkhost-local 2>&1; ls /run/bootbank/data/etc"},
 {"name": "5: the workload runs 2.0.0", "run": "bankctl workload add app --unit bkhost-app.service --view /opt/bkhost-app && sleep 2 && cat /run/bkhost-app.seen && systemctl show -p MainPID --value bkhost-app.service"},
 {"name": "5: livepatch apply 2.0.1", "run": "bankctl livepatch apply /run/bootbank/data/bkhost/bkhost-2.0.1.bbi"},
 {"name": "5: the workload sees 2.0.1, same pid", "run": "sleep 3; cat /run/bkhost-app.seen; systemctl show -p MainPID --value bkhost-app.service; bankctl status"},
 {"name": "5: reboot", "send": "systemctl reboot\\n"},
 {"name": "5: GRUB boots A (primary), the patched bank", "expect": "Command line: [^\\n]*bootbank.bank=A bootbank.reason=primary"},
 {"name": "5: login", "expect": "$PROMPT"},
 {"name": "5: after the reboot", "run": "systemctl is-system-running --wait >/dev/null; cat /etc/bkhost-version; cat /run/bkhost-app.seen; readlink /run/bootbank/current; cat /run/bootbank/assess.json; echo"},
 {"name": "end: poweroff", "send": "systemctl poweroff\\n"},
 {"name": "end: VM off", "wait_exit": true}
]
EOF
# BK_HOST_QUICK=bios|uefi: scenario 1 alone under that firmware, then where the boot's time
# went (to work on the boot's speed: a few minutes instead of the whole run)
if [ -n "${BK_HOST_QUICK:-}" ]; then
	python3 - "$W/script.json" <<-'PY'
	import json, sys
	s = [x for x in json.load(open(sys.argv[1])) if x["name"].startswith("1:")]
	s += [{"name": "1: where the boot's time went", "run": "systemd-analyze time; systemd-analyze blame --no-pager | head -n 15"},
	      {"name": "1: poweroff", "send": "systemctl poweroff\n"}, {"name": "1: VM off", "wait_exit": True}]
	json.dump(s, open(sys.argv[1], "w"))
	PY
	python3 "$REPO/tests/host/vm-host.py" --firmware "$BK_HOST_QUICK" --vars "$D/vars.fd" \
		--code "$OVMF_CODE" --disk "$D/disk.img" --log "$D/console-quick.log" \
		--script "$W/script.json" --stall "$STALL" --timeout "$CAP" >"$D/result-quick.json"
	rc=$?
	python3 - "$D/result-quick.json" <<-'PY'
	import json, sys
	r = json.load(open(sys.argv[1]))
	for s in r["steps"]:
	    print("# [%6.1f s] %s" % (s["end"], s["name"]))
	    if "time went" in s["name"]:
	        print("\n".join("#   " + l for l in s["output"].splitlines()))
	print("# error: %s; VM %.0f s, longest silence %.0f s" % (r["error"], r["seconds"], r["longest_silence"]))
	PY
	phase "quick run done (rc $rc)"
	exit $rc
fi
python3 "$REPO/tests/host/vm-host.py" --firmware bios --disk "$D/disk.img" \
	--log "$D/console-bios.log" --script "$W/script.json" --stall "$STALL" --timeout "$CAP" \
	>"$D/result-bios.json"
vmrc=$?
phase "VM (BIOS: 1, 2, 4) done (rc $vmrc)"
vmurc=1
if [ $vmrc -eq 0 ]; then
	python3 "$REPO/tests/host/vm-host.py" --firmware uefi --vars "$D/vars.fd" --code "$OVMF_CODE" \
		--disk "$D/disk.img" --log "$D/console-uefi.log" --script "$W/script-uefi.json" \
		--stall "$STALL" --timeout "$CAP" >"$D/result-uefi.json"
	vmurc=$?
	phase "VM (UEFI: 3, 5) done (rc $vmurc)"
else
	echo '{"steps": [], "error": "not run: the BIOS run failed", "seconds": 0, "longest_silence": 0}' >"$D/result-uefi.json"
fi
check "2: the first boot of B used the layer its stage made (no carry by the initramfs)" \
	bash -c "! grep -a -q 'new image without an /etc layer from its stage' '$D/console-bios.log'"

# --- the disk afterwards ---------------------------------------------------------------------
host_open
B --json status >"$D/status-end.json" 2>&1
mount -t ext4 -o ro "${LOOP}p4" "$W/data" || die "cannot mount the data partition"
cp "$W/data/var/lib/bootbank/events.jsonl" "$D/events-end.jsonl"
umount "$W/data"
host_close
# the grub backend keeps no bad reason (grubenv); the events on the data partition do
check "disk: the VM's events record why A was marked bad" \
	grep -q "health check '50-v3-broken' failed" "$D/events-end.jsonl"
python3 - "$D/status-end.json" <<-'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
b = d["boot"]
def ok(c, m): print(("ok - " if c else "not ok - ") + m); return c
r = True
r &= ok(b["banks"]["A"]["state"] == "good", "disk: bank A (2.0.1, the live patch) is good")
r &= ok(b["banks"]["B"]["state"] == "good", "disk: bank B (2.0.0) is good")
r &= ok(b["banks"]["A"]["generation"] > b["banks"]["B"]["generation"], "disk: A boots next")
sys.exit(0 if r else 1)
EOF
drc=$?

# --- 6: a corrupt payload: a clear message, a reboot, the loader falls back -------------------
# On the host: 3.0.0 staged into B and activated with one try, then B's root.squashfs is
# damaged behind bankctl's back (a bad disk). GRUB boots B (its one try), the initramfs finds
# the SHA-256 wrong, says so and reboots; GRUB marks B bad (no tries left) and boots A.
phase "6: corrupt payload"
host_open
B stage "$W/images/bkhost-3.0.0.bbi" >"$D/stage-6.log" 2>&1 || die "stage 3.0.0 (6) failed: $(tail -n2 "$D/stage-6.log")"
B activate --tries 1 B >>"$D/stage-6.log" 2>&1 || die "activate B (6) failed"
mount -t ext4 "${LOOP}p3" "$W/data" || die "cannot mount bank B"
dd if=/dev/urandom of="$W/data/root.squashfs" bs=4096 seek=1000 count=4 conv=notrunc status=none
umount "$W/data"
host_close
# The third VM (BIOS) goes on from 6's fallback boot (A: 2.0.1, B: bad):
# 7: the deadline of a trial boot under systemd. In A's /etc, a required check that hangs and
#    a deadline of 60 s (a drop-in for bootbank-deadline.timer); the stage of 4.0.0 carries
#    both into B's /etc layer, then they are removed from A's. B's trial boot: the assessment
#    waits on the check, bootbank-deadline.timer fires, bootbank-deadline.service marks B bad
#    with the deadline's reason and reboots; GRUB falls back to A.
# 8: remediation by the reboot path: 4.0.0 imported into the depot, desired (mode auto: 4.0.0
#    cannot live-patch 2.0.1, so the reboot path), scan (non-compliant), remediate --reboot:
#    stage (B is bad: staged anew, A's clean /etc layer carried), activate, a real reboot into
#    B, assessed and marked good, scan: compliant.
cat >"$W/script-6.json" <<EOF
[
 {"name": "6: GRUB boots B (primary, its last try)", "expect": "Command line: [^\\n]*bootbank.bank=B bootbank.reason=primary"},
 {"name": "6: the initramfs says the payload is corrupt", "expect": "bootbank: BOOT FAILED: bank B: rootfs payload 'root.squashfs' is corrupt"},
 {"name": "6: and reboots", "expect": "rebooting in 5 seconds so the loader can fall back"},
 {"name": "6: GRUB falls back to A", "expect": "Command line: [^\\n]*bootbank.bank=A bootbank.reason=fallback"},
 {"name": "6: login", "expect": "$PROMPT"},
 {"name": "6: status", "run": "cat /etc/bkhost-version; bankctl status"},
 {"name": "7: a hanging check and a 60 s deadline in /etc, stage 4.0.0 --activate", "run": "install -m 0755 /run/bootbank/data/bkhost/60-hang /etc/bootbank/health.d/required.d/60-hang && install -D -m 0644 /run/bootbank/data/bkhost/deadline.conf /etc/systemd/system/bootbank-deadline.timer.d/check-host.conf && bankctl stage /run/bootbank/data/bkhost/bkhost-4.0.0.bbi --activate && rm -r /etc/bootbank/health.d/required.d/60-hang /etc/systemd/system/bootbank-deadline.timer.d && cd /run/bootbank/data/etc/B/upper && ls bootbank/health.d/required.d systemd/system/bootbank-deadline.timer.d; cd /"},
 {"name": "7: reboot", "send": "systemctl reboot\\n"},
 {"name": "7: GRUB boots B (primary)", "expect": "Command line: [^\\n]*bootbank.bank=B bootbank.reason=primary"},
 {"name": "7: initramfs mounts B's root", "expect": "bootbank: bank B \\\\(primary\\\\): root root.squashfs"},
 {"name": "7: the deadline marks B bad", "expect": "(check-host: 60-hang hangs[\\\\s\\\\S]*?)?bank B \\\\(trying, trial boot\\\\): marked bad[^\\n]*\\n(?:[^\\n]*\\n)*?[^\\n]*reason: ([^\\n]*)\\n"},
 {"name": "7: the VM reboots by itself, GRUB falls back to A", "expect": "Command line: [^\\n]*bootbank.bank=A bootbank.reason=fallback"},
 {"name": "7: login", "expect": "$PROMPT"},
 {"name": "7: status", "run": "cat /proc/cmdline; cat /etc/bkhost-version; bankctl status; ls /etc/bootbank/health.d/required.d"},
 {"name": "8: depot import, desired set, scan", "run": "bankctl depot import /run/bootbank/data/bkhost/bkhost-4.0.0.bbi && bankctl desired set bkhost 4.0.0 --live-patch-mode auto && { bankctl scan; echo scan-exit=\$?; }"},
 {"name": "8: remediate --reboot", "send": "bankctl remediate --reboot\\n"},
 {"name": "8: the task log, then the reboot", "expect": "(remediate to 'bkhost 4.0.0'[\\\\s\\\\S]*?syncing and rebooting into bank B[^\\n]*)\\n"},
 {"name": "8: GRUB boots B (primary)", "expect": "Command line: [^\\n]*bootbank.bank=B bootbank.reason=primary"},
 {"name": "8: login", "expect": "$PROMPT"},
 {"name": "8: assessed, scan", "run": "systemctl is-system-running --wait >/dev/null; cat /etc/bkhost-version; cat /run/bootbank/assess.json; echo; ls /etc/bootbank/health.d/required.d; bankctl scan; echo scan-exit=\$?"},
 {"name": "8: status", "run": "bankctl status"},
 {"name": "8: poweroff", "send": "systemctl poweroff\\n"},
 {"name": "8: VM off", "wait_exit": true}
]
EOF
python3 "$REPO/tests/host/vm-host.py" --firmware bios --disk "$D/disk.img" --log "$D/console-6.log" \
	--script "$W/script-6.json" --stall "$STALL" --timeout "$CAP" >"$D/result-6.json"
v6=$?
phase "VM (BIOS: 6, 7, 8) done (rc $v6)"
# one result and one script of the three VMs for check.py (each run's times after the last's)
python3 - "$D/result.json" "$W/script-all.json" "$D/result-bios.json" "$W/script.json" \
	"$D/result-uefi.json" "$W/script-uefi.json" "$D/result-6.json" "$W/script-6.json" <<-'PY'
import json, sys
r = {"steps": [], "error": None, "seconds": 0, "longest_silence": 0, "runs": []}
script = []
for res, scr in zip(sys.argv[3::2], sys.argv[4::2]):
    a = json.load(open(res))
    for s in a["steps"]:
        s["start"] += r["seconds"]; s["end"] += r["seconds"]
    r["steps"] += a["steps"]
    r["error"] = r["error"] or a["error"]
    r["runs"].append({"seconds": a["seconds"], "longest_silence": a["longest_silence"]})
    r["seconds"] += a["seconds"]
    r["longest_silence"] = max(r["longest_silence"], a["longest_silence"] or 0)
    script += json.load(open(scr))
json.dump(r, open(sys.argv[1], "w"))
json.dump(script, open(sys.argv[2], "w"))
PY
python3 "$REPO/tests/host/check.py" "$D/result.json" "$W/script-all.json"
crc=$?

# --- the disk after 7 and 8 ------------------------------------------------------------------
host_open
B --json status >"$D/status-8.json" 2>&1
mount -t ext4 -o ro "${LOOP}p4" "$W/data" || die "cannot mount the data partition"
cp "$W/data/var/lib/bootbank/events.jsonl" "$D/events-8.jsonl"
umount "$W/data"
host_close
check "disk: the VM's events record the deadline's mark-bad of B (7)" \
	grep -qF "bank B (trying, trial boot): marked bad: the boot did not finish its assessment before the deadline (bootbank-deadline.timer)" "$D/events-8.jsonl"
python3 - "$D/status-8.json" <<-'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
b = d["boot"]
def ok(c, m): print(("ok - " if c else "not ok - ") + m); return c
r = True
r &= ok(b["banks"]["A"]["state"] == "good", "disk: bank A (2.0.1) is good after 8")
r &= ok(b["banks"]["B"]["state"] == "good", "disk: bank B (4.0.0, remediated) is good after 8")
r &= ok(b["banks"]["B"]["generation"] > b["banks"]["A"]["generation"], "disk: B boots next after 8")
sys.exit(0 if r else 1)
EOF
d8=$?
phase "done"
[ $vmrc -eq 0 ] && [ $vmurc -eq 0 ] && [ $crc -eq 0 ] && [ $drc -eq 0 ] && [ $v6 -eq 0 ] && [ $d8 -eq 0 ] && [ $_failed -eq 0 ]
