#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankctl livepatch apply|rollback with real signed bundles: the live payload is verified and
# mounted straight from the bundle as a revision, the workload switched over; refusals for an
# image that cannot live-patch the current version, another `compatible`, a corrupt payload
# and an untrusted signer leave everything as it was; rollback runs the revert hooks.
. "$(dirname "$0")/lib.sh"
bk_need_root
B=${BK_BUILD:-build/cc}
READER=$(realpath "$B/tests/tools/live-reader" 2>/dev/null) || bk_skip "no live-reader (make tests)"
for t in openssl mksquashfs python3; do
	command -v "$t" >/dev/null || bk_skip "needs $t"
done
CGROOT=$(findmnt -n -o TARGET -t cgroup2 | head -n1)
[ -n "$CGROOT" ] || bk_skip "no cgroup2 mount"

T=$(bk_tmp)
mount -t tmpfs -o size=64m bk-live "$T" || bk_skip "cannot mount tmpfs"
repo=$(cd "$(dirname "$0")/../.." && pwd)
root=$T/root
view=$T/view
cgname=bk-livepatch-test-$$
cg=$CGROOT/$cgname
mkdir -p "$root/etc/bootbank" "$view" "$T/img"
mkdir "$cg" || bk_skip "cannot create a cgroup under '$CGROOT'"
bash "$repo/tests/pki/make-pki.sh" "$T/pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
cp "$T/pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
cat >"$root/etc/bootbank/system.conf" <<'EOF'
[system]
compatible = acme-x86_64
[keyring]
path = /etc/bootbank/keyring.pem
[livepatch]
freeze-timeout-ms = 1000
EOF
pids=()
cleanup() {
	local p d
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	for d in "$cg"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
	rmdir "$cg" 2>/dev/null
	for d in "$root"/run/bootbank/rev/*; do umount "$d" 2>/dev/null; done
	umount "$T" 2>/dev/null
	bk_cleanup
}
trap cleanup EXIT
bc() { "$BANKCTL" --root "$root" "$@"; }

# bundle NAME VERSION STAMP FROM COMPATIBLE [SIGNER]
bundle() {
	local d=$T/src-$1 i
	mkdir -p "$d/tree/d"
	for i in 0 1 2 3; do echo "rev=$3" >"$d/tree/f00$i"; done
	cp "$d"/tree/f00* "$d/tree/d/"
	mksquashfs "$d/tree" "$d/app.squashfs" -quiet -noappend -all-root >/dev/null
	head -c 100000 /dev/urandom >"$d/vmlinuz"
	cat >"$d/spec.json" <<EOF
{ "name": "acme-os", "version": "$2", "build": "1", "compatible": "$5", "security_epoch": 1,
  "live_patch": { "from": [ $4 ] },
  "payloads": [
    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
    { "name": "app.squashfs", "type": "component", "source": "app.squashfs",
      "live": true, "mountpoint": "/opt/acme" } ] }
EOF
	local who=${6:-signer}
	"$BANKCTL" image build "$d/spec.json" -o "$T/img/$1.bbi" --key "$T/pki/$who.key" \
		--cert "$T/pki/$who.crt" $([ "$who" = signer ] && echo --intermediate "$T/pki/intermediate.crt") >/dev/null
}
bundle v10 1.0 a '"0.9"' acme-x86_64 || bk_skip "cannot build bundles"
bundle v11 1.1 b '"1.0"' acme-x86_64
bundle v20 2.0 c '"0.9"' acme-x86_64
bundle other 1.1 d '"1.0"' other-arm64
bundle rogue 1.1 e '"1.0"' acme-x86_64 other-signer

expect_exit 0 "livepatch apply of the first image (nothing in service yet)" bc livepatch apply "$T/img/v10.bbi"
check "its revision is current" test "$(readlink "$root/run/bootbank/current")" = rev/acme-os-1.0
check "mounted straight from the bundle" grep -qx "rev=a" "$root/run/bootbank/rev/acme-os-1.0/f000"
check "metadata: image, version, payload, source, offset and size from the manifest" python3 -c '
import json, sys, subprocess
m = json.load(open(sys.argv[1]))
info = json.loads(subprocess.check_output([sys.argv[3], "--json", "image", "info", sys.argv[2]]))
p = [x for x in info["manifest"]["payloads"] if x["name"] == "app.squashfs"][0]
ok = (m["image"] == "acme-os" and m["version"] == "1.0" and m["payload"] == "app.squashfs"
      and m["source"] == sys.argv[2] and m["offset"] == p["offset"] and m["size"] == p["size"]
      and m["digest"] == p["sha256"])
sys.exit(0 if ok else 1)' "$root/var/lib/bootbank/revisions/acme-os-1.0.json" "$(realpath "$T/img/v10.bbi")" "$BANKCTL"

mkdir -p "$cg/app"
(
	echo "$BASHPID" >"$cg/app/cgroup.procs"
	exec unshare -m --propagation private sh -c 'mount --bind "$1" "$2" && exec "$3" "$2" 4 "$4" 200' \
		_ "$root/run/bootbank/current" "$view" "$READER" "$T/stats"
) &
reader=$!
pids+=("$reader")
for _ in $(seq 1 100); do [ -s "$T/stats" ] && break; sleep 0.05; done
expect_exit 0 "workload add" bc workload add app --cgroup "$cgname/app" --view "$view"

mkdir -p "$root/etc/bootbank/livepatch.d"
cat >"$root/etc/bootbank/livepatch.d/50-log" <<EOF
#!/bin/sh
echo "\$1 \$BOOTBANK_OLD_REV \$BOOTBANK_NEW_REV \$BOOTBANK_OLD_VERSION \$BOOTBANK_NEW_VERSION" >>"$T/hooks.log"
EOF
chmod +x "$root/etc/bootbank/livepatch.d/50-log"

rev_of_app() {
	bc --json workload list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0].get("revision", ""))'
}

expect_exit 9 "an image that cannot live-patch 1.0: exit 9" bc livepatch apply "$T/img/v20.bbi"
check "the message names the versions" grep -q "cannot live-patch revision 'acme-os-1.0' (version '1.0')" <<<"$ERR"
expect_exit 9 "an image for another compatible: exit 9" bc livepatch apply "$T/img/other.bbi"
check "the message names both" grep -q "is for 'other-arm64', this host is 'acme-x86_64'" <<<"$ERR"
cp "$T/img/v11.bbi" "$T/img/corrupt.bbi"
off=$("$BANKCTL" --json image info "$T/img/corrupt.bbi" | python3 -c 'import json,sys; print([p for p in json.load(sys.stdin)["manifest"]["payloads"] if p["live"]][0]["offset"] + 100)')
printf 'X' | dd of="$T/img/corrupt.bbi" bs=1 seek="$off" conv=notrunc status=none
expect_exit 7 "a corrupt live payload: exit 7" bc livepatch apply "$T/img/corrupt.bbi"
if [ -f "$T/img/rogue.bbi" ]; then
	expect_exit 5 "an untrusted signer: exit 5" bc livepatch apply "$T/img/rogue.bbi"
fi
check "after the refusals: still on 1.0, no new revision, no hook ran" bash -c "
	test \"\$(readlink '$root/run/bootbank/current')\" = rev/acme-os-1.0 &&
	test ! -e '$root/var/lib/bootbank/revisions/acme-os-1.1.json' && test ! -e '$T/hooks.log'"
check "the workload is on 1.0" test "$(rev_of_app)" = acme-os-1.0

expect_exit 0 "livepatch apply 1.1" bc livepatch apply "$T/img/v11.bbi"
check "frozen time reported" grep -q "app .*frozen [0-9.]* ms (beneath)" <<<"$OUT"
check "the workload is on 1.1" test "$(rev_of_app)" = acme-os-1.1
check "1.1's parent is 1.0" grep -q '"parent": "acme-os-1.0"' "$root/var/lib/bootbank/revisions/acme-os-1.1.json"
check "scan and apply hooks saw both versions" bash -c "grep -qx 'scan acme-os-1.0 acme-os-1.1 1.0 1.1' '$T/hooks.log' && grep -qx 'apply acme-os-1.0 acme-os-1.1 1.0 1.1' '$T/hooks.log'"
expect_exit 1 "applying 1.1 again: already in service" bc livepatch apply "$T/img/v11.bbi"
check "the message says so" grep -q "revision 'acme-os-1.1' of '.*' is already in service" <<<"$ERR"

expect_exit 0 "livepatch rollback" bc livepatch rollback
check "the workload is back on 1.0" test "$(rev_of_app)" = acme-os-1.0
check "current is 1.0 again" test "$(readlink "$root/run/bootbank/current")" = rev/acme-os-1.0
check "the rollback ran the revert hooks" grep -qx 'revert acme-os-1.1 acme-os-1.0 1.1 1.0' "$T/hooks.log"

kill -USR1 "$reader"
sleep 0.3
check "the reader never failed an open nor mixed revisions" bash -c "grep -qx 'failed_opens 0' '$T/stats' && grep -qx 'mixed 0' '$T/stats'"
bk_done
