#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Crash injection, the proof behind docs/crash-safety.md: stage, activate, mark-good, mark-bad,
# rollback and roll-forward are killed before their Nth mutating system call (write, pwrite,
# fsync, rename, unlink, ftruncate, mkdir, mount, ...: tests/crash/bk-crash.c) for every N from
# 1 to the operation's total. After each kill, `bankctl recover` runs and the invariants must
# hold: the previously good bank is byte-identical and eligible, the model boots the old or
# the new bank, status and explain-next-boot read the boot state, no temp or partial file at
# any depth of the state and run directories and of both banks, no staging marker remains, a
# staged bank is complete, and so is every bank whose bank.json exists.
. "$(dirname "$0")/lib.sh"

bk_need_root
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
for t in mkfs.ext4 mksquashfs debugfs python3 losetup; do
	command -v "$t" >/dev/null || bk_skip "$t not installed"
done
SO=$(realpath "${BK_BUILD:-build/cc}/tests/crash/bk-crash.so" 2>/dev/null) || true
[ -f "$SO" ] || bk_skip "no crash injector (make tests builds bk-crash.so)"
if ldd "$BANKCTL" | grep -q libasan; then
	# ASan wants to come first in the library list, and a preloaded shim comes before it:
	# tell it not to insist (the shim only wraps libc calls; ASan works on).
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
fi

