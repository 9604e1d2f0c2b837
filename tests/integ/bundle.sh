#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Signed image bundles end to end with the real bankctl: build, verify, info, every corruption
# class with its exit code and nothing written, truncation, bad signers, re-signing, a payload
# past 4 GiB (sparse), mount/umount of squashfs and erofs payloads, and the depot.
. "$(dirname "$0")/lib.sh"

bk_need_root
for t in openssl mksquashfs mkfs.erofs python3 losetup; do
	command -v "$t" >/dev/null || bk_skip "needs $t"
done

T=$(bk_tmp)
repo=$(cd "$(dirname "$0")/../.." && pwd)
pki=$T/pki
tests/pki/make-pki.sh "$pki" >/dev/null 2>&1 || bash "$repo/tests/pki/make-pki.sh" "$pki" >/dev/null
K="--keyring $pki/keyring.pem"

sign_with() { # who -> signer options
	echo "--key $pki/$1.key --cert $pki/$1.crt --intermediate $pki/intermediate.crt"
}

# Payload sources: kernel- and initrd-like blobs, a squashfs and an erofs image.
src=$T/src
mkdir -p "$src/tree/sub"
head -c 2000000 /dev/urandom >"$src/vmlinuz"
head -c 300001 /dev/urandom >"$src/initrd.img"
echo "hello from the bundle" >"$src/tree/hello.txt"
echo "nested" >"$src/tree/sub/nested.txt"
mksquashfs "$src/tree" "$src/app.squashfs" -quiet -noappend -all-root >/dev/null
mkfs.erofs "$src/app.erofs" "$src/tree" >/dev/null 2>&1
cat >"$src/spec.json" <<'EOF'
{ "name": "acme-os", "version": "1.10.0", "build": "42", "compatible": "acme-x86_64",
  "security_epoch": 3, "description": "integration test image",
  "live_patch": { "from": [ "1.9.2", "1.9.3" ] },
  "payloads": [
    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
    { "name": "initrd.img", "type": "initrd", "source": "initrd.img" },
    { "name": "app.squashfs", "type": "component", "source": "app.squashfs",
      "live": true, "mountpoint": "/opt/acme/app" },
    { "name": "app.erofs", "type": "component", "fs": "erofs", "source": "app.erofs" } ] }
EOF

img=$T/img
mkdir -p "$img"
bbi=$img/acme.bbi
# shellcheck disable=SC2046
expect_exit 0 "image build" "$BANKCTL" image build "$src/spec.json" -o "$bbi" $(sign_with signer)
check "build left no temp file" test -z "$(ls -A "$img" | grep -v '^acme.bbi$')"
expect_exit 0 "image verify of a valid bundle" "$BANKCTL" image verify "$bbi" $K
check "verify names the image and signer" grep -q "ok: acme-os 1.10.0 (build 42), 4 payloads, signed by CN=" <<<"$OUT"
expect_exit 0 "image verify with a hashed keyring directory" "$BANKCTL" image verify "$bbi" --keyring "$pki/keyring.d"
expect_exit 0 "image verify --json" "$BANKCTL" image verify --json "$bbi" $K
check "--json lists every check ok" python3 -c '
import json, sys
d = json.load(sys.stdin)
names = [(c["check"], c.get("payload")) for c in d["checks"]]
assert names == [("header", None), ("signature", None), ("manifest", None), ("payload", "vmlinuz"),
    ("payload", "initrd.img"), ("payload", "app.squashfs"), ("payload", "app.erofs")], names
