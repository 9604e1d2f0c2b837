#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankctl disk init|probe on sparse image files and loop devices: the GPT layout, ext4 on every
# partition, disk.json, refusals (existing table, busy, too small), discovery (disk.json,
# [disk] device, [disk] bank-a/bank-b, an existing loop device), private-namespace mounts,
# --bios-boot and --esp-size (types, names, placement, FAT on the ESP, nothing in BIOS boot).
. "$(dirname "$0")/lib.sh"

bk_need_root
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
for t in mkfs.ext4 sfdisk blkid losetup partx python3; do
	command -v "$t" >/dev/null || bk_skip "$t not installed"
done

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
root=$tmp/root
mkdir -p "$root"
img=$tmp/disk.img
truncate -s 300M "$img"

# json EXPR [FILE]: print a Python expression over the JSON document d (stdin or FILE)
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[2]) if len(sys.argv)>2 else sys.stdin); r=eval(sys.argv[1]); print(r if not isinstance(r,bool) else str(r).lower())' "$@"; }
# jtrue EXPR [FILE]: succeeds when the expression is true
jtrue() { python3 -c 'import json,sys; d=json.load(open(sys.argv[2]) if len(sys.argv)>2 else sys.stdin); sys.exit(0 if eval(sys.argv[1]) is True else 1)' "$@"; }
# no_loop FILE: no loop device backs FILE (waits up to 3 s for autoclear)
no_loop() {
	local i
	for i in $(seq 60); do
		[ -z "$(losetup -j "$1")" ] && return 0
		sleep 0.05
	done
	return 1
}
# fsprobe IMG PARTNO: blkid of partition PARTNO of IMG, by offset (no loop device needed)
fsprobe() {
	local start size
	read -r start size < <(sfdisk -J "$1" | json "[(p['start'],p['size']) for p in d['partitiontable']['partitions'] if p['node'].endswith('$2')][0]" | tr -d '(),')
	blkid -p -O $((start * 512)) -S $((size * 512)) -o export "$1"
}

# --- init on an image file ---------------------------------------------------------------
expect_exit 0 "disk init on a 300 MiB image file" "$BANKCTL" --root "$root" disk init "$img"
check "init says what it initialised" grep -qF "initialised '$img'" <<<"$OUT"
check "the loop device is gone after bankctl exits" no_loop "$img"

pt=$(sfdisk -J "$img")
check "a GPT" test "$(json "d['partitiontable']['label']" <<<"$pt")" = gpt
check "three partitions" test "$(json "len(d['partitiontable']['partitions'])" <<<"$pt")" -eq 3
check "partition names: boot, a, b" \
	test "$(json "' '.join(p['name'] for p in d['partitiontable']['partitions'])" <<<"$pt")" = "bootbank_boot bootbank_a bootbank_b"
check "partition types: Linux filesystem, bank A, bank B GUIDs" \
	test "$(json "' '.join(p['type'].lower() for p in d['partitiontable']['partitions'])" <<<"$pt")" = \
	"0fc63daf-8483-4772-8e79-3d69d8477de4 8fac4a25-9f88-4344-9db7-f999d75f48ca de5994dd-6548-4003-9e5b-cc3557945f8f"
check "boot starts at 1 MiB and is 64 MiB" \
	test "$(json "[(p['start'],p['size']) for p in d['partitiontable']['partitions']][0]" <<<"$pt")" = "(2048, 131072)"
check "the banks split the rest equally, MiB aligned" \
	jtrue "(lambda p: p[1]['size']==p[2]['size'] and p[1]['size']%2048==0 and p[2]['start']==p[1]['start']+p[1]['size'])(d['partitiontable']['partitions'])" <<<"$pt"
