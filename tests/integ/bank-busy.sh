#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A bank that is mounted somewhere else (issue 16, items 2 and 3), on a loop-backed disk image:
# - a live process holding bank B mounted in its own mount namespace: stage refuses at once
#   (exit 3) and names the process, the mount point and the device;
# - the same process killed, its namespace still being torn down (here kept by a bind mount of
#   its nsfs file open in another process, closed shortly after: the kernel's asynchronous
#   teardown, made deterministic): stage, started right after the kill, waits for it and succeeds; so does
#   `recover` of an interrupted stage; when the teardown never ends, stage gives up after the
#   bound with a message that says so;
# - bank B mounted through another loop device of the same image file (read-only, which bankctl
#   does not reuse): stage refuses; before, it wrote the bank through its own loop device while
#   the other mount had it: two filesystem instances of one bank.
. "$(dirname "$0")/lib.sh"

bk_need_root
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
for t in mkfs.ext4 mksquashfs python3 losetup unshare; do
	command -v "$t" >/dev/null || bk_skip "$t not installed"
done
SO=$(realpath "${BK_BUILD:-build/cc}/tests/crash/bk-crash.so" 2>/dev/null) || SO=
if [ -n "$SO" ] && ldd "$BANKCTL" | grep -q libasan; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
fi