assert all(c["result"] == "ok" for c in d["checks"]) and d["ok"] and d["exit_code"] == 0
' <<<"$OUT"
expect_exit 0 "image info --json" "$BANKCTL" image info --json "$bbi"
info=$OUT
check "info: fs probed (squashfs), offsets 4 KiB aligned" python3 -c '
import json, sys
d = json.load(sys.stdin); m = d["manifest"]
p = {x["name"]: x for x in m["payloads"]}
assert p["app.squashfs"]["fs"] == "squashfs" and p["app.squashfs"]["live"] is True
assert p["vmlinuz"]["fs"] == "raw" and p["vmlinuz"]["size"] == 2000000
assert all(x["offset"] % 4096 == 0 for x in m["payloads"])
assert m["live_patch"]["from"] == ["1.9.2", "1.9.3"]
' <<<"$info"
expect_exit 0 "image info (text)" "$BANKCTL" image info "$bbi"
check "info text lists the payloads" grep -q "app.erofs" <<<"$OUT"

# Offsets from the header and manifest, for the corruption tests.
read -r sig_off sig_size pay_off < <(python3 -c '
import json, sys; h = json.load(sys.stdin)["header"]
print(h["signature_offset"], h["signature_size"], h["payload_offset"])' <<<"$info")
mapfile -t payloads < <(python3 -c '
import json, sys
for p in json.load(sys.stdin)["manifest"]["payloads"]: print(p["name"], p["offset"], p["size"])' <<<"$info")

# Everything under the test directory except the scratch copy and lib.sh's stderr capture.
snapshot() { (cd "$T" && find . \( -path ./work -o -path ./.stderr \) -prune -o -printf '%p %s %T@\n' | sort | md5sum); }
work=$T/work
mkdir -p "$work"

flip() { # offset -> a copy of the bundle with that byte inverted, in $work/bad.bbi
	cp --sparse=always "$bbi" "$work/bad.bbi"
	python3 - "$work/bad.bbi" "$1" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))
EOF
}

before=$(snapshot)
for off in 0 9 20 40 50 70 100 127; do
	flip "$off"
	expect_exit 6 "header byte $off flipped: exit 6" "$BANKCTL" image verify "$work/bad.bbi" $K
	check "header byte $off: message names the header" grep -q "header: " <<<"$ERR"
done
for off in 130 200 $((sig_off - 2)); do
	flip "$off"
	expect_exit 5 "manifest byte $off flipped: exit 5" "$BANKCTL" image verify "$work/bad.bbi" $K
	check "manifest byte $off: signature check named" grep -q "signature: " <<<"$ERR"
done
OUT=$("$BANKCTL" image verify --json "$work/bad.bbi" $K 2>/dev/null)
check "--json after a bad signature: manifest and payloads skipped" python3 -c '
import json, sys; d = json.load(sys.stdin)
assert [(c["check"], c["result"]) for c in d["checks"]] == [("header", "ok"),
    ("signature", "failed"), ("manifest", "skipped"), ("payloads", "skipped")], d["checks"]
assert d["exit_code"] == 5 and "signature: " in d["checks"][1]["error"]
' <<<"$OUT"
for off in $sig_off $((sig_off + 1)) $((sig_off + sig_size / 2)) $((sig_off + sig_size - 1)); do
	flip "$off"
	expect_exit 5 "signature byte $off flipped: exit 5" "$BANKCTL" image verify "$work/bad.bbi" $K
done
for p in "${payloads[@]}"; do
	read -r name off size <<<"$p"
	for at in $off $((off + size - 1)); do
		flip "$at"
		expect_exit 7 "payload $name byte $at flipped: exit 7" "$BANKCTL" image verify "$work/bad.bbi" $K
		check "payload $name: message names it" grep -Eq "payload '$name': chunk [0-9]+ \(offset [0-9]+\): SHA-256 mismatch" <<<"$ERR"
	done
