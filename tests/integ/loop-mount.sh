#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# lib/bk-loop and lib/bk-mount on real loop devices, through tests/tools/bk-looptool:
# a squashfs at an offset inside a bigger file is attached by fd, mounted read-only, read,
# unmounted, and its loop device is gone (autoclear); detach, find-by-file, busy checks.
. "$(dirname "$0")/lib.sh"

bk_need_root
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
command -v mksquashfs >/dev/null || bk_skip "mksquashfs not installed"
command -v mkfs.ext4 >/dev/null || bk_skip "mkfs.ext4 not installed"
TOOL=$(realpath "${BK_BUILD:-build/cc}/tests/tools/bk-looptool")
[ -x "$TOOL" ] || { not_ok "bk-looptool not built ($TOOL)"; bk_done; }

tmp=$(bk_tmp)

# Loop devices this script attaches itself, with their backing file. At exit each is detached
# only while it still maps that file: a device that went away (autoclear, or detached by the
# test) frees its number for a parallel test, whose device must not be detached by us. This
# replaces lib.sh's bk_track_loop, which detaches by number.
_mine=()
track() { _mine+=("$1|$2"); }
cleanup_mine() {
	local e dev file
	for e in "${_mine[@]}"; do
		dev=${e%%|*}
		file=${e#*|}
		if losetup -j "$file" 2>/dev/null | grep -q "^$dev:"; then
			umount -l "$dev" 2>/dev/null
			losetup -d "$dev" 2>/dev/null
		fi
	done
	bk_cleanup
}
trap cleanup_mine EXIT
mnt=$tmp/mnt
mkdir -p "$tmp/src/sub" "$mnt"

# attached DEV: the loop device still has a backing file
attached() { [ -e "/sys/block/$(basename "$1")/loop/backing_file" ]; }
# gone DEV: wait up to 3 s for the kernel to detach DEV
gone() {
	local i
	for i in $(seq 60); do
		attached "$1" || return 0
		sleep 0.05
	done
	return 1
}

echo "payload one" >"$tmp/src/one"
echo "payload two" >"$tmp/src/sub/two"
mksquashfs "$tmp/src" "$tmp/sq.img" -quiet -noappend -no-progress >/dev/null
sqsize=$(stat -c %s "$tmp/sq.img")
# bundle.img: 256 KiB of junk, the squashfs, 64 KiB of junk after it
head -c 262144 /dev/urandom >"$tmp/bundle.img"
cat "$tmp/sq.img" >>"$tmp/bundle.img"
head -c 65536 /dev/urandom >>"$tmp/bundle.img"

expect_exit 0 "mount a squashfs range of a bigger file" \
	"$TOOL" mount-fd "$tmp/bundle.img" 262144 "$sqsize" squashfs "$mnt"
dev=$(findmnt -n -o SOURCE --mountpoint "$mnt")
[ -n "$dev" ] && track "$dev" "$tmp/bundle.img"
check "the mount's source is a loop device" grep -q '^/dev/loop[0-9]*$' <<<"$dev"
check "a file at the top is readable" grep -qx "payload one" "$mnt/one"
check "a file in a subdirectory is readable" grep -qx "payload two" "$mnt/sub/two"
check "mounted read-only, nosuid, nodev" \
	bash -c 'o=$(findmnt -n -o OPTIONS --mountpoint "$1"); [[ $o == ro,* && $o == *nosuid* && $o == *nodev* ]]' _ "$mnt"
check "writing fails" bash -c '! touch "$1/new" 2>/dev/null' _ "$mnt"
expect_exit 0 "info on the loop device" "$TOOL" info "$dev"
check "the loop device maps exactly the range, read-only, autoclear" \
	test "$OUT" = "offset=262144 size=$sqsize ro=1 partscan=0 autoclear=1"
expect_exit 0 "find the loop device by the file" "$TOOL" find "$tmp/bundle.img"
check "find names the mounted device" test "$OUT" = "$dev"
expect_exit 0 "busy check on the mounted device" "$TOOL" busy "$dev"
check "a mounted device is busy" test "$OUT" = busy
expect_exit 0 "mountpoint of the device" "$TOOL" mountpoint "$dev"
check "mountpoint names the target" test "$OUT" = "$mnt"

expect_exit 0 "unmount" "$TOOL" umount "$mnt"
check "the target is no longer a mount point" bash -c '! mountpoint -q "$1"' _ "$mnt"
check "the loop device is gone after the unmount (autoclear)" gone "$dev"
expect_exit 4 "find after the unmount: not found" "$TOOL" find "$tmp/bundle.img"
check "find says no loop device is attached" \
	grep -qF "no loop device is attached to '$tmp/bundle.img'" <<<"$ERR"
expect_exit 1 "unmount again: not a mount point" "$TOOL" umount "$mnt"
check "unmount names the non-mount point" grep -qF "'$mnt' is not a mount point" <<<"$ERR"

# A range that holds no squashfs: the mount fails with libmount's message, nothing leaks.
before=$(ls /sys/block/*/loop/backing_file 2>/dev/null | wc -l)
expect_exit 1 "mounting the wrong range fails" \
	"$TOOL" mount-fd "$tmp/bundle.img" 0 "$sqsize" squashfs "$mnt"
check "the mount error names source and target" grep -qF "cannot mount '/dev/loop" <<<"$ERR"
check "the mount error is one line" test "$(wc -l <<<"$ERR")" -eq 1
check "no loop device left attached by the failed mount" \
	bash -c 'for i in $(seq 60); do [ "$(ls /sys/block/*/loop/backing_file 2>/dev/null | wc -l)" -le "$1" ] && exit 0; sleep 0.05; done; exit 1' _ "$before"

expect_exit 1 "a range past the end of the file is refused" \
	"$TOOL" attach "$tmp/bundle.img" 262144 1G ro
check "the range error is clear" grep -q "lies beyond the end of the file" <<<"$ERR"
expect_exit 1 "an unaligned offset is refused" "$TOOL" attach "$tmp/bundle.img" 100 0 ro
check "the offset error is clear" grep -q "loop offset 100 is not a multiple of 512" <<<"$ERR"

# Attach without autoclear, two devices on one file: the whole-file mapping is found first.
truncate -s 64M "$tmp/disk.img"
expect_exit 0 "attach a range (no autoclear)" "$TOOL" attach "$tmp/disk.img" 1M 8M
range=$OUT
track "$range" "$tmp/disk.img"
expect_exit 0 "attach the whole file with partition scanning" "$TOOL" attach "$tmp/disk.img" 0 0 partscan
whole=$OUT
track "$whole" "$tmp/disk.img"
check "both devices are attached" bash -c 'attached() { [ -e "/sys/block/$(basename "$1")/loop/backing_file" ]; }; attached "$1" && attached "$2"' _ "$range" "$whole"
expect_exit 0 "list the devices of the file" "$TOOL" list "$tmp/disk.img"
check "list gives the whole-file device first, then the range" test "$OUT" = "$whole"$'\n'"$range"
expect_exit 0 "find prefers the whole-file device" "$TOOL" find "$tmp/disk.img"
check "find gives the whole-file device" test "$OUT" = "$whole"
expect_exit 0 "info on the whole-file device" "$TOOL" info "$whole"
check "partition scanning is on, autoclear off" test "$OUT" = "offset=0 size=0 ro=0 partscan=1 autoclear=0"
expect_exit 0 "busy check on an unused device" "$TOOL" busy "$whole"
check "an unused device is free" test "$OUT" = free
expect_exit 0 "detach the range" "$TOOL" detach "$range"
check "the detached device is gone" gone "$range"
expect_exit 4 "detach again: not attached" "$TOOL" detach "$range"
check "second detach says not attached" grep -qF "loop device '$range' is not attached" <<<"$ERR"

# bk_mount of a writable ext4 on the loop device, umount with detach-loop.
mkfs.ext4 -q -F "$whole" >/dev/null 2>&1
expect_exit 0 "mount ext4 read-write" "$TOOL" mount "$whole" "$mnt" ext4
check "a file can be written" bash -c 'echo data >"$1/f" && sync' _ "$mnt"
expect_exit 0 "busy while mounted" "$TOOL" busy "$whole"
check "the mounted ext4 device is busy" test "$OUT" = busy
expect_exit 0 "unmount with detach-loop" "$TOOL" umount "$mnt" detach-loop
check "detach-loop detached the (non-autoclear) device" gone "$whole"
expect_exit 0 "mount the whole ext4 image read-only by fd" \
	"$TOOL" mount-fd "$tmp/disk.img" 0 0 ext4 "$mnt"
dev2=$(findmnt -n -o SOURCE --mountpoint "$mnt")
[ -n "$dev2" ] && track "$dev2" "$tmp/disk.img"
check "the file written before is there" grep -qx data "$mnt/f"
expect_exit 0 "lazy unmount" "$TOOL" umount "$mnt" lazy
check "the device is gone after the lazy unmount" gone "$dev2"

expect_exit 0 "attach read-only" "$TOOL" attach "$tmp/disk.img" 0 0 ro
dev3=$OUT
track "$dev3" "$tmp/disk.img"
expect_exit 0 "mount with the filesystem type probed" "$TOOL" mount "$dev3" "$mnt" - ro
check "libmount probed ext4" test "$(findmnt -n -o FSTYPE --mountpoint "$mnt")" = ext4
expect_exit 0 "unmount the probed mount with detach-loop" "$TOOL" umount "$mnt" detach-loop
check "its device is gone" gone "$dev3"

expect_exit 1 "busy check on a non-device" "$TOOL" busy "$tmp/disk.img"
check "busy names the non-device" grep -qF "'$tmp/disk.img' is not a block device" <<<"$ERR"

bk_done
