# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/lib/images.sh, sourced by bench scripts (not a bench itself: make bench runs
# bench/*.sh only).
# bench_images RUN ROOT: the test PKI in RUN/pki, its keyring in ROOT/etc/bootbank, and two
# small signed images RUN/1.0.bbi and RUN/2.0.bbi (compatible "bench": a 1 MB kernel and a
# tiny squashfs root) built with $BANKCTL.
bench_images() {
	local run=$1 root=$2 v
	mkdir -p "$root/etc/bootbank" "$run/src/tree"
	tests/pki/make-pki.sh "$run/pki" >/dev/null
	cp "$run/pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
	echo bench >"$run/src/tree/f"
	mksquashfs "$run/src/tree" "$run/src/root.squashfs" -quiet -noappend -all-root >/dev/null
	head -c 1000000 /dev/urandom >"$run/src/vmlinuz"
	for v in 1.0 2.0; do
		cat >"$run/src/$v.json" <<JSON
{ "name": "bench-os", "version": "$v", "build": "1", "compatible": "bench", "security_epoch": 1,
  "payloads": [ { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
                { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" } ] }
JSON
		"$BANKCTL" image build "$run/src/$v.json" -o "$run/$v.bbi" --key "$run/pki/signer.key" \
			--cert "$run/pki/signer.crt" --intermediate "$run/pki/intermediate.crt" >/dev/null
	done
}
