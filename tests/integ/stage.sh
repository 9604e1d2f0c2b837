#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankctl stage on a loop-backed disk image: what a bank holds afterwards (payloads, signed
# manifest, signature, bank.json), the boot state around it, status, the full A/B cycle, and
# every refusal: bad bundles leave both bank partitions byte-identical (sha256 of the partition
# devices before and after), a corrupt payload empties only the alternate bank, a bank too small,
# the alternate bank mounted elsewhere, two concurrent stages, maintenance mode; recovery.
. "$(dirname "$0")/lib.sh"

bk_need_root
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
for t in mkfs.ext4 mksquashfs openssl python3 losetup partx script; do
	command -v "$t" >/dev/null || bk_skip "$t not installed"
done

T=$(bk_tmp)
repo=$(cd "$(dirname "$0")/../.." && pwd)
pki=$T/pki
bash "$repo/tests/pki/make-pki.sh" "$pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
root=$T/root
mkdir -p "$root/etc/bootbank" "$T/src" "$T/img" "$T/mnt"
cp "$pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = demo-x86_64\n' >"$root/etc/bootbank/system.conf"
B() { "$BANKCTL" --root "$root" "$@"; }

# json EXPR: a Python expression over the JSON document d on stdin
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(str(r).lower() if isinstance(r,bool) else r)' "$1"; }