done
flip $((pay_off - 1))
expect_exit 6 "padding before the payloads flipped: exit 6" "$BANKCTL" image verify "$work/bad.bbi" $K
read -r name off size <<<"${payloads[0]}"
flip $((off + size))
expect_exit 6 "padding after a payload flipped: exit 6" "$BANKCTL" image verify "$work/bad.bbi" $K
flip $((off + size / 3))
OUT=$("$BANKCTL" image verify --json "$work/bad.bbi" $K 2>/dev/null); rc=$?
check "--json: exit 7, vmlinuz failed, others ok" python3 -c '
import json, sys
d = json.load(sys.stdin); assert not d["ok"] and d["exit_code"] == 7
r = {c.get("payload"): c["result"] for c in d["checks"] if c["check"] == "payload"}
assert r == {"vmlinuz": "failed", "initrd.img": "ok", "app.squashfs": "ok", "app.erofs": "ok"}, r
' <<<"$OUT"
check "--json exit code 7" test "$rc" -eq 7

size=$(stat -c %s "$bbi")
for cut in 0 1 100 128 129 $((sig_off + 5)) $((pay_off - 1)) $pay_off $((pay_off + 4096)) \
	$((size / 2)) $((size - 4097)) $((size - 1)); do
	head -c "$cut" "$bbi" >"$work/bad.bbi"
	expect_exit 6 "truncated at $cut of $size: exit 6" "$BANKCTL" image verify "$work/bad.bbi" $K
done
check "truncation message says truncated" grep -qi "truncated\|past the end" <<<"$ERR"
rm -f "$work/bad.bbi"
check "verification wrote nothing anywhere" test "$before" = "$(snapshot)"

# The signed manifest has one meaning (issue 17, item 4; docs/bundle-format.md, "Canonical
# form"): validly signed manifests json-c would read one way and a signer may have meant
# another are refused (exit 6). Re-signed with `openssl cms` by tests/integ/craft-bundle.py.
craft() { python3 "$repo/tests/integ/craft-bundle.py" "$bbi" "$work/c.bbi" "$pki" "$@"; }
craft
expect_exit 0 "re-signed with openssl cms, unchanged: accepted" "$BANKCTL" image verify "$work/c.bbi" $K
canon() { # DESC MESSAGE-REGEX EDIT...
	local desc=$1 re=$2
	shift 2
	if ! craft "$@"; then
		not_ok "$desc: cannot make the bundle"
		return
	fi
	expect_exit 6 "signed manifest with $desc: exit 6" "$BANKCTL" image verify "$work/c.bbi" $K
	check "signed manifest with $desc: named" grep -qE "^bankctl: '$work/c.bbi': manifest: .*$re" <<<"$ERR"
}
canon "a duplicate key (version 1.10.0, then 9.9.9)" "duplicate key 'version'" 'replace:"version": "1.10.0"=>"version": "1.10.0", "version": "9.9.9"'
canon "a duplicate key in a payload" "duplicate key 'live'" 'replace:"live": true=>"live": true, "live": false'
canon "null for a string" "null" 'replace:"description": "integration test image"=>"description": null'
canon "a lone high surrogate" "lone UTF-16 high surrogate" 'replace:"description": "integration test image"=>"description": "integration \ud83d test image"'
canon "a lone low surrogate" "lone UTF-16 low surrogate" 'replace:"description": "integration test image"=>"description": "integration \ude00 test image"'
canon "an upper-case digest" "64 lower-case hex digits" upper:vmlinuz
canon "a space after the JSON" "trailing data" 'append:\s'
canon "a second newline after the JSON" "trailing data" 'append:\n'
canon "a space before the JSON" "must start with" 'prepend:\s'
canon "an escaped key" "escape in an object key" 'replace:"build"=>"\u0062uild"'
craft 'replace:"description": "integration test image"=>"description": "clef \ud834\udd1e"'
expect_exit 0 "a paired surrogate escape is fine" "$BANKCTL" image verify "$work/c.bbi" $K