T=$(bk_tmp)
repo=$(cd "$(dirname "$0")/../.." && pwd)
bash "$repo/tests/pki/make-pki.sh" "$T/pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
root=$T/root
disk=$T/disk.img
mkdir -p "$root/etc/bootbank" "$T/src/tree/etc"
cp "$T/pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = crash-x86_64\n' >"$root/etc/bootbank/system.conf"
B() { "$BANKCTL" --root "$root" "$@"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(str(r).lower() if isinstance(r,bool) else r)' "$1"; }

# Two small images: a few pwrites each (1 MiB copy buffer), so stage has tens of crash points.
head -c 1100000 /dev/urandom >"$T/src/vmlinuz"
head -c 200000 /dev/urandom >"$T/src/initrd.img"
for v in 1.0.0 2.0.0 3.0.0; do
	echo "$v" >"$T/src/tree/etc/os-release"
	mksquashfs "$T/src/tree" "$T/src/root-$v.squashfs" -quiet -noappend -all-root >/dev/null
	cat >"$T/src/spec-$v.json" <<-EOF
	{ "name": "crash-os", "version": "$v", "build": "$v", "compatible": "crash-x86_64",
	  "security_epoch": 1, "payloads": [
	    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
	    { "name": "initrd.img", "type": "initrd", "source": "initrd.img" },
	    { "name": "root.squashfs", "type": "rootfs", "source": "root-$v.squashfs" } ] }
	EOF
	"$BANKCTL" image build "$T/src/spec-$v.json" -o "$T/v$v.bbi" --key "$T/pki/signer.key" \
		--cert "$T/pki/signer.crt" --intermediate "$T/pki/intermediate.crt" >/dev/null ||
		bk_skip "cannot build the test images"
done

truncate -s 48M "$disk"
B disk init "$disk" --boot-size 8M --bank-size 16M >/dev/null || bk_skip "disk init failed"
read -r sa za sb zb < <(json "' '.join('%d %d' % (p['start'], p['size']) for p in d['partitions'] if p['part'] in ('bank-a', 'bank-b'))" <"$root/var/lib/bootbank/disk.json")
off() { if [ "$1" = A ]; then echo "$sa $za"; else echo "$sb $zb"; fi; }
hashp() { # IMAGE A|B: sha256 of the bank partition's bytes in the image
	local o s h
	read -r o s < <(off "$2")
	h=$(set -o pipefail; dd if="$1" iflag=direct,skip_bytes,count_bytes skip="$o" count="$s" bs=1M status=none | sha256sum) || h="unreadable-$RANDOM"
	echo "${h%% *}"
}
# bankdump A|B: a copy of the bank's whole filesystem in $T/dump/A|B (debugfs reads the image,
# no mount)
bankdump() {
	local o s
	read -r o s < <(off "$1")
	rm -rf "$T/dump/$1"
	mkdir -p "$T/dump/$1"
	debugfs -c -R "rdump / $T/dump/$1" "$disk?offset=$o" >/dev/null 2>&1
}

# Pristine states, each a copy of the disk image and the root: the state an operation starts in.
snap() { # NAME
	mkdir -p "$T/snap/$1"
	cp --sparse=always "$disk" "$T/snap/$1/disk.img"
	cp -a "$root" "$T/snap/$1/root"
}
restore() { # NAME: a new inode for the image, so no loop device of an old run is reused
	cp --sparse=always "$T/snap/$1/disk.img" "$disk.new"
	mv "$disk.new" "$disk"
	rm -rf "$root"
	cp -a "$T/snap/$1/root" "$root"
}
B stage "$T/v1.0.0.bbi" --activate >/dev/null && B boot --simulate >/dev/null && B mark-good >/dev/null ||
	bk_skip "cannot prepare: v1 in bank A"
snap stage # A good (v1, booted), B empty
B stage "$T/v2.0.0.bbi" >/dev/null || bk_skip "cannot prepare: v2 in bank B"
snap activate # B staged
B activate >/dev/null && B boot --simulate >/dev/null || bk_skip "cannot prepare: boot B"
snap trying # B trying (booted), A good
B mark-good >/dev/null || bk_skip "cannot prepare: B good"
snap rollback # both good, B booted
B rollback >/dev/null || bk_skip "cannot prepare: rollback"
snap roll-forward # pinned to A
echo "# prepared 5 states"

# verify OP N PROTECTED NEXT: the invariants after a kill at N and `bankctl recover`.
# PROTECTED: banks that were good and must be byte-identical and eligible; NEXT: the banks
# the model may boot next (the old and the new result).
failures=()
fail() { failures+=("$*"); }
# check_json OP N PROTECTED NEXT: one Python run over explain-next-boot and status (both JSON)
check_json() {
	python3 - "$@" "$T/explain.json" "$T/status.json" <<-'EOF'
	import json, sys
	op, n, protected, nxt, ex, st = sys.argv[1:]
	x = json.load(open(ex)); s = json.load(open(st))
	if x["next"]["bank"] not in nxt.split():
	    print("%s@%s: next boot is bank %s, expected one of: %s" % (op, n, x["next"]["bank"], nxt))
	for b in protected.split():
	    if not x["banks"][b]["eligible"]:
	        print("%s@%s: bank %s is not eligible: %s" % (op, n, b, x["banks"][b]["text"]))
	print("state-A", s["boot"]["banks"]["A"]["state"])
	print("state-B", s["boot"]["banks"]["B"]["state"])
	EOF
}
verify() {
	local op=$1 n=$2 protected=$3 next=$4 out left line
	out=$(B recover 2>&1) || { fail "$op@$n: recover failed: $out"; return; }
	B status --json >"$T/status.json" 2>"$T/status.err" || { fail "$op@$n: status: $(cat "$T/status.err")"; return; }
	B explain-next-boot --json >"$T/explain.json" 2>&1 || { fail "$op@$n: explain-next-boot: $(cat "$T/explain.json")"; return; }
	declare -A st=()
	while IFS= read -r line; do
		case $line in
		state-?\ *) st[${line:6:1}]=${line#state-? } ;;
		*) fail "$line" ;;
		esac
	done < <(check_json "$op" "$n" "$protected" "$next")
	for b in $protected; do
		[ "$(hashp "$disk" "$b")" = "${pristine[$b]}" ] || fail "$op@$n: bank $b changed"
	done
	[ ! -e "$root/var/lib/bootbank/staging.json" ] || fail "$op@$n: the staging marker is left"
	# Leftovers at every depth of the state and run directories and of both banks; a bank
	# whose bank.json exists is complete (tests/crash/check-tree.py).
	bankdump A && bankdump B || fail "$op@$n: cannot read the banks with debugfs"
	while IFS= read -r line; do
		fail "$op@$n: $line"
	done < <(python3 "$repo/tests/crash/check-tree.py" --scanned "$T/scanned" \
		--tree "var/lib/bootbank:$root/var/lib/bootbank" --tree "run/bootbank:$root/run/bootbank" \
		--bank "bank A:$T/dump/A" --bank "bank B:$T/dump/B")
	[ -n "${target:-}" ] || return 0
	# The bank being staged: empty, or complete with the new image, or (killed before stage
	# touched it) still what it was, complete with the old image.
	case ${st[$target]} in
	empty) ;;
	staged) has_image "$op@$n" "$target" "$new_version" ;;
	"$old_state") has_image "$op@$n" "$target" "$old_version" ;;
	*) fail "$op@$n: bank $target is '${st[$target]}' after an interrupted stage" ;;
	esac
}
has_image() { # WHERE BANK VERSION: bank.json names VERSION and root.squashfs is its bytes
	grep -qs "\"version\": \"$3\"" "$T/dump/$2/bank.json" || fail "$1: bank $2 has no record of $3"
	cmp -s "$T/dump/$2/root.squashfs" "$T/src/root-$3.squashfs" ||
		fail "$1: bank $2 does not hold the root.squashfs of $3"
}

