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

# bench_two_banks RUN ROOT: bench_images, then a sandbox on RUN/disk.img whose two banks hold
# them (1.0 in bank A, good and booted; 2.0 staged in bank B, file backend), and a loop device
# of the disk kept between runs as on a host (bankctl's own goes when it exits): its name in
# BENCH_LOOP, for the caller to detach (the caller's cleanup detaches whatever maps the disk).
bench_two_banks() {
	local run=$1 root=$2
	bench_images "$run" "$root"
	printf '[system]\ncompatible = bench\n' >"$root/etc/bootbank/system.conf"
	truncate -s 48M "$run/disk.img"
	"$BANKCTL" --root "$root" disk init "$run/disk.img" --boot-size 8M --bank-size 16M >/dev/null
	"$BANKCTL" --root "$root" stage "$run/1.0.bbi" --activate >/dev/null
	"$BANKCTL" --root "$root" boot --simulate >/dev/null
	"$BANKCTL" --root "$root" mark-good >/dev/null
	"$BANKCTL" --root "$root" stage "$run/2.0.bbi" >/dev/null
	BENCH_LOOP=$(losetup -P -f --show "$run/disk.img")
}

# bench_time RUNS LABEL CMD...: run CMD (output discarded) RUNS times; one line with LABEL and
# the median, 90th and 99th percentile in ms.
bench_time() {
	python3 - "$@" <<'PY'
import subprocess, sys, time
runs, label, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
t = []
for _ in range(runs):
    s = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    t.append((time.perf_counter() - s) * 1000)
t.sort()
p = lambda q: t[min(runs - 1, runs * q // 100)]
print("%-38s median %7.3f ms   p90 %7.3f ms   p99 %7.3f ms" % (label, p(50), p(90), p(99)))
PY
}