# Format 1 (docs/bundle-format.md, "Format versions"): still verified, each payload by its
# whole SHA-256; the same content without chunk lists, made by craft-bundle.py --format1.
craft --format1
check "format 1: the header says 1" test "$(od -An -tu4 -j8 -N4 "$work/c.bbi" | tr -d ' ')" = 1
check "format 1: no chunk table" test "$(stat -c %s "$work/c.bbi")" -lt "$(stat -c %s "$bbi")"
expect_exit 0 "a format-1 bundle is still verified" "$BANKCTL" image verify "$work/c.bbi" $K
check "format 1: verify names the image" grep -q "ok: acme-os 1.10.0 (build 42), 4 payloads" <<<"$OUT"
size1=$(stat -c %s "$work/c.bbi")
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2]) - 1); b = f.read(1); f.seek(-1, 1); f.write(bytes([b[0] ^ 1]))' "$work/c.bbi" "$size1"
expect_exit 7 "format 1: the last payload byte flipped: exit 7" "$BANKCTL" image verify "$work/c.bbi" $K
check "format 1: the whole-payload digest names it" grep -q "SHA-256 mismatch (corrupt payload): manifest " <<<"$ERR"
craft --format1 digest:vmlinuz:last
expect_exit 7 "format 1: a signed sha256 one byte off: exit 7" "$BANKCTL" image verify "$work/c.bbi" $K
check "format 1: names vmlinuz" grep -q "payload 'vmlinuz': SHA-256 mismatch" <<<"$ERR"
rm -f "$work/c.bbi"

# Bad signers.
for who in expired noeku other-signer; do
	# shellcheck disable=SC2046
	"$BANKCTL" image build "$src/spec.json" -o "$img/$who.bbi" $(sign_with "$who") >/dev/null
	expect_exit 5 "signer '$who' refused: exit 5" "$BANKCTL" image verify "$img/$who.bbi" $K
done
check "expired: message says so" grep -qi "expired\|not valid" <<<"$(
	"$BANKCTL" image verify "$img/expired.bbi" $K 2>&1)"
expect_exit 0 "expired signer accepted with --no-check-time" "$BANKCTL" image verify "$img/expired.bbi" $K --no-check-time
"$BANKCTL" image build "$src/spec.json" -o "$img/nochain.bbi" --key "$pki/signer.key" --cert "$pki/signer.crt" >/dev/null
expect_exit 5 "signer without its intermediate: exit 5" "$BANKCTL" image verify "$img/nochain.bbi" $K
expect_exit 4 "missing bundle: exit 4" "$BANKCTL" image verify "$img/nope.bbi" $K

# Re-signing moves a bundle from an untrusted key to a trusted one.
# shellcheck disable=SC2046
expect_exit 0 "image sign" "$BANKCTL" image sign "$img/other-signer.bbi" -o "$img/resigned.bbi" $(sign_with rsa-signer)
expect_exit 0 "re-signed bundle verifies" "$BANKCTL" image verify "$img/resigned.bbi" $K

# Build errors: a spec that lies about a filesystem, a missing source; nothing written.
sed 's/"fs": "erofs"/"fs": "squashfs"/' "$src/spec.json" >"$src/bad-spec.json"
# shellcheck disable=SC2046
expect_exit 9 "spec saying squashfs for an erofs source: refused" "$BANKCTL" image build "$src/bad-spec.json" -o "$img/x.bbi" $(sign_with signer)
check "the mismatch is named" grep -q "source 'app.erofs' is erofs, the spec says squashfs" <<<"$ERR"
check "no output and no temp file after a failed build" test -z "$(ls -A "$img" | grep -E '^x.bbi|^\.#')"

# A payload past 4 GiB: 64-bit sizes and offsets end to end (sparse source and bundle).
truncate -s $((4 * 1024 * 1024 * 1024 + 4097)) "$src/big.img"
printf 'tail' >"$src/tail.bin"
cat >"$src/big.json" <<'EOF'
{ "name": "big", "version": "1.0", "build": "1", "compatible": "acme-x86_64", "security_epoch": 0,
  "payloads": [ { "name": "big.img", "type": "file", "source": "big.img" },
                { "name": "tail.bin", "type": "file", "source": "tail.bin" } ] }