declare -A pristine
summary=()
# crashtest OP SNAP PROTECTED NEXT CMD...
crashtest() {
	local op=$1 snapname=$2 protected=$3 next=$4 total n rc
	shift 4
	failures=()
	restore "$snapname"
	for b in A B; do pristine[$b]=$(hashp "$disk" "$b"); done
	rm -f "$T/count"
	LD_PRELOAD=$SO BK_CRASH_COUNT=$T/count B "$@" >/dev/null 2>&1
	rc=$?
	total=$(cat "$T/count" 2>/dev/null || echo 0)
	if [ "$rc" -ne 0 ] || [ "$total" -lt 1 ]; then
		not_ok "$op: runs without a crash (exit $rc, $total mutating calls)"
		return
	fi
	verify "$op" 0 "$protected" "$next"
	for n in $(seq 1 "$total"); do
		restore "$snapname"
		LD_PRELOAD=$SO BK_CRASH_AT=$n B "$@" >/dev/null 2>&1
		rc=$?
		[ "$rc" -eq 137 ] || fail "$op@$n: exit $rc, not killed (the count changed?)"
		verify "$op" "$n" "$protected" "$next"
	done
	if [ ${#failures[@]} -eq 0 ]; then
		ok "$op: killed at each of $total mutating calls, recovered, invariants hold"
	else
		for f in "${failures[@]:0:10}"; do not_ok "$f"; done
		not_ok "$op: ${#failures[@]} failed checks over $total crash points"
	fi
	summary+=("$op: $total")
}

# Stage into an empty bank, and over a bank that holds a good image (the fallback).
target=B old_state=none old_version=none new_version=2.0.0 \
	crashtest stage stage "A" "A" stage "$T/v2.0.0.bbi"
target=A old_state=good old_version=1.0.0 new_version=3.0.0 \
	crashtest stage-over-good rollback "B" "B" stage "$T/v3.0.0.bbi"
crashtest activate activate "A" "A B" activate
crashtest mark-good trying "A" "B" mark-good
crashtest mark-bad trying "A" "B A" mark-bad
crashtest rollback rollback "A B" "B A" rollback
crashtest roll-forward roll-forward "A B" "A B" roll-forward
echo "crash points tested: $(IFS=,; echo "${summary[*]}" | sed 's/,/, /g')"
echo "leftovers looked for at every depth in: $(sed ':a;N;$!ba;s/\n/, /g' "$T/scanned")"
bk_done