# mkimage NAME VERSION EPOCH [COMPATIBLE] [SIGNER] [EXTRA]: $T/img/NAME-VERSION.bbi; EXTRA adds
# a "big.bin" payload of that many MiB, or a payload named bank.json when it is "reserved".
mkimage() {
	local name=$1 ver=$2 epoch=$3 compat=${4:-demo-x86_64} who=${5:-signer} extra=${6:-}
	local d=$T/src/$name-$ver extra_json=""
	mkdir -p "$d/tree/etc"
	head -c 700001 /dev/urandom >"$d/vmlinuz"
	head -c 300003 /dev/urandom >"$d/initrd.img"
	echo "$name $ver" >"$d/tree/etc/os-release"
	mksquashfs "$d/tree" "$d/root.squashfs" -quiet -noappend -all-root >/dev/null
	if [ "$extra" = reserved ]; then
		echo note >"$d/note"
		extra_json=', { "name": "bank.json", "type": "file", "source": "note" }'
	elif [ -n "$extra" ]; then
		head -c $((extra << 20)) /dev/urandom >"$d/big.bin"
		extra_json=', { "name": "big.bin", "type": "file", "source": "big.bin" }'
	fi
	cat >"$d/spec.json" <<-EOF
	{ "name": "$name", "version": "$ver", "build": "b-$ver", "compatible": "$compat",
	  "security_epoch": $epoch, "payloads": [
	    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
	    { "name": "initrd.img", "type": "initrd", "source": "initrd.img" },
	    { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" }$extra_json ] }
	EOF
	"$BANKCTL" image build "$d/spec.json" -o "$T/img/$name-$ver.bbi" --key "$pki/$who.key" \
		--cert "$pki/$who.crt" --intermediate "$pki/intermediate.crt" >/dev/null
}

mkimage demo-os 1.0.0 1
mkimage demo-os 2.0.0 1
mkimage demo-os 3.0.0 2
mkimage demo-os 0.9.0 1
mkimage demo-os 0.5.0 0
mkimage other-os 5.0.0 1 other-x86_64
mkimage demo-os 4.0.0 2 demo-x86_64 other-signer
mkimage demo-os 4.0.1 2 demo-x86_64 signer reserved
mkimage demo-os 4.0.2 2 demo-x86_64 signer 30
mkimage demo-os 4.0.3 2 demo-x86_64 signer 12
img=$T/img

# --- the disk: boot 8 MiB, banks 24 MiB; our own loop device to look at the partitions -------
disk=$T/disk.img
truncate -s 100M "$disk"
expect_exit 0 "disk init" B disk init "$disk" --boot-size 8M --bank-size 24M
# Where the banks are in the image (disk.json). The test keeps no loop device attached between
# steps (bankctl attaches and drops its own): a partition's bytes are read straight from the
# image with O_DIRECT, and a bank is looked into through a loop device of its range that lives
# for one command.
bk_disk_banks
check "disk.json names both banks" test -n "$zb"
hashp() { bk_bank_hash "$@"; }
hashes() { echo "$(hashp A) $(hashp B)"; }
state=$root/var/lib/bootbank/bootstate.json
statehash() { sha256sum "$state" 2>/dev/null | cut -d' ' -f1; }
inbank() { bk_in_bank "$@"; }
no_leftovers() {
	[ -z "$(find "$root/var/lib/bootbank" "$root/run/bootbank" -maxdepth 1 \( -name '.#*' -o -name '.partial.*' -o -name staging.json \))" ] &&
		inbank A sh -c '! ls -A | grep -q "^\.partial\.\|^\.#"' &&
		inbank B sh -c '! ls -A | grep -q "^\.partial\.\|^\.#"'
}
bankstate() { B status --json | json "d['boot']['banks']['$1']['state']"; }

# --- first stage: nothing booted, both banks empty: bank A ------------------------------------
before=$(hashes)
expect_exit 0 "stage v1 --activate on a fresh disk" B stage "$img/demo-os-1.0.0.bbi" --activate
check "v1 went to bank A (empty, nothing booted)" grep -q "^staged demo-os 1.0.0 (build b-1.0.0) into bank A (empty, and no bank is booted)" <<<"$OUT"
check "stage says it activated bank A" grep -q "bank A activated: generation 1, 3 tries" <<<"$OUT"
check "bank B untouched by the first stage" test "$(hashes | cut -d' ' -f2)" = "$(cut -d' ' -f2 <<<"$before")"
check "bank A: the payload files, manifest, signature, chunk lists, record" \
	inbank A sh -c 'test "$(ls -A | sort | tr "\n" " ")" = "bank.json initrd.img lost+found manifest.chunks manifest.json manifest.sig root.squashfs vmlinuz "'
check "bank A: manifest.chunks is the bundle's chunk table (its last bytes)" \
	inbank A sh -c "test -s manifest.chunks && tail -c \$(stat -c %s manifest.chunks) '$img/demo-os-1.0.0.bbi' | cmp - manifest.chunks"
check "bank A: payloads are the source bytes" inbank A sh -c "cmp vmlinuz $T/src/demo-os-1.0.0/vmlinuz && cmp initrd.img $T/src/demo-os-1.0.0/initrd.img && cmp root.squashfs $T/src/demo-os-1.0.0/root.squashfs"
read -r moff msize soff ssize < <("$BANKCTL" image info --json "$img/demo-os-1.0.0.bbi" | json "'%d %d %d %d' % (d['header']['manifest_offset'], d['header']['manifest_size'], d['header']['signature_offset'], d['header']['signature_size'])")
tail -c +$((moff + 1)) "$img/demo-os-1.0.0.bbi" | head -c "$msize" >"$T/m1.json"
check "bank A: manifest.json is the exact signed manifest" inbank A cmp manifest.json "$T/m1.json"
check "bank A: manifest.sig verifies manifest.json against the keyring" \
	inbank A env OPENSSL_CONF=/dev/null openssl cms -verify -binary -inform DER -in manifest.sig -content manifest.json -CAfile "$pki/keyring.pem" -purpose any -out /dev/null
inbank A cat bank.json >"$T/bank-a.json"
check "bank.json: name, version, build, epoch, signer" test "$(json "d['name'], d['version'], d['build'], d['security_epoch'], d['signer']" <"$T/bank-a.json")" = "('demo-os', '1.0.0', 'b-1.0.0', 1, 'CN=bootbank test signer,O=bootbank test')"
check "bank.json: the manifest digest" test "$(json "d['manifest_sha256']" <"$T/bank-a.json")" = "$(sha256sum <"$T/m1.json" | cut -d' ' -f1)"
check "bank.json: payloads with sizes and digests" test "$(json "' '.join('%s:%s:%d:%s' % (p['name'], p['type'], p['size'], p['sha256'][:8]) for p in d['payloads'])" <"$T/bank-a.json")" = \
	"vmlinuz:kernel:700001:$(sha256sum "$T/src/demo-os-1.0.0/vmlinuz" | cut -c1-8) initrd.img:initrd:300003:$(sha256sum "$T/src/demo-os-1.0.0/initrd.img" | cut -c1-8) root.squashfs:rootfs:$(stat -c %s "$T/src/demo-os-1.0.0/root.squashfs"):$(sha256sum "$T/src/demo-os-1.0.0/root.squashfs" | cut -c1-8)"
check "no staging marker, temp or partial file left" no_leftovers
check "the boot state: A staged and activated" test "$(B status --json | json "d['boot']['text']")" = "A=staged:1:3:1 B=empty:0:0:0 floor=0 pin=none"

expect_exit 0 "boot v1" B boot --simulate
expect_exit 0 "mark v1 good" B mark-good
expect_exit 0 "status" B status
check "status shows bank A's content from bank.json" grep -qE "^ +content +demo-os 1.0.0 \(build b-1.0.0\), manifest $(json "d['manifest_sha256'][:16]" <"$T/bank-a.json")\.\.\., staged " <<<"$OUT"
expect_exit 0 "status --json" B status --json
check "status --json: bank A content record" test "$(json "d['boot']['banks']['A']['content']['version'], d['boot']['banks']['A']['content']['manifest_sha256'] == '$(json "d['manifest_sha256']" <"$T/bank-a.json")'" <<<"$OUT")" = "('1.0.0', True)"
check "status --json: empty bank B has no content" test "$(json "d['boot']['banks']['B']['content']" <<<"$OUT")" = None

# --- refusals that leave both banks and the boot state byte-identical --------------------------
cp "$img/demo-os-2.0.0.bbi" "$T/flip.bbi"
flip() { # FILE OFFSET: invert one byte
	python3 - "$1" "$2" <<-'EOF'
	import sys
	with open(sys.argv[1], "r+b") as f:
	    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))
	EOF
}
read -r moff2 < <("$BANKCTL" image info --json "$img/demo-os-2.0.0.bbi" | json "d['header']['manifest_offset']")
refuse() { # CODE DESC MESSAGE-REGEX ARGS...
	local code=$1 desc=$2 re=$3 h s
	shift 3
	h=$(hashes)
	s=$(statehash)
	expect_exit "$code" "$desc: exit $code" B stage "$@"
	check "$desc: one clear line" grep -qE "^bankctl: $re" <<<"$ERR"
	check "$desc: one line only" test "$(wc -l <<<"$ERR")" -eq 1
	check "$desc: both bank partitions byte-identical" test "$(hashes)" = "$h"
	check "$desc: boot state unchanged" test "$(statehash)" = "$s"
	check "$desc: nothing left behind" no_leftovers
}
refuse 5 "untrusted signer" "'$img/demo-os-4.0.0.bbi': signature: " "$img/demo-os-4.0.0.bbi"
cp "$img/demo-os-2.0.0.bbi" "$T/bad.bbi" && flip "$T/bad.bbi" $((moff2 + 40))
refuse 5 "manifest changed after signing" "'$T/bad.bbi': signature: " "$T/bad.bbi"
cp "$img/demo-os-2.0.0.bbi" "$T/bad.bbi" && flip "$T/bad.bbi" 9
refuse 6 "header byte flipped" "'$T/bad.bbi': header: " "$T/bad.bbi"
head -c 5000 "$img/demo-os-2.0.0.bbi" >"$T/bad.bbi"
refuse 6 "truncated bundle" "'$T/bad.bbi': " "$T/bad.bbi"
refuse 9 "another compatible" "image 'other-os 5.0.0' is for 'other-x86_64', this system is 'demo-x86_64' \(use --ignore-compatible to stage it anyway\)$" "$img/other-os-5.0.0.bbi"
refuse 9 "older than the booted image" "image 'demo-os 0.9.0' is older than 1.0.0 in the booted bank A \(use --allow-downgrade to stage it anyway\)$" "$img/demo-os-0.9.0.bbi"
refuse 9 "security epoch below the floor" "image 'demo-os 0.5.0' has security epoch 0, below the security floor 1: it would never boot$" "$img/demo-os-0.5.0.bbi" --allow-downgrade
refuse 6 "a payload named like a bank file" "payload 'bank.json': the name is reserved in a bank$" "$img/demo-os-4.0.1.bbi"
refuse 2 "a keyring that cannot be loaded" "cannot load keyring '$T/nope.pem': " "$img/demo-os-2.0.0.bbi" --keyring "$T/nope.pem"
refuse 4 "no such bundle" "cannot open '$T/nope.bbi': No such file or directory$" "$T/nope.bbi"
echo '{"operation":"livepatch","reason":"live patch from r1 to r2","to":"r2","phase":"switching","started":1,"pid":1}' >"$root/var/lib/bootbank/maintenance.json"
refuse 3 "partial maintenance mode" "busy: stage refused, partial maintenance mode since 1970-01-01T00:00:01Z \(live patch from r1 to r2\)$" "$img/demo-os-2.0.0.bbi"
rm "$root/var/lib/bootbank/maintenance.json"

# A bank too small: refused before anything is written; the booted bank is untouched.
refuse 10 "bank too small" "bank B too small: needs [0-9.]+ MiB, has [0-9.]+ MiB$" "$img/demo-os-4.0.2.bbi"
check "bank too small: bank B is empty" test "$(bankstate B)" = empty

# The alternate bank mounted elsewhere.
loop=$(losetup -P -f --show "$disk")
bk_track_loop "$loop"
partx -a "$loop" 2>/dev/null || true
mount "${loop}p3" "$T/mnt"
h=$(hashp A)
expect_exit 3 "alternate bank mounted elsewhere: busy" B stage "$img/demo-os-2.0.0.bbi"
check "mounted elsewhere: names the bank, device, process and mount point" grep -Eq "^bankctl: bank B: '${loop}p3' is in use: mounted by pid [0-9]+ \([^)]+\) at '$T/mnt'$" <<<"$ERR"
umount "$T/mnt"
bk_untrack_loop "$loop"
check "mounted elsewhere: bank A byte-identical" test "$(hashp A)" = "$h"

# --- a corrupt payload: found while written; bank B emptied, bank A untouched ------------------
read -r poff < <("$BANKCTL" image info --json "$img/demo-os-2.0.0.bbi" | json "[p['offset'] for p in d['manifest']['payloads'] if p['name'] == 'initrd.img'][0]")
cp "$img/demo-os-2.0.0.bbi" "$T/bad.bbi" && flip "$T/bad.bbi" $((poff + 1000))
h=$(hashp A)
expect_exit 7 "a corrupt payload: exit 7" B stage "$T/bad.bbi"
check "corrupt payload: the message names the payload and the chunk" grep -q "^bankctl: bank B: payload 'initrd.img': chunk 0 (offset 0): SHA-256 mismatch" <<<"$ERR"
check "corrupt payload: bank A byte-identical" test "$(hashp A)" = "$h"
check "corrupt payload: bank B empty in the boot state" test "$(bankstate B)" = empty
check "corrupt payload: no partial file, no marker" no_leftovers
check "corrupt payload: bank B has no bank.json" inbank B test ! -e bank.json

# --- two concurrent stages: one is told busy --------------------------------------------------
lock=$root/run/bootbank/lock
"$BANKCTL" --root "$root" stage "$img/demo-os-4.0.3.bbi" >"$T/first.out" 2>&1 &
first=$!
for _ in $(seq 400); do
	# The holder writes its pid once it has the lock (probing with flock would race it).
	grep -qx "$first" "$lock" 2>/dev/null && break
	sleep 0.005
done
expect_exit 3 "a second stage while the first runs: busy" B stage "$img/demo-os-2.0.0.bbi"
check "busy: names the lock holder" grep -qE "^bankctl: busy: another bootbank operation \(pid $first\) holds '$root/run/bootbank/lock'" <<<"$ERR"
wait "$first"
rc=$?
check "the first stage succeeded" test $rc -eq 0
[ $rc -eq 0 ] || sed 's/^/# first stage: /' "$T/first.out"
check "bank B holds the first stage's image" test "$(B status --json | json "d['boot']['banks']['B']['content']['version']")" = 4.0.3

# --- the cycle: v2 into B, boot, good; rollback, roll-forward ---------------------------------
expect_exit 0 "stage v2 --json" B --json stage "$img/demo-os-2.0.0.bbi"
check "--json: progress events, then a result" python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin.read().splitlines()]
prog = [l for l in lines if l["event"] == "progress"]
assert prog and lines[-1]["event"] == "result" and lines[-1]["ok"] is True, lines[-1]
assert prog[-1]["bytes"] == prog[-1]["total"] and prog[-1]["payload"] == "root.squashfs", prog[-1]
assert all(p["bytes"] <= p["total"] for p in prog)
r = lines[-1]
assert r["bank"] == "B" and r["image"]["version"] == "2.0.0" and r["activated"] is False, r
assert r["boot"]["text"] == "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none", r["boot"]["text"]
' <<<"$OUT"
check "bank A untouched by staging into B" test "$(hashp A)" = "$h"
expect_exit 0 "activate B" B activate
expect_exit 0 "boot B" B boot --simulate
check "B boots (primary)" grep -q "booted bank B (reason primary)" <<<"$OUT"
expect_exit 0 "mark B good" B mark-good
expect_exit 0 "rollback" B rollback
expect_exit 0 "boot after rollback" B boot --simulate
check "A boots (rollback)" grep -q "booted bank A (reason rollback)" <<<"$OUT"
expect_exit 0 "roll-forward" B roll-forward
expect_exit 0 "boot after roll-forward" B boot --simulate
check "B boots again (primary)" grep -q "booted bank B (reason primary)" <<<"$OUT"
expect_exit 0 "status after the cycle" B status
check "status: both banks good, with their images" test "$(grep -cE '^ +content +demo-os (1|2)\.0\.0 ' <<<"$OUT")" -eq 2

