#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The /etc carry-forward at stage time (docs/initramfs.md, "/etc"), on a loop-backed disk in a
# sandbox, without a VM: the sandbox is laid out as the initramfs-tools boot method leaves a
# booted system (run/bootbank/booted.json, the booted image's root at run/bootbank/rootfs, the
# data partition's /etc layers at run/bootbank/data/etc/<BANK>/{upper,work,image}). Staging
# 2.0.0 while A (1.0.0) is booted copies A's layer into B's, with owners, modes, times,
# symbolic links, whiteouts and the opaque xattr; a path the admin changed that 2.0.0 changed
# too (compared with 1.0.0's /etc) is a conflict in stage's output, its JSON and the events;
# B's layer records 2.0.0's manifest digest (what the initramfs compares). No layers: no carry.
# A carry that fails (read-only layers): the stage succeeds, says so, the first boot carries.
. "$(dirname "$0")/lib.sh"

bk_need_root
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
for t in mkfs.ext4 mksquashfs openssl python3 losetup; do
	command -v "$t" >/dev/null || bk_skip "$t not installed"
done
if [ -z "${BK_ETC_UNSHARED:-}" ]; then
	BK_ETC_UNSHARED=1 exec unshare -m --propagation private bash "$0" "$@"
fi

T=$(bk_tmp)
repo=$(cd "$(dirname "$0")/../.." && pwd)
pki=$T/pki
bash "$repo/tests/pki/make-pki.sh" "$pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
root=$T/root
mkdir -p "$root/etc/bootbank" "$T/src" "$T/img"
cp "$pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = demo-x86_64\n' >"$root/etc/bootbank/system.conf"
B() { "$BANKCTL" --root "$root" "$@"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(str(r).lower() if isinstance(r,bool) else r)' "$1"; }

# image VERSION: a rootfs whose /etc is $T/src/VERSION/tree/etc as the caller made it
image() {
	local d=$T/src/$1
	head -c 4096 /dev/urandom >"$d/vmlinuz"
	mksquashfs "$d/tree" "$d/root.squashfs" -quiet -noappend -all-root >/dev/null
	cat >"$d/spec.json" <<-EOF
	{ "name": "demo-os", "version": "$1", "build": "b-$1", "compatible": "demo-x86_64",
	  "security_epoch": 1, "payloads": [
	    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
	    { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" } ] }
	EOF
	"$BANKCTL" image build "$d/spec.json" -o "$T/img/$1.bbi" --key "$pki/signer.key" \
		--cert "$pki/signer.crt" --intermediate "$pki/intermediate.crt" >/dev/null
}
e1=$T/src/1.0.0/tree/etc e2=$T/src/2.0.0/tree/etc
mkdir -p "$e1/dir" "$e2/dir"
for v in 1.0.0 2.0.0; do
	e=$T/src/$v/tree/etc
	echo "$v" >"$e/os-release"
	echo same >"$e/same"
	echo same >"$e/dir/same"
	echo gone >"$e/deleted-unchanged"
done
echo image-1 >"$e1/conflict"
echo image-2 >"$e2/conflict"
echo image-1 >"$e1/dir/conflict"
echo image-2 >"$e2/dir/conflict"
echo only-in-1 >"$e1/removed-by-2"
ln -s target-1 "$e1/link"
ln -s target-2 "$e2/link"
image 1.0.0
image 2.0.0
check "the test images" test -s "$T/img/1.0.0.bbi" -a -s "$T/img/2.0.0.bbi"

truncate -s 100M "$T/disk.img"
expect_exit 0 "disk init" B disk init "$T/disk.img" --boot-size 8M --bank-size 24M
expect_exit 0 "stage 1.0.0 into A" B stage "$T/img/1.0.0.bbi" --activate
expect_exit 0 "A boots (simulated) and is good" sh -c "'$BANKCTL' --root '$root' boot --simulate >/dev/null && '$BANKCTL' --root '$root' mark-good"

# --- the booted system, as the initramfs leaves it --------------------------------------------
run=$root/run/bootbank
mkdir -p "$run/rootfs" "$run/data/etc/A/upper/dir" "$run/data/etc/A/work" "$run/data/etc/B/upper"
cp -a "$T/src/1.0.0/tree/etc" "$run/rootfs/etc"
up=$run/data/etc/A/upper
echo local-new >"$up/local-new"                # not in either image
echo local >"$up/conflict"                     # 2.0.0 changed it too: conflict
echo local >"$up/dir/conflict"                 # the same, one level down
echo local >"$up/same"                         # 2.0.0 did not change it: no conflict
echo local >"$up/removed-by-2"                 # 2.0.0 removed it: conflict
ln -s local-target "$up/link"                  # 2.0.0 changed the link: conflict
mknod "$up/deleted-unchanged" c 0 0            # a whiteout, 2.0.0 did not change it
mkdir "$up/opaque" && echo mine >"$up/opaque/f" # a directory made again by the admin
python3 -c 'import os,sys; os.setxattr(sys.argv[1], "trusted.overlay.opaque", b"y")' "$up/opaque"
echo secret >"$up/secret" && chmod 0640 "$up/secret" && chown 1234:5678 "$up/secret"
touch -d '2001-02-03 04:05:06' "$up/secret"
echo stale >"$run/data/etc/B/upper/stale"      # B's layer of the image it held before
mkdir -p "$run/data/etc/B.new/upper" # a killed run's leftover

expect_exit 0 "stage 2.0.0 while A is booted" B stage "$T/img/2.0.0.bbi"
check "2.0.0 went to bank B" grep -q "^staged demo-os 2.0.0 (build b-2.0.0) into bank B" <<<"$OUT"
check "stage says A's layer was carried into B's (11 entries)" \
	grep -qx "  /etc: bank A's layer carried forward into bank B's (11 entries)" <<<"$OUT"
conflicts=$(sed -n 's/^  \/etc conflict: \([^:]*\): changed locally and by the new image; the local version is kept$/\1/p' <<<"$OUT" | sort | tr '\n' ' ')
check "the conflicts: the files and the link 2.0.0 changed or removed ($conflicts)" \
	test "$conflicts" = "/etc/conflict /etc/dir/conflict /etc/link /etc/removed-by-2 "

nb=$run/data/etc/B
check "B's layer: the local files, the local version of a conflict" \
	test "$(cat "$nb/upper/local-new" "$nb/upper/conflict" "$nb/upper/dir/conflict" "$nb/upper/same")" = "$(printf 'local-new\nlocal\nlocal\nlocal')"
check "B's layer: the symbolic link" test "$(readlink "$nb/upper/link")" = local-target
check "B's layer: the whiteout (character device 0/0)" \
	test "$(stat -c '%F %t:%T' "$nb/upper/deleted-unchanged")" = "character special file 0:0"
check "B's layer: the opaque directory keeps its xattr" \
	test "$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.overlay.opaque").decode())' "$nb/upper/opaque" 2>/dev/null)" = y
check "B's layer: owner, mode and time kept" \
	test "$(stat -c '%u:%g %a %Y' "$nb/upper/secret")" = "1234:5678 640 $(date -d '2001-02-03 04:05:06' +%s)"
check "B's layer: nothing of the layer B had" test ! -e "$nb/upper/stale"
check "B's layer: an empty work directory" test -d "$nb/work" -a -z "$(ls -A "$nb/work")"
check "no leftovers beside the layers" test "$(ls "$run/data/etc" | tr '\n' ' ')" = "A B "
check "A's layer untouched" test "$(cat "$up/conflict")" = local -a -c "$up/deleted-unchanged"
digest=$(B status --json | json "d['boot']['banks']['B']['content']['manifest_sha256']" 2>/dev/null)
check "B's layer records 2.0.0's manifest digest, as the initramfs compares it ($digest)" \
	test -n "$digest" -a "$(cat "$nb/image" 2>/dev/null)" = "$digest"
check "the mount of 2.0.0's rootfs is gone" sh -c "! grep -q ' $run/mnt/etc-carry ' /proc/self/mountinfo"

expect_exit 0 "events" B events
check "an event: the layer carried" grep -q "etc carry-forward.*bank A's /etc layer carried into bank B: 11 entries, 4 conflicts" <<<"$OUT"
check "an event (warning) for each conflict" \
	test "$(grep -c "etc carry-forward.*warning.*changed locally and by the new image; the local version is kept" <<<"$OUT")" = 4
check "the conflict's event names the path" grep -q "warning.*/etc/dir/conflict: changed locally" <<<"$OUT"

# --- stage --json: the carry in the result; B's layer replaced again ---------------------------
echo stale >"$nb/upper/stale"
expect_exit 0 "stage 2.0.0 again, --json" B --json stage "$T/img/2.0.0.bbi"
res=$(grep '"event":"result"\|"event": "result"' <<<"$OUT" | tail -n1)
check "stage --json: etc.from A, 11 entries" test "$(json "(d['etc']['from'], d['etc']['entries'])" <<<"$res")" = "('A', 11)"
check "stage --json: etc.conflicts" test "$(json "' '.join(sorted(d['etc']['conflicts']))" <<<"$res")" = "/etc/conflict /etc/dir/conflict /etc/link /etc/removed-by-2"
check "B's layer made again (no stale file)" test ! -e "$nb/upper/stale"

# --- a carry that fails: the stage succeeds, the first boot carries ---------------------------
mount --bind "$run/data/etc" "$run/data/etc" && mount -o remount,bind,ro "$run/data/etc"
expect_exit 0 "stage with the layers read-only: the stage itself succeeds" B stage "$T/img/2.0.0.bbi"
check "stage says the layer was not carried, the first boot carries it" \
	grep -q "^  /etc: not carried forward (.*Read-only file system): bank B's first boot carries it" <<<"$OUT"
umount "$run/data/etc"
expect_exit 0 "events" B events -n 3
check "a failed event for the carry" grep -q "etc carry-forward.*failed.*not carried into bank B" <<<"$OUT"
check "no half-made layer left" test ! -e "$run/data/etc/B.new"

# --- no layers (not booted by the boot method): no carry, no event ----------------------------
rm -rf "$run/data"
expect_exit 0 "stage without /etc layers" B stage "$T/img/2.0.0.bbi"
check "no /etc line in stage's output" test -z "$(grep '/etc' <<<"$OUT")"
expect_exit 0 "events" B events -n 1
check "no carry event (the last event is the stage)" grep -q "staged into bank B" <<<"$OUT"
check "no carry event" test -z "$(grep 'etc carry-forward' <<<"$OUT")"
bk_done
