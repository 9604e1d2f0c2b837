# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/boot/lib.sh: the pieces of `make check-boot` (docs/check-boot.md), sourced by
# tests/boot/run.sh: the Debian kernel, the test initramfs and images, a bootbank disk with
# GRUB installed for BIOS or UEFI, access to the disk from the host, and one boot in QEMU.
# Everything is built under $W (build/check-boot); the kernel is downloaded once and cached.
set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
W=${BK_BOOT_DIR:-$REPO/build/check-boot}
BANKCTL=${BANKCTL:-$(realpath "${BK_BUILD:-$REPO/build/cc}/bankctl")}
# The GRUB files installed on the boot partition (another directory: try changes to them).
GRUB_FILES=${BK_BOOT_GRUB_FILES:-$REPO/bootloader-hooks/grub}
COMPATIBLE=bootbank-boot-x86_64
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
BIOS_BOOT_TYPE=21686148-6449-6E6F-744E-656564454649
# A boot is given up when its console prints nothing for BOOT_STALL seconds, or after
# BOOT_CAP seconds in all (a hard cap for a boot that keeps printing but never ends): a boot
# on a loaded machine is slow but keeps printing. Its longest silence is GRUB loading the
# kernel and initramfs, then the quiet kernel and /init until its first line: about 5.5 s on
# a quiet machine, up to 53 s seen at a load of 8-24 on 2 cores (docs/check-boot.md), so 180 s.
BOOT_STALL=${BK_BOOT_STALL_TIMEOUT:-180}
BOOT_CAP=${BK_BOOT_TIMEOUT:-900}
# The modules the initramfs loads to reach an ext4 filesystem on a virtio disk, and to mount
# the live payload from the booted bank (loop, squashfs), with everything they depend on (the
# Debian kernel builds them all as modules).
KMODS="crc32c_generic virtio_pci virtio_blk ext4 loop squashfs"
# The GRUB modules built into the UEFI image (no module directory is needed on disk).
GRUB_EFI_MODULES="normal configfile echo test eval regexp loadenv keystatus sleep search
search_label search_fs_uuid part_gpt part_msdos ext2 fat linux boot halt reboot efi_gop"

_failed=0
_passed=0
_known=0
_loops=()
# A known failure (set for one scenario): its failing checks are reported with "# TODO" and
# counted apart; a scenario so marked that passes is a failure (the mark must go).
KNOWN=

die() {
	echo "check-boot: $*" >&2
	exit 1
}
ok() {
	echo "ok - $*"
	_passed=$((_passed + 1))
}
not_ok() {
	if [ -n "$KNOWN" ]; then
		echo "not ok - $* # TODO known failure: $KNOWN"
		_known=$((_known + 1))
	else
		echo "not ok - $*"
		_failed=$((_failed + 1))
	fi
}
# check DESC CMD...: passes when CMD exits 0
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
# same DESC GOT WANT
same() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1 (got '$2', want '$3')"; fi
}

# --- the kernel ---------------------------------------------------------------------------

# kernel_prepare: $W/kernel/vmlinuz, the modules of $KMODS (and their dependencies) under
# $W/kernel/modules, and $W/kernel/modules.list (load order). The Debian kernel package is
# fetched with apt-get download (never installed on the host) and only these files are kept.
kernel_prepare() {
	local k=$W/kernel x meta pkg
	if [ -f "$k/ready" ] && [ "$(cat "$k/kmods" 2>/dev/null)" = "$KMODS" ]; then
		KVER=$(cat "$k/ready")
		return 0
	fi
	rm -rf "$k"
	mkdir -p "$k/deb"
	(cd "$k/deb" && apt-get -q -o APT::Sandbox::User=root download linux-image-amd64) >&2 ||
		die "cannot download linux-image-amd64 (apt-get download)"
	meta=$(echo "$k"/deb/linux-image-amd64_*.deb)
	pkg=$(dpkg-deb -f "$meta" Depends | sed -n 's/^\(linux-image-[^ ,]*\).*/\1/p')
	[ -n "$pkg" ] || die "'$meta' depends on no linux-image package"
	(cd "$k/deb" && apt-get -q -o APT::Sandbox::User=root download "$pkg") >&2 ||
		die "cannot download $pkg (apt-get download)"
	x=$k/x
	dpkg-deb -x "$(echo "$k/deb/${pkg}"_*.deb)" "$x" || die "cannot unpack $pkg"
	KVER=$(ls "$x/lib/modules")
	cp "$x/boot/vmlinuz-$KVER" "$k/vmlinuz"
	cp "$x/boot/config-$KVER" "$k/config"
	mkdir -p "$k/modules"
	: >"$k/modules.list"
	local -A done_=()
	local m
	for m in $KMODS; do
		module_add "$x/lib/modules/$KVER" "$m" || die "kernel $KVER: no module '$m'"
	done
	rm -rf "$x" "$k/deb"
	echo "$KMODS" >"$k/kmods"
	echo "$KVER" >"$k/ready"
}