# Staging into a bank that held a good image replaces it; a downgrade needs --allow-downgrade.
ha=$(hashp A)
expect_exit 9 "stage v0.9 while v2 is booted: a downgrade" B stage "$img/demo-os-0.9.0.bbi"
check "downgrade refused: bank A byte-identical" test "$(hashp A)" = "$ha"
expect_exit 0 "stage v0.9 --allow-downgrade into A" B stage "$img/demo-os-0.9.0.bbi" --allow-downgrade
check "A now holds 0.9.0, staged" test "$(B status --json | json "d['boot']['banks']['A']['state'], d['boot']['banks']['A']['content']['version']")" = "('staged', '0.9.0')"
hb=$(hashp B)
expect_exit 0 "stage --ignore-compatible an image for another system" B stage "$img/other-os-5.0.0.bbi" --ignore-compatible --activate
check "bank B (booted) byte-identical while A was rewritten twice" test "$(hashp B)" = "$hb"
check "A holds other-os, activated" test "$(B status --json | json "d['boot']['banks']['A']['state'], d['boot']['banks']['A']['content']['name']")" = "('staged', 'other-os')"

# A terminal gets a progress bar on stderr.
expect_exit 0 "stage on a terminal" script -qec "$BANKCTL --root $root stage $img/demo-os-3.0.0.bbi" /dev/null
check "terminal: a progress bar with MB/s" grep -qE '\[#+-*\] +[0-9]+%  [0-9.]+/[0-9.]+ MiB  [0-9.]+ MB/s' <<<"$OUT"