EOF
# shellcheck disable=SC2046
expect_exit 0 "build with a payload past 4 GiB" "$BANKCTL" image build "$src/big.json" -o "$img/big.bbi" $(sign_with signer)
check "the bundle stayed sparse" test "$(du -k "$img/big.bbi" | cut -f1)" -lt 100000
expect_exit 0 "verify with a payload past 4 GiB" "$BANKCTL" image verify "$img/big.bbi" $K
OUT=$("$BANKCTL" image info --json "$img/big.bbi")
check "second payload's offset is past 4 GiB" python3 -c '
import json, sys; p = json.load(sys.stdin)["manifest"]["payloads"]
assert p[0]["size"] == 4 * 2**30 + 4097 and p[1]["offset"] > 2**32 and p[1]["offset"] % 4096 == 0
' <<<"$OUT"
printf 'X' | dd of="$img/big.bbi" bs=1 seek=$((3 * 1024 * 1024 * 1024)) conv=notrunc status=none
expect_exit 7 "a flipped byte at 3 GiB is caught" "$BANKCTL" image verify "$img/big.bbi" $K
rm -f "$img/big.bbi" "$src/big.img"

# Mount a squashfs and an erofs payload out of the bundle; no loop device left behind.
# Loop devices backed by our bundles (other tests may attach their own meanwhile).
our_loops() { losetup -j "$bbi"; losetup -j "$work/bad.bbi" 2>/dev/null; }
check "no loop device on the bundle before mounting" test -z "$(our_loops)"
mkdir -p "$T/m1" "$T/m2"
expect_exit 0 "image mount (squashfs)" "$BANKCTL" image mount "$bbi" app.squashfs "$T/m1" $K
expect_exit 0 "image mount (erofs)" "$BANKCTL" image mount "$bbi" app.erofs "$T/m2" $K
for l in $(losetup -j "$bbi" | cut -d: -f1); do bk_track_loop "$l"; done
check "squashfs payload shows its files" grep -q "hello from the bundle" "$T/m1/hello.txt"
check "erofs payload shows its files" grep -q "nested" "$T/m2/sub/nested.txt"
check "mounts are read-only" bash -c "! touch '$T/m1/new' 2>/dev/null"
read -r _ sq_off sq_size <<<"${payloads[2]}"
check "a loop device is bound to the squashfs range" \
	grep -q "offset $sq_off, sizelimit $sq_size" <<<"$(losetup -j "$bbi")"
expect_exit 0 "image umount (squashfs)" "$BANKCTL" image umount "$T/m1"
expect_exit 0 "image umount (erofs)" "$BANKCTL" image umount "$T/m2"
check "no loop device left after umount" test -z "$(our_loops)"
check "nothing mounted there any more" bash -c "! mountpoint -q '$T/m1' && ! mountpoint -q '$T/m2'"
expect_exit 1 "mounting a raw payload is refused" "$BANKCTL" image mount "$bbi" vmlinuz "$T/m1" $K
expect_exit 4 "mounting a missing payload: exit 4" "$BANKCTL" image mount "$bbi" nope "$T/m1" $K
read -r name off size <<<"${payloads[2]}"
flip "$off"
expect_exit 7 "a corrupt payload is not mounted" "$BANKCTL" image mount "$work/bad.bbi" app.squashfs "$T/m1" $K
check "nothing mounted after the refusal" bash -c "! mountpoint -q '$T/m1'"
check "no loop device after the refusal" test -z "$(our_loops)"

# The depot, in a sandbox root whose system.conf names the keyring and the depot.
root=$T/root
mkdir -p "$root/etc/bootbank"
cp "$pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = acme-x86_64\n[keyring]\npath = /etc/bootbank/keyring.pem\n[depot]\npath = /var/lib/bootbank/depot\n' \
	>"$root/etc/bootbank/system.conf"