# module_add MODDIR NAME: copy NAME.ko after its dependencies (depth first), once.
module_add() {
	local dir=$1 name=${2//-/_} path deps d
	[ -n "${done_[$name]:-}" ] && return 0
	done_[$name]=1
	path=$(grep -E "/${name//_/[_-]}\.ko$" "$dir/modules.order" | head -n1)
	[ -n "$path" ] && [ -f "$dir/$path" ] || return 1
	deps=$(tr '\0' '\n' <"$dir/$path" | sed -n 's/^depends=//p' | head -n1)
	for d in ${deps//,/ }; do
		module_add "$dir" "$d" || return 1
	done
	cp "$dir/$path" "$W/kernel/modules/"
	basename "$path" >>"$W/kernel/modules.list"
}

# --- the initramfs and the images ---------------------------------------------------------

# initramfs_build VERSION BEHAVIOUR OUT: busybox, bankctl with its shared libraries, the
# kernel modules, tests/boot/init.sh as /init; BEHAVIOUR good (mark-good) or fail.
initramfs_build() {
	local ver=$1 beh=$2 out=$3 d lib
	d=$(mktemp -d "$W/initramfs.XXXXXX")
	mkdir -p "$d"/{bin,sbin,etc/bootbank,proc,sys,dev,run,tmp,boot,bank,lib/modules}
	cp /bin/busybox "$d/bin/busybox"
	for lib in $(/bin/busybox --list); do
		[ "$lib" = busybox ] || ln -s busybox "$d/bin/$lib"
	done
	cp "$BANKCTL" "$d/bin/bankctl"
	# bankctl's shared libraries and the dynamic loader, at the paths ldd names.
	for lib in $(ldd "$BANKCTL" | grep -o '/[^ ]*'); do
		mkdir -p "$d$(dirname "$lib")"
		cp -L "$lib" "$d$lib"
	done
	cp "$W/kernel/modules/"*.ko "$d/lib/modules/"
	cp "$W/kernel/modules.list" "$d/etc/modules.list"
	cp "$REPO/tests/boot/init.sh" "$d/init"
	chmod 0755 "$d/init"
	printf 'IMAGE_VERSION=%s\nBEHAVIOUR=%s\n' "$ver" "$beh" >"$d/etc/bootbank-test.conf"
	printf '[system]\ncompatible = %s\nbootloader = grub\n' "$COMPATIBLE" \
		>"$d/etc/bootbank/system.conf"
	(cd "$d" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 >"$out.tmp"
	mv "$out.tmp" "$out"
	rm -rf "$d"
}

# pki_prepare: the test PKI (tests/pki/make-pki.sh) in $W/pki.
pki_prepare() {
	[ -f "$W/pki/signer.key" ] && return 0
	bash "$REPO/tests/pki/make-pki.sh" "$W/pki" >/dev/null 2>&1 || die "cannot make the test PKI"
}

# image_build VERSION BEHAVIOUR [FROM]: $W/images/bootbank-test-VERSION.bbi, a signed image
# whose payloads are the Debian kernel (vmlinuz), the initramfs (initrd.img), a small squashfs
# root (root.squashfs) and a live payload (app.squashfs, a file "version" holding VERSION,
# mounted by live patching at /opt/bootbank-test); FROM: the version it can live-patch.
image_build() {
	local ver=$1 beh=$2 from=${3:-} d=$W/images/src-$1 lp=""
	rm -rf "$d"
	mkdir -p "$d/tree/etc" "$d/app"
	cp "$W/kernel/vmlinuz" "$d/vmlinuz"
	initramfs_build "$ver" "$beh" "$d/initrd.img"
	printf 'NAME=bootbank-test\nVERSION=%s\n' "$ver" >"$d/tree/etc/os-release"
	echo "$ver" >"$d/app/version"
	mksquashfs "$d/tree" "$d/root.squashfs" -quiet -noappend -all-root >/dev/null ||
		die "mksquashfs failed"
	mksquashfs "$d/app" "$d/app.squashfs" -quiet -noappend -all-root >/dev/null ||
		die "mksquashfs failed"
	[ -z "$from" ] || lp="\"live_patch\": { \"from\": [ \"$from\" ] },"
	cat >"$d/spec.json" <<-EOF
	{ "name": "bootbank-test", "version": "$ver", "build": "check-boot", "compatible": "$COMPATIBLE",
	  "security_epoch": 1, $lp "payloads": [
	    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
	    { "name": "initrd.img", "type": "initrd", "source": "initrd.img" },
	    { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" },
	    { "name": "app.squashfs", "type": "component", "source": "app.squashfs",
	      "live": true, "mountpoint": "/opt/bootbank-test" } ] }
	EOF
	"$BANKCTL" image build "$d/spec.json" -o "$W/images/bootbank-test-$ver.bbi" \
		--key "$W/pki/signer.key" --cert "$W/pki/signer.crt" \
		--intermediate "$W/pki/intermediate.crt" >/dev/null || die "image build $ver failed"
	rm -rf "$d"
}

# --- the disk -----------------------------------------------------------------------------
# One per firmware, in $D = $W/$FW: disk.img (bankctl disk init), root/ (the sandbox bankctl
# runs on: system.conf with bootloader = grub, the keyring, disk.json), for UEFI vars.fd.
# Both firmwares get the same layout from disk init: a BIOS boot partition and an ESP besides
# boot and the banks (docs/disk.md), as an installer for either firmware would make it. While the host works on the disk, its boot partition is mounted on root/boot, where
# the grub backend keeps the boot state (root/boot/bootbank/grubenv).

B() { "$BANKCTL" --root "$D/root" "$@"; }

# loop_attach: attach disk.img, add its partitions (the kernel here parses no partition
# tables: partx uses BLKPG), set LOOP.
loop_attach() {
	LOOP=$(losetup -f --show "$D/disk.img") || die "cannot attach '$D/disk.img'"
	_loops+=("$LOOP")
	partx -a "$LOOP" 2>/dev/null || partx -u "$LOOP" || die "partx on $LOOP failed"
	udevadm settle 2>/dev/null || true
	local i
	# Under load the nodes can be late, or a device being freed was handed out and lost
	# them: ask again every second, for at most 10 s.
	for i in $(seq 100); do
		[ -b "${LOOP}p1" ] && break
		[ $((i % 10)) -ne 0 ] || partx -u "$LOOP" 2>/dev/null || partx -a "$LOOP" 2>/dev/null || true
		sleep 0.1
	done
	[ -b "${LOOP}p1" ] || die "no partition node ${LOOP}p1 after 10 s"
}

loop_detach() {
	local i
	[ -n "${LOOP:-}" ] || return 0
	losetup -d "$LOOP" 2>/dev/null
	for i in "${!_loops[@]}"; do
		[ "${_loops[$i]}" = "$LOOP" ] && unset '_loops[i]'
	done
	LOOP=
}

# host_open / host_close: the boot partition mounted on root/boot (the host's view between
# boots), and unmounted with its loop device detached before QEMU opens the image.
host_open() {
	loop_attach
	mount -t ext4 "${LOOP}p1" "$D/root/boot" || die "cannot mount ${LOOP}p1"
}
host_close() {
	if mountpoint -q "$D/root/boot"; then
		umount "$D/root/boot" || die "cannot unmount '$D/root/boot'"
	fi
	loop_detach
}

cleanup() {
	local l
	for l in "${_loops[@]}"; do
		umount "${l}p1" 2>/dev/null
		losetup -d "$l" 2>/dev/null
	done
}

# disk_create FW: a fresh disk for firmware FW (bios or uefi) with GRUB installed, both banks
# empty; sets D.
disk_create() {
	FW=$1
	D=$W/$FW
	rm -rf "$D"
	mkdir -p "$D/root/etc/bootbank" "$D/root/boot"
	cp "$W/pki/keyring.pem" "$D/root/etc/bootbank/keyring.pem"
	printf '[system]\ncompatible = %s\nbootloader = grub\n' "$COMPATIBLE" \
		>"$D/root/etc/bootbank/system.conf"
	truncate -s 192M "$D/disk.img"
	B disk init "$D/disk.img" --boot-size 32M --bank-size 64M --bios-boot --esp-size 16M \
		>"$D/disk-init.log" 2>&1 ||
		die "bankctl disk init failed: $(tail -n1 "$D/disk-init.log")"
	host_open
	install_grub_files
	if [ "$FW" = bios ]; then
		install_grub_bios
	else
		install_grub_uefi
	fi
	host_close
}

# The bootloader-hooks/grub files on the boot partition (the layout of grub.cfg's header),
# and local.cfg with this test's settings.
install_grub_files() {
	local b=$D/root/boot
	mkdir -p "$b/grub" "$b/bootbank"
	cp "$GRUB_FILES/grub.cfg" "$b/grub/grub.cfg"
	cp "$GRUB_FILES/bootbank-menu.cfg" "$GRUB_FILES/bootbank-select.cfg" "$b/bootbank/"
	cat >"$b/bootbank/local.cfg" <<-'EOF'
	# check-boot (tests/boot/lib.sh): the kernel's console on the serial port, a short countdown.
	set bootbank_cmdline="console=ttyS0,115200 panic=-1 quiet"
	set bootbank_timeout=3
	EOF
}

# BIOS: grub-install finds the BIOS boot partition disk init made (type $BIOS_BOOT_TYPE) and
# embeds its core image there; boot.img goes to the protective MBR.
install_grub_bios() {
	sfdisk -d "$D/disk.img" | grep -q "type=$BIOS_BOOT_TYPE, .*name=\"bootbank_bios\"" ||
		die "disk init made no BIOS boot partition"
	echo "(hd0) $LOOP" >"$D/root/boot/grub/device.map"
	grub-install --target=i386-pc --boot-directory="$D/root/boot" --modules="part_gpt ext2" \
		"$LOOP" >"$D/grub-install.log" 2>&1 ||
		die "grub-install failed: $(tail -n1 "$D/grub-install.log")"
	rm -f "$D/root/boot/grub/device.map"
}

# UEFI: a GRUB image with its modules built in and an early config that finds the boot
# partition by its label, in EFI/BOOT/BOOTX64.EFI of the ESP disk init made FAT (written with
# mtools at the partition's offset: nothing here can mount vfat), and a copy of OVMF's
# variable store.
install_grub_uefi() {
	cat >"$D/early.cfg" <<-'EOF'
	search --no-floppy --label --set=root bootbank_boot
	set prefix=($root)/grub
	configfile ($root)/grub/grub.cfg
	EOF
	# shellcheck disable=SC2086
	grub-mkimage -O x86_64-efi -o "$D/BOOTX64.EFI" -p /grub -c "$D/early.cfg" \
		$GRUB_EFI_MODULES >"$D/grub-mkimage.log" 2>&1 ||
		die "grub-mkimage failed: $(tail -n1 "$D/grub-mkimage.log")"
	local esp
	esp="$D/disk.img@@$(esp_offset)" || die "no ESP in '$D/root/var/lib/bootbank/disk.json'"
	mmd -i "$esp" ::/EFI ::/EFI/BOOT || die "mmd failed"
	mcopy -i "$esp" "$D/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI || die "mcopy failed"
	cp "$OVMF_VARS" "$D/vars.fd"
}

# esp_offset: the byte offset of the ESP, from the record disk init wrote.
esp_offset() {
	python3 -c 'import json,sys
for p in json.load(open(sys.argv[1]))["partitions"]:
    if p["part"] == "esp" and p["filesystem"] == "vfat": print(p["start"]); sys.exit(0)
sys.exit(1)' "$D/root/var/lib/bootbank/disk.json"
}

# --- one boot -----------------------------------------------------------------------------

# vm_boot NAME KEY: boot the disk once (tests/boot/vm.py), console in $D/NAME.log; the JSON
# result in $D/NAME.json and $RES. Given up after $BOOT_STALL s without console output or
# $BOOT_CAP s in all.
vm_boot() {
	local name=$1 key=$2 extra=()
	if [ "$FW" = uefi ]; then
		extra=(--vars "$D/vars.fd" --code "$OVMF_CODE")
	fi
	RES=$(python3 "$REPO/tests/boot/vm.py" --firmware "$FW" --disk "$D/disk.img" "${extra[@]}" \
		--log "$D/$name.log" --key "$key" --stall "$BOOT_STALL" \
		--timeout "$BOOT_CAP")
	echo "$RES" >"$D/$name.json"
}

# res FIELD: a field of the last boot's result
res() {
	python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print("" if v is None else ("; ".join(v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else v))' "$RES" "$1"
}