for n in 1 2 3; do
	label=$(sed -n "${n}p" <<<"bootbank_boot
bootbank_a
bootbank_b")
	out=$(fsprobe "$img" $n)
	check "partition $n holds ext4" grep -qx "TYPE=ext4" <<<"$out"
	check "partition $n's ext4 is labelled $label" grep -qx "LABEL=$label" <<<"$out"
done

rec=$root/var/lib/bootbank/disk.json
check "disk.json is written" test -f "$rec"
check "disk.json records the target as given" test "$(json "d['target']" "$rec")" = "$img"
check "disk.json says it is an image file" test "$(json "d['image']" "$rec")" = true
guid=$(json "d['partitiontable']['id'].lower()" <<<"$pt")
check "disk.json has the disk GUID of the table" test "$(json "d['disk_guid']" "$rec")" = "$guid"
check "disk.json has each partition's UUID and name" \
	test "$(json "' '.join(p['name']+'='+p['uuid'] for p in d['partitions'])" "$rec")" = \
	"$(json "' '.join(p['name']+'='+p['uuid'].lower() for p in d['partitiontable']['partitions'])" <<<"$pt")"
check "no temp file left next to disk.json" test "$(ls -A "$root/var/lib/bootbank")" = disk.json

# --- probe -------------------------------------------------------------------------------
expect_exit 0 "disk probe --json" "$BANKCTL" --root "$root" disk probe --json
probe=$OUT
check "probe found the disk through disk.json" test "$(json "d['source']" <<<"$probe")" = disk.json
check "probe names the image" test "$(json "d['image']" <<<"$probe")" = "$img"
check "probe lists boot, bank-a, bank-b" test "$(json "' '.join(p['part'] for p in d['partitions'])" <<<"$probe")" = "boot bank-a bank-b"
check "probe: partition names" test "$(json "' '.join(p['name'] for p in d['partitions'])" <<<"$probe")" = "bootbank_boot bootbank_a bootbank_b"
check "probe: ext4 everywhere, none busy" test "$(json "' '.join(p['filesystem']+':'+str(p['busy']) for p in d['partitions'])" <<<"$probe")" = "ext4:False ext4:False ext4:False"
check "probe: UUIDs as in disk.json" \
	test "$(json "' '.join(p['uuid'] for p in d['partitions'])" <<<"$probe")" = "$(json "' '.join(p['uuid'] for p in d['partitions'])" "$rec")"
check "probe: device nodes of the loop device's partitions" \
	jtrue "all(p['device']==d['device']+'p'+str(p['partno']) for p in d['partitions'])" <<<"$probe"
check "probe: sizes in bytes" test "$(json "d['partitions'][0]['size']" <<<"$probe")" -eq $((64 << 20))
check "the loop device is gone after probe" no_loop "$img"
expect_exit 0 "disk probe (text)" "$BANKCTL" --root "$root" disk probe
check "text probe shows bank-b and its device" grep -qE '^  bank-b +/dev/loop[0-9]+p3 +3 +bootbank_b ' <<<"$OUT"

# --- refusals ----------------------------------------------------------------------------
expect_exit 1 "a second init without --force is refused" "$BANKCTL" --root "$root" disk init "$img"
check "refusal: one clear line" test "$ERR" = "bankctl: target '$img' already holds a gpt partition table (use --force to overwrite it)"
check "refusal: the table is untouched" test "$(json "d['partitiontable']['id'].lower()" < <(sfdisk -J "$img"))" = "$guid"
check "the loop device is gone after the refusal" no_loop "$img"

expect_exit 0 "init --force with a data partition" \
	"$BANKCTL" --root "$root" disk init "$img" --force --data-size 32M --boot-size 16M --bank-size 100M
pt=$(sfdisk -J "$img")
check "--force wrote a new table" test "$(json "d['partitiontable']['id'].lower()" <<<"$pt")" != "$guid"
check "four partitions with bootbank_data last" \
	test "$(json "' '.join(p['name'] for p in d['partitiontable']['partitions'])" <<<"$pt")" = "bootbank_boot bootbank_a bootbank_b bootbank_data"
check "sizes as asked: 16, 100, 100, 32 MiB" \
	test "$(json "' '.join(str(p['size']//2048) for p in d['partitiontable']['partitions'])" <<<"$pt")" = "16 100 100 32"
check "the data partition holds ext4 labelled bootbank_data" grep -qx "LABEL=bootbank_data" <<<"$(fsprobe "$img" 4)"
check "disk.json follows the new table" \
	test "$(json "d['disk_guid']" "$rec")" = "$(json "d['partitiontable']['id'].lower()" <<<"$pt")"
check "disk.json lists the data partition" test "$(json "d['partitions'][3]['part']" "$rec")" = data
check "the loop device is gone after init --force" no_loop "$img"

# A mounted target is refused, even with --force.
loop=$(losetup -f --show -P "$img")
track "$loop" "$img"
partx -a "$loop" 2>/dev/null || true
mkdir -p "$tmp/mnt"
mount "${loop}p2" "$tmp/mnt"
expect_exit 3 "init --force on a mounted image is refused (busy)" "$BANKCTL" --root "$root" disk init --force "$img"
check "busy: names the loop device" test "$ERR" = "bankctl: target '$img' is in use: its loop device '$loop' is mounted or claimed"
expect_exit 3 "init --force on the mounted loop device itself is refused" "$BANKCTL" --root "$root" disk init --force "$loop"
check "busy: one line naming the device" test "$ERR" = "bankctl: target '$loop' is in use (mounted or claimed by another program)"
expect_exit 0 "probe while a bank is mounted" "$BANKCTL" --root "$root" disk probe --json
check "probe reuses the existing loop device" test "$(json "d['device']" <<<"$OUT")" = "$loop"
check "probe shows bank-a busy and where it is mounted" \
	test "$(json "d['partitions'][1]['busy'], d['partitions'][1]['mountpoint']" <<<"$OUT")" = "(True, '$tmp/mnt')"
umount "$tmp/mnt"
expect_exit 1 "a partition is not a whole disk" "$BANKCTL" --root "$root" disk init --force "${loop}p1"
check "partition refusal is clear" test "$ERR" = "bankctl: target '${loop}p1' is a partition, not a whole disk"
losetup -d "$loop"
check "the reused loop device was not detached by bankctl, only by us" no_loop "$img"

# Too small.
small=$tmp/small.img
truncate -s 40M "$small"
mkdir -p "$tmp/root-small"
expect_exit 10 "a 40 MiB target is too small (exit 10)" "$BANKCTL" --root "$tmp/root-small" disk init "$small"
check "too small: one clear line with the sizes" test "$ERR" = "bankctl: target '$small': too small for the layout: needs at least 82 MiB, has 40 MiB"
check "too small: nothing written to the image" test -z "$(blkid -p -o export "$small")"
check "too small: no disk.json" test ! -e "$tmp/root-small/var/lib/bootbank/disk.json"
expect_exit 10 "a bank size beyond the disk is refused" "$BANKCTL" --root "$tmp/root-small" disk init "$img" --force --bank-size 200M
check "bank size: needs at least" grep -qF "too small for the layout: needs at least 466 MiB, has 300 MiB" <<<"$ERR"
expect_exit 1 "a bank size below the minimum is refused" "$BANKCTL" --root "$tmp/root-small" disk init "$img" --force --bank-size 1M
check "bank size: the minimum is named" grep -qF "bank size 1048576 bytes is below the minimum of 8 MiB" <<<"$ERR"
expect_exit 2 "a bad size is a usage error" "$BANKCTL" --root "$root" disk init "$img" --bank-size lots
check "bad size named" grep -qF "invalid size 'lots' for --bank-size" <<<"$ERR"
expect_exit 2 "missing target is a usage error" "$BANKCTL" --root "$root" disk init
expect_exit 2 "unknown sub-command" "$BANKCTL" --root "$root" disk frob
expect_exit 4 "a missing target: not found" "$BANKCTL" --root "$root" disk init "$tmp/nope.img"
check "missing target named" test "$ERR" = "bankctl: cannot open target '$tmp/nope.img': No such file or directory"
expect_exit 1 "a directory is not a target" "$BANKCTL" --root "$root" disk init "$tmp"

# --- probe --usage: private-namespace mounts -------------------------------------------
loop=$(losetup -f --show -P "$img")
track "$loop" "$img"
partx -a "$loop" 2>/dev/null || true
mount "${loop}p2" "$tmp/mnt"
head -c 20M /dev/zero >"$tmp/mnt/payload"
umount "$tmp/mnt"
losetup -d "$loop"
no_loop "$img"
mounts_before=$(wc -l </proc/self/mountinfo)
expect_exit 0 "probe --usage mounts each partition privately" "$BANKCTL" --root "$root" disk probe --usage --json
check "bank-a shows the 20 MiB written" jtrue "d['partitions'][1]['used'] >= 20 << 20" <<<"$OUT"
check "bank-b is nearly empty" jtrue "d['partitions'][2]['used'] < 2 << 20 and d['partitions'][2]['available'] > 50 << 20" <<<"$OUT"
check "no mount leaked into our namespace" test "$(wc -l </proc/self/mountinfo)" -eq "$mounts_before"
check "the mount directories exist but are not mount points" \
	bash -c 'for p in boot bank-a bank-b data; do [ -d "$1/$p" ] && ! mountpoint -q "$1/$p" || exit 1; done' _ "$root/run/bootbank/mnt"
check "the loop device is gone after probe --usage" no_loop "$img"

# --- discovery ---------------------------------------------------------------------------
# A read-only loop device of the image is not reused (banks must be writable).
ro=$(losetup -r -f --show -P "$img")
track "$ro" "$img"
expect_exit 0 "probe with a read-only loop device of the image attached" "$BANKCTL" --root "$root" disk probe --json
check "the read-only loop device is not reused" \
	bash -c '[ -n "$1" ] && [ "$1" != "$2" ]' _ "$(json "d['device']" <<<"$OUT")" "$ro"
losetup -d "$ro"

# A stale disk.json (the table was replaced behind its back) is refused.
cp "$rec" "$tmp/disk.json.new"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["disk_guid"]="00000000-0000-0000-0000-000000000000"; json.dump(d,open(sys.argv[1],"w"))' "$rec"
expect_exit 1 "a disk.json whose disk GUID changed is refused" "$BANKCTL" --root "$root" disk probe
check "stale record: clear message" grep -qF "no longer holds the table disk init wrote (disk GUID 00000000-0000-0000-0000-000000000000" <<<"$ERR"
cp "$tmp/disk.json.new" "$rec"

# [disk] device = an image beneath the root.
root2=$tmp/root2
mkdir -p "$root2/etc/bootbank" "$root2/images"
ln "$img" "$root2/images/disk.img"
printf '[disk]\ndevice = /images/disk.img\n' >"$root2/etc/bootbank/system.conf"
expect_exit 0 "probe with [disk] device = an image beneath the root" "$BANKCTL" --root "$root2" disk probe --json
check "source config-device" test "$(json "d['source']" <<<"$OUT")" = config-device
check "the image is resolved beneath the root" test "$(json "d['image']" <<<"$OUT")" = "$root2/images/disk.img"
check "four partitions found by name" test "$(json "len(d['partitions'])" <<<"$OUT")" -eq 4
sfdisk -q --part-label "$img" 2 renamed >/dev/null 2>&1
expect_exit 0 "a bank whose partition name was changed" "$BANKCTL" --root "$root2" disk probe --json
check "bank A is found by its type GUID" \
	test "$(json "d['partitions'][1]['part'], d['partitions'][1]['name'], d['partitions'][1]['type']" <<<"$OUT")" = "('bank-a', 'renamed', '8fac4a25-9f88-4344-9db7-f999d75f48ca')"
sfdisk -q --part-type "$img" 2 0FC63DAF-8483-4772-8E79-3D69D8477DE4 >/dev/null 2>&1
expect_exit 4 "no bank A by name or type" "$BANKCTL" --root "$root2" disk probe
check "missing bank: names the partition and the type" grep -qF "has no partition named 'bootbank_a' (or of type 8fac4a25-9f88-4344-9db7-f999d75f48ca)" <<<"$ERR"
sfdisk -q --part-label "$img" 2 bootbank_a >/dev/null 2>&1
sfdisk -q --part-type "$img" 2 8FAC4A25-9F88-4344-9DB7-F999D75F48CA >/dev/null 2>&1
printf '[disk]\ndevice = /images/missing.img\n' >"$root2/etc/bootbank/system.conf"
expect_exit 4 "a configured device that does not exist" "$BANKCTL" --root "$root2" disk probe
check "missing device: names the file and the key" grep -qF "cannot open '$root2/images/missing.img' ([disk] device in '$root2/etc/bootbank/system.conf')" <<<"$ERR"
truncate -s 100M "$root2/images/blank.img"
printf '[disk]\ndevice = /images/blank.img\n' >"$root2/etc/bootbank/system.conf"
expect_exit 4 "a configured image without a partition table" "$BANKCTL" --root "$root2" disk probe
check "no table: clear message" grep -qF "disk '$root2/images/blank.img' holds no partition table" <<<"$ERR"
check "the blank image's loop device is gone" no_loop "$root2/images/blank.img"

# [disk] bank-a and bank-b = block devices (here: loop devices over the partitions' ranges).
read -r a_start a_size b_start b_size < <(sfdisk -J "$img" | json "' '.join(str(x*512) for p in d['partitiontable']['partitions'][1:3] for x in (p['start'],p['size']))")
la=$(losetup -f --show -o "$a_start" --sizelimit "$a_size" "$img")
track "$la" "$img"
lb=$(losetup -f --show -o "$b_start" --sizelimit "$b_size" "$img")
track "$lb" "$img"
printf '[disk]\nbank-a = %s\nbank-b = %s\n' "$la" "$lb" >"$root2/etc/bootbank/system.conf"
expect_exit 0 "probe with [disk] bank-a and bank-b devices" "$BANKCTL" --root "$root2" disk probe --json
check "source config-partitions" test "$(json "d['source']" <<<"$OUT")" = config-partitions
check "bank devices as configured, no boot partition" \
	test "$(json "' '.join(p['part']+'='+p['device'] for p in d['partitions'])" <<<"$OUT")" = "bank-a=$la bank-b=$lb"
check "the configured banks hold ext4 labelled bootbank_a/b" \
	test "$(json "' '.join(p['label'] for p in d['partitions'])" <<<"$OUT")" = "bootbank_a bootbank_b"
printf '[disk]\nbank-a = %s\nbank-b = /images/disk.img\n' "$la" >"$root2/etc/bootbank/system.conf"
expect_exit 1 "a configured bank that is not a block device" "$BANKCTL" --root "$root2" disk probe
check "not a block device: names it and the key" grep -qF "'$root2/images/disk.img' ([disk] bank-b in '$root2/etc/bootbank/system.conf') is not a block device" <<<"$ERR"
losetup -d "$la" "$lb"

# Nothing configured, no disk.json, not the host root: nothing found.
mkdir -p "$tmp/root3"
expect_exit 4 "probe on an empty sandbox" "$BANKCTL" --root "$tmp/root3" disk probe
check "nothing found: says what to do" grep -qF "no bootbank disk found: set [disk] in '$tmp/root3/etc/bootbank/system.conf' or run 'bankctl disk init TARGET'" <<<"$ERR"

# --- --bios-boot and --esp-size ------------------------------------------------------------
if command -v mkfs.vfat >/dev/null; then
	fw=$tmp/fw.img
	truncate -s 300M "$fw"
	mkdir -p "$tmp/root5"
	# Old ext4 where the BIOS boot partition goes: it must not show through.
	mkfs.ext4 -q -F -E offset=$((1 << 20)) "$fw" 4M
	expect_exit 0 "disk init --bios-boot --esp-size 32M (--force over old ext4)" \
		"$BANKCTL" --root "$tmp/root5" disk init "$fw" --bios-boot --esp-size 32M --force
	pt=$(sfdisk -J "$fw")
	check "five partitions: boot, a, b, BIOS boot, ESP" \
		test "$(json "' '.join(p['name'] for p in d['partitiontable']['partitions'])" <<<"$pt")" = "bootbank_boot bootbank_a bootbank_b bootbank_bios bootbank_esp"
	check "their types" \
		test "$(json "' '.join(p['type'].lower() for p in d['partitiontable']['partitions'])" <<<"$pt")" = \
		"0fc63daf-8483-4772-8e79-3d69d8477de4 8fac4a25-9f88-4344-9db7-f999d75f48ca de5994dd-6548-4003-9e5b-cc3557945f8f 21686148-6449-6e6f-744e-656564454649 c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	check "BIOS boot partition: 1 MiB at 1 MiB; ESP: 32 MiB at 2 MiB; boot at 34 MiB" \
		test "$(json "[(p['start'],p['size']) for p in d['partitiontable']['partitions']]" <<<"$pt")" = \
		"[(69632, 131072), (200704, 204800), (405504, 204800), (2048, 2048), (4096, 65536)]"
	out=$(fsprobe "$fw" 5)
	check "the ESP holds FAT (blkid)" grep -qx "TYPE=vfat" <<<"$out"
	check "the ESP's FAT is labelled BOOTBANKESP" grep -qx "LABEL=BOOTBANKESP" <<<"$out"
	esp_start=$(json "[p['start'] for p in d['partitiontable']['partitions'] if p['name']=='bootbank_esp'][0]" <<<"$pt")
	dd if="$fw" of="$tmp/esp.img" bs=512 skip="$esp_start" count=65536 status=none
	check "file -s: the ESP is a FAT boot sector" bash -c 'file -s "$1" | grep -q "FAT"' _ "$tmp/esp.img"
	check "the BIOS boot partition holds nothing (old ext4 cleared)" \
		test -z "$(fsprobe "$fw" 4 | grep '^TYPE=')"
	check "the BIOS boot partition is zeroed" \
		bash -c 'cmp -s -n 1048576 <(dd if="$1" bs=1M skip=1 count=1 status=none) /dev/zero' _ "$fw"
	check "boot still holds ext4" grep -qx "TYPE=ext4" <<<"$(fsprobe "$fw" 1)"
	check "disk.json: filesystems ext4, ext4, ext4, none, vfat" \
		test "$(json "' '.join(str(p['filesystem']) for p in d['partitions'])" "$tmp/root5/var/lib/bootbank/disk.json")" = "ext4 ext4 ext4 None vfat"
	expect_exit 0 "disk probe --json shows them" "$BANKCTL" --root "$tmp/root5" disk probe --json
	check "probe: parts, numbers, filesystems" \
		test "$(json "' '.join('%s:%d:%s' % (p['part'], p['partno'], p['filesystem']) for p in d['partitions'])" <<<"$OUT")" = \
		"boot:1:ext4 bank-a:2:ext4 bank-b:3:ext4 bios-boot:4:None esp:5:vfat"
	expect_exit 0 "disk probe --usage measures only the ext4 ones" "$BANKCTL" --root "$tmp/root5" disk probe --usage --json
	check "probe --usage: no usage for BIOS boot and ESP" \
		test "$(json "' '.join(str(p['used'] is not None) for p in d['partitions'])" <<<"$OUT")" = "True True True False False"
	expect_exit 0 "disk probe (text)" "$BANKCTL" --root "$tmp/root5" disk probe
	check "text probe shows the ESP" grep -qE '^  esp +/dev/loop[0-9]+p5 +5 +bootbank_esp .* 32 MiB vfat ' <<<"$OUT"
	expect_exit 2 "--esp-size needs a size" "$BANKCTL" --root "$tmp/root5" disk init "$fw" --esp-size 0 --force
	expect_exit 1 "an ESP below 8 MiB is refused" "$BANKCTL" --root "$tmp/root5" disk init "$fw" --esp-size 1M --force
	check "says why" grep -qF "EFI System Partition size 1048576 bytes is below the minimum of 8 MiB" <<<"$ERR"
	# Without mkfs.vfat (hidden under a non-executable /dev/null in a mount namespace of its
	# own): refused before anything is written.
	before=$(sfdisk -d "$fw")
	expect_exit 4 "--esp-size without mkfs.vfat is refused (not found)" \
		unshare -m --propagation private bash -c 'for f in "$(command -v mkfs.vfat)" /usr/sbin/mkfs.vfat /sbin/mkfs.vfat; do [ -e "$f" ] && { mount --bind /dev/null "$f" || exit 9; }; done; exec "$@"' _ \
		"$BANKCTL" --root "$tmp/root5" disk init "$fw" --esp-size 16M --force
	check "says what is missing" grep -qF "'mkfs.vfat' not found (install dosfstools)" <<<"$ERR"
	check "the table is unchanged" test "$(sfdisk -d "$fw")" = "$before"
	check "the loop device is gone" no_loop "$fw"
else
	echo "# skipping --esp-size: mkfs.vfat not installed"
fi

# --- init on a block device ---------------------------------------------------------------
blk=$tmp/blk.img
truncate -s 200M "$blk"
loop=$(losetup -f --show -P "$blk")
track "$loop" "$blk"
mkdir -p "$tmp/root4"
expect_exit 0 "disk init on a block device (a loop device)" "$BANKCTL" --root "$tmp/root4" disk init "$loop"
check "the kernel has the three new partitions (BLKPG)" \
	bash -c 'for n in 1 2 3; do [ -b "$1p$n" ] || exit 1; done; [ ! -e "$1p4" ]' _ "$loop"
check "blkid sees bank B by its partition label" test "$(blkid -o value -s PARTLABEL "${loop}p3")" = bootbank_b
check "blkid sees ext4 on bank A" test "$(blkid -o value -s TYPE "${loop}p2")" = ext4
check "disk.json: not an image" test "$(json "d['image']" "$tmp/root4/var/lib/bootbank/disk.json")" = false
check "disk.json: the device path" test "$(json "d['path']" "$tmp/root4/var/lib/bootbank/disk.json")" = "$loop"
expect_exit 0 "probe the block device through disk.json" "$BANKCTL" --root "$tmp/root4" disk probe --json
check "probe: the device and its partitions" \
	test "$(json "d['device'], d['image'], [p['device'] for p in d['partitions']]" <<<"$OUT")" = "('$loop', None, ['${loop}p1', '${loop}p2', '${loop}p3'])"
check "the loop device we attached is still attached (not bankctl's)" test -n "$(losetup -j "$blk")"
losetup -d "$loop"

bk_done