depot=$root/var/lib/bootbank/depot
expect_exit 0 "depot list on an empty sandbox" "$BANKCTL" --root "$root" depot list
expect_exit 0 "depot import" "$BANKCTL" --root "$root" depot import "$bbi"
check "imported under NAME_VERSION.bbi" cmp "$bbi" "$depot/acme-os_1.10.0.bbi"
expect_exit 0 "depot list" "$BANKCTL" --root "$root" depot list
check "list shows name, version, build, compatible and live-patch bases" \
	grep -qE "^acme-os +1\.10\.0 +42 +acme-x86_64 +3 +1\.9\.2,1\.9\.3$" <<<"$OUT"
expect_exit 0 "depot list --json" "$BANKCTL" --root "$root" depot list --json
check "list --json" python3 -c '
import json, sys; d = json.load(sys.stdin)
assert len(d) == 1 and d[0]["name"] == "acme-os" and d[0]["version"] == "1.10.0"
assert d[0]["build"] == "42" and d[0]["compatible"] == "acme-x86_64"
assert d[0]["live_patch_from"] == ["1.9.2", "1.9.3"]
' <<<"$OUT"
sed 's/"version": "1.10.0"/"version": "1.9.2"/' "$src/spec.json" >"$src/old.json"
# shellcheck disable=SC2046
"$BANKCTL" image build "$src/old.json" -o "$img/old.bbi" $(sign_with signer) >/dev/null
expect_exit 0 "depot import of an older version" "$BANKCTL" --root "$root" depot import "$img/old.bbi"
expect_exit 0 "depot list --json with two versions" "$BANKCTL" --root "$root" depot list --json
check "versions listed in numeric order (1.9.2 before 1.10.0)" python3 -c '
import json, sys; d = json.load(sys.stdin)
assert [x["version"] for x in d] == ["1.9.2", "1.10.0"], d
' <<<"$OUT"
expect_exit 0 "depot remove of the older version" "$BANKCTL" --root "$root" depot remove acme-os 1.9.2
expect_exit 1 "importing the same version again fails" "$BANKCTL" --root "$root" depot import "$bbi"
check "the duplicate is named" grep -q "already in the depot" <<<"$ERR"
expect_exit 0 "depot import --force replaces it" "$BANKCTL" --root "$root" depot import --force "$bbi"

depot_before=$( (cd "$depot" && ls -lA --time-style=full-iso) | md5sum)
read -r name off size <<<"${payloads[1]}"
flip $((off + 7))
expect_exit 7 "importing a corrupt bundle: exit 7" "$BANKCTL" --root "$root" depot import --force "$work/bad.bbi"
flip 33
expect_exit 6 "importing a malformed bundle: exit 6" "$BANKCTL" --root "$root" depot import --force "$work/bad.bbi"
expect_exit 5 "importing an untrusted bundle: exit 5" "$BANKCTL" --root "$root" depot import --force "$img/other-signer.bbi"
check "failed imports left the depot unchanged (no temp files)" \
	test "$depot_before" = "$( (cd "$depot" && ls -lA --time-style=full-iso) | md5sum)"
printf '[keyring]\npath = /etc/bootbank/keyring.pem\ncheck-time = no\n[depot]\npath = /var/lib/bootbank/depot\n' \
	>"$root/etc/bootbank/system.conf"
expect_exit 0 "check-time = no accepts an expired signer" "$BANKCTL" --root "$root" depot import --force "$img/expired.bbi"
expect_exit 0 "depot remove" "$BANKCTL" --root "$root" depot remove acme-os 1.10.0
check "the file is gone" test ! -e "$depot/acme-os_1.10.0.bbi"
expect_exit 4 "removing it again: exit 4" "$BANKCTL" --root "$root" depot remove acme-os 1.10.0
expect_exit 2 "depot remove with a bad version: usage" "$BANKCTL" --root "$root" depot remove acme-os
check "no lock or temp file left in the depot" test -z "$(ls -A "$depot" | grep '^\.')"

bk_done