# --- recovery -------------------------------------------------------------------------------
expect_exit 0 "recover with nothing to do" B recover
check "nothing to recover" test "$OUT" = "nothing to recover"
# A stage killed after it finished writing bank A: content complete, kept as staged.
printf '{"format":1,"bank":"A","image":"demo-os","version":"3.0.0","pid":1,"started":1}\n' >"$root/var/lib/bootbank/staging.json"
: >"$root/var/lib/bootbank/.#bootstate.json.dead"
expect_exit 0 "recover after a stage that completed" B recover
check "recover: the complete bank stays staged" test "$OUT" = "recovered: removed 1 stale temporary file; an interrupted stage of demo-os 3.0.0 into bank A (its content is complete: it stays staged)"
check "recover: A still staged" test "$(bankstate A)" = staged
check "recover: nothing left" no_leftovers
# Killed while writing: bank.json gone, a partial file there.
inbank -w A sh -c 'rm bank.json && echo x >.partial.vmlinuz'
printf '{"format":1,"bank":"A","image":"demo-os","version":"3.0.0","pid":1,"started":1}\n' >"$root/var/lib/bootbank/staging.json"
hb=$(hashp B)
expect_exit 0 "recover --json after a stage killed while writing" B recover --json
check "recover --json: state reset, partial removed" test "$(json "d['interrupted_stage']['state_before'], d['interrupted_stage']['state_reset'], d['interrupted_stage']['partial_files'], d['interrupted_stage']['finished']" <<<"$OUT")" = "('staged', True, 1, True)"
check "recover: A is empty now" test "$(bankstate A)" = empty
check "recover: nothing left" no_leftovers
check "recover: bank B byte-identical" test "$(hashp B)" = "$hb"
# Any mutating verb recovers first.
printf '{"format":1,"bank":"A","image":"demo-os","version":"3.0.0","pid":1,"started":1}\n' >"$root/var/lib/bootbank/staging.json"
expect_exit 0 "mark-good recovers first" B mark-good
check "mark-good: says what it recovered" grep -q "^bankctl: recovered: an interrupted stage of demo-os 3.0.0 into bank A (bank A stays empty)" <<<"$ERR"
check "mark-good: nothing left" no_leftovers
# Recovery looks into the bank from a child process: the verb that took the lock keeps its
# mounts where everyone sees them (here a revision mounted by `rev add`).
printf '{"format":1,"bank":"A","image":"demo-os","version":"3.0.0","pid":1,"started":1}\n' >"$root/var/lib/bootbank/staging.json"
expect_exit 0 "rev add after an interrupted stage" B rev add r1 "$T/src/demo-os-1.0.0/root.squashfs" --type squashfs
check "rev add recovered first" grep -q "^bankctl: recovered: an interrupted stage of demo-os 3.0.0 into bank A" <<<"$ERR"
check "the revision is mounted in our namespace, not in a private one" mountpoint -q "$root/run/bootbank/rev/r1"
umount "$root/run/bootbank/rev/r1" 2>/dev/null || true
check "rev add: nothing left" no_leftovers
echo garbage >"$root/var/lib/bootbank/staging.json"
expect_exit 6 "a corrupt staging marker stops mutating verbs" B rollback
check "corrupt marker: named" grep -q "corrupt staging marker 'staging.json'" <<<"$ERR"
rm "$root/var/lib/bootbank/staging.json"

# --- usage and status on an empty sandbox ---------------------------------------------------
expect_exit 2 "stage without an image" B stage
expect_exit 2 "stage with an unknown option" B stage "$img/demo-os-2.0.0.bbi" --frob
mkdir -p "$T/empty/etc/bootbank"
cp "$root/etc/bootbank/system.conf" "$T/empty/etc/bootbank/"
expect_exit 0 "status --json on a configured sandbox without a disk" "$BANKCTL" --root "$T/empty" status --json
check "no disk: no content, no error" test "$(json "[d['boot']['banks'][b]['content'] for b in 'AB']" <<<"$OUT")" = "[None, None]"
mkdir -p "$T/nothing-here"
expect_exit 2 "stage on an unconfigured sandbox" "$BANKCTL" --root "$T/nothing-here" stage "$img/demo-os-2.0.0.bbi"

bk_done