T=$(bk_tmp)
repo=$(cd "$(dirname "$0")/../.." && pwd)
bash "$repo/tests/pki/make-pki.sh" "$T/pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
root=$T/root
disk=$T/disk.img
mkdir -p "$root/etc/bootbank" "$T/src/tree/etc" "$T/mnt"
cp "$T/pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = busy-x86_64\n' >"$root/etc/bootbank/system.conf"
B() { "$BANKCTL" --root "$root" "$@"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(str(r).lower() if isinstance(r,bool) else r)' "$1"; }
head -c 300000 /dev/urandom >"$T/src/vmlinuz"
for v in 1.0.0 2.0.0 3.0.0; do
	echo "$v" >"$T/src/tree/etc/os-release"
	mksquashfs "$T/src/tree" "$T/src/root-$v.squashfs" -quiet -noappend -all-root >/dev/null
	cat >"$T/src/spec-$v.json" <<-EOF
	{ "name": "busy-os", "version": "$v", "build": "$v", "compatible": "busy-x86_64",
	  "security_epoch": 1, "payloads": [
	    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
	    { "name": "root.squashfs", "type": "rootfs", "source": "root-$v.squashfs" } ] }
	EOF
	"$BANKCTL" image build "$T/src/spec-$v.json" -o "$T/v$v.bbi" --key "$T/pki/signer.key" \
		--cert "$T/pki/signer.crt" --intermediate "$T/pki/intermediate.crt" >/dev/null ||
		bk_skip "cannot build the test images"
done
truncate -s 48M "$disk"
B disk init "$disk" --boot-size 8M --bank-size 16M >/dev/null || bk_skip "disk init failed"
B stage "$T/v1.0.0.bbi" --activate >/dev/null && B boot --simulate >/dev/null && B mark-good >/dev/null ||
	bk_skip "cannot prepare: v1 in bank A"
bankstate() { B status --json | json "d['boot']['banks']['$1']['state']"; }

# One loop device of the image, which bankctl reuses (whole file, partition scanning).
loop=$(losetup -P -f --show "$disk") || bk_skip "cannot attach a loop device"
bk_track_loop "$loop"
partx -a "$loop" 2>/dev/null || true
for _ in $(seq 1 50); do [ -b "${loop}p3" ] && break; sleep 0.1; done

holders=()
cleanup() {
	local p
	for p in "${holders[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait
	bk_cleanup
}
trap cleanup EXIT

# hold DEV [OPTS]: a process in its own mount namespace with DEV mounted at $T/mnt; $holder
hold() {
	rm -f "$T/up"
	unshare -m --propagation private sh -c 'mount -o "$3" "$1" "$2" && touch "$4" && exec sleep 600' \
		_ "$1" "$T/mnt" "${2:-rw}" "$T/up" &
	holder=$!
	holders+=("$holder")
	for _ in $(seq 1 100); do [ -e "$T/up" ] && return 0; sleep 0.05; done
	return 1
}
# orphan SECS: kill the holder; its namespace (with the mount) is kept for SECS more seconds
# only by an open fd of its nsfs file in another process (in our namespace): no process is in
# it any more, as after a kill while the kernel has not torn it down yet. $keeper
orphan() {
	rm -f "$T/kept"
	sh -c 'exec 9<"$1" && touch "$2" && exec sleep "$3"' _ "/proc/$holder/ns/mnt" "$T/kept" "$1" &
	keeper=$!
	holders+=("$keeper")
	for _ in $(seq 1 100); do [ -e "$T/kept" ] && break; sleep 0.05; done
	kill -9 "$holder"
	wait "$holder" 2>/dev/null
	[ -e "$T/kept" ]
}
# elapsed CMD...: run CMD (expect_exit), seconds taken in $SECS
timed() {
	local t0 t1
	t0=$(date +%s%N)
	"$@"
	t1=$(date +%s%N)
	SECS=$(((t1 - t0) / 1000000000))
}

# --- a live process holds bank B: refused at once ---------------------------------------------
hold "${loop}p3" || bk_skip "cannot mount bank B in a namespace of its own"
timed expect_exit 3 "bank B mounted by a live process in another namespace: stage refuses (exit 3)" \
	B stage "$T/v2.0.0.bbi"
check "  ... at once (${SECS} s), without waiting for it" test "$SECS" -lt 5
check "  ... the message names the bank, device, process and mount point" \
	test "$ERR" = "bankctl: bank B: '${loop}p3' is in use: mounted by pid $holder (sleep) at '$T/mnt'"
check "  ... bank B is still empty" test "$(bankstate B)" = empty

# --- the process is killed; its namespace goes away 2 s later: the next stage waits ----------
orphan 2 || bk_skip "cannot keep a mount namespace"
timed expect_exit 0 "the holder killed, its namespace torn down 2 s later: the next stage, started at once, succeeds" \
	B stage "$T/v2.0.0.bbi"
check "  ... it waited for the teardown (${SECS} s)" test "$SECS" -ge 1
check "  ... bank B is staged" test "$(bankstate B)" = staged
wait

# --- the same for recover of an interrupted stage (a read-only mount: the read-write mount of the
#     recovery would fail with 'already mounted' while it exists) ------------------------------
if [ -n "$SO" ]; then
	n=20
	while [ $n -lt 200 ]; do
		LD_PRELOAD=$SO BK_CRASH_AT=$n B stage "$T/v3.0.0.bbi" >/dev/null 2>&1
		[ -e "$root/var/lib/bootbank/staging.json" ] && break
		n=$((n + 10))
	done
	check "a stage killed at its mutating call $n left the staging marker" test -e "$root/var/lib/bootbank/staging.json"
	hold "${loop}p3" ro && orphan 2 || bk_skip "cannot hold bank B"
	timed expect_exit 0 "recover, right after the kill of a process that had bank B mounted, waits and succeeds" B recover
	check "  ... it finished the interrupted stage" grep -q "an interrupted stage of busy-os 3.0.0 into bank B" <<<"$OUT"
	check "  ... no staging marker left" test ! -e "$root/var/lib/bootbank/staging.json"
	wait
fi

# --- a teardown that never ends: refused after the bound, and the message says why -----------
hold "${loop}p3" && orphan 600 || bk_skip "cannot hold bank B"
timed expect_exit 3 "a namespace that is never torn down: stage gives up (exit 3)" B stage "$T/v2.0.0.bbi"
check "  ... after the bound (${SECS} s)" test "$SECS" -ge 9
check "  ... the message says what holds it" grep -q "^bankctl: bank B: '${loop}p3' is still in use after 10.[0-9] s although no process has it mounted: the mount namespace of a killed run that the kernel has not torn down" <<<"$ERR"
kill -9 "$keeper"
wait "$keeper" 2>/dev/null

# --- bank B mounted through a read-only loop device of the same image -----------------------
ro=$(losetup -r -P -f --show "$disk") || bk_skip "cannot attach a read-only loop device"
bk_track_loop "$ro"
partx -a "$ro" 2>/dev/null || true
for _ in $(seq 1 50); do [ -b "${ro}p3" ] && break; sleep 0.1; done
losetup -d "$loop" # bankctl attaches its own now: the read-only device is not reused
hold "${ro}p3" ro || bk_skip "cannot mount bank B read-only"
before=$(B status --json | json "d['boot']['banks']['B']['state']")
timed expect_exit 3 "bank B mounted through another (read-only) loop device of the image: stage refuses" \
	B stage "$T/v2.0.0.bbi"
check "  ... the message names the other device and the process" \
	grep -Eq "^bankctl: bank B: '/dev/loop[0-9]+p3' is in use: mounted by pid $holder \(sleep\) at '$T/mnt' through ${ro}p3$" <<<"$ERR"
check "  ... bank B's state is unchanged ($before)" test "$(bankstate B)" = "$before"
kill -9 "$holder"
wait "$holder" 2>/dev/null

# --- another device of the whole image, partitions added by partx, its boot partition mounted:
# the bank is free (check-boot's host keeps the boot partition mounted like this while staging)
plain=$(losetup -f --show "$disk") || bk_skip "cannot attach a loop device"
bk_track_loop "$plain"
partx -a "$plain" 2>/dev/null || partx -u "$plain" 2>/dev/null || true
for _ in $(seq 1 50); do [ -b "${plain}p1" ] && break; sleep 0.1; done
hold "${plain}p1" ro || bk_skip "cannot mount the boot partition through $plain"
timed expect_exit 0 "the boot partition mounted through another device of the image: stage into B goes on" \
	B stage "$T/v3.0.0.bbi"
check "  ... bank B holds v3.0.0" test "$(B status --json | json "d['boot']['banks']['B']['content']['version']")" = 3.0.0
kill -9 "$holder"
wait "$holder" 2>/dev/null
bk_done
