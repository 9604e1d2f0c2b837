#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/stage-delta: `bankctl stage URL` of a v2 whose 512 MiB payload differs from the booted
# v1's in 10% of its chunks (every 10th chunk), served by nginx from Debian on 127.0.0.1 over a
# link of about 50 MB/s, against a full stream of the same v2 over the same link: v2 with 8
# bytes changed at the start of every chunk, under another payload name, so that the booted
# bank has none of its chunks to lend (delta staging looks chunks up by digest in every payload
# of the booted bank: the same bytes under another name would be reused). Targets (issue 15,
# docs/stage-url.md): the delta stage fetches at most 12% of the payload's bytes (counted by
# nginx: body bytes it sent for that URL, metadata included) and takes at most 0.35x the time
# of the full stream. The same pair on an unlimited link is
# printed too (there the bank's write speed and the hashing bound both).
#
# The link: nginx's `limit_rate 50m` is set, but nginx gives every request one second of credit
# (limit = rate * (now - start + 1) - sent), so it does not slow down 1 MiB range requests at
# all (measured: a "limited" full stream ran at 78-98 MB/s). The link is therefore shaped
# where a WAN would be, below HTTP: nginx and bankctl run in a network namespace of their own
# (bkurl-bench-PID, removed at the end) whose loopback has a token bucket of 400 Mbit/s
# (`tc qdisc ... tbf`), removed for the unlimited pair.
#
# Runs are interleaved (full, delta, full, delta, ...) after one untimed run of each (warm page
# cache for both sources: nginx's file and the booted bank); the median of RUNS (default 3)
# counts.
# Port BENCH_PORT (default 18482). BENCH_STRICT=1: exit 1 when a target is missed. Needs root
# (loop devices, mounts) and nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
BK_BUILD=${BK_BUILD:-build/cc}
BANKCTL=$(realpath "$BK_BUILD/bankctl")
RUNS=${RUNS:-3}
PORT=${BENCH_PORT:-18482}
SIZE_MIB=${BENCH_SIZE_MIB:-512}
cache=build/bench
if [ "$(id -u)" -ne 0 ]; then
	echo "bench/stage-delta: needs root (loop devices, mounts); skipped"
	exit 0
fi
for t in nginx ip tc curl; do
	if ! command -v "$t" >/dev/null; then
		echo "bench/stage-delta: needs $t (scripts/deps.sh); skipped"
		exit 0
	fi
done
ns=bkurl-bench-$$
mkdir -p "$cache"
run=$(mktemp -d "$(realpath "$cache")/stage-delta.XXXXXX")
root=$run/root
img=$run/disk.img
www=$run/www
cleanup() {
	local pid
	pid=$(cat "$run/nginx/nginx.pid" 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null
	for _ in $(seq 50); do [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	for l in $(losetup -j "$img" 2>/dev/null | cut -d: -f1); do losetup -d "$l" || true; done
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
tests/pki/make-pki.sh "$run/pki" >/dev/null
mkdir -p "$root/etc/bootbank" "$www/wan" "$run/nginx" "$run/src"
cp "$run/pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = bench\n' >"$root/etc/bootbank/system.conf"

# v1: SIZE_MIB of random bytes; v2: every 10th chunk changed (4 KiB in it).
echo "making the payloads ($SIZE_MIB MiB each)"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$run/src/v1.img"
cp "$run/src/v1.img" "$run/src/v2.img"
for ((c = 0; c < SIZE_MIB; c += 10)); do
	head -c 4096 /dev/urandom | dd of="$run/src/v2.img" bs=4096 seek=$((c * 256 + 3)) conv=notrunc status=none
done
n_changed=$(((SIZE_MIB + 9) / 10))
build() { # VERSION SOURCE PAYLOAD-NAME OUT
	printf '{ "name": "bench-delta", "version": "%s", "build": "1", "compatible": "bench", "security_epoch": 0,\n  "payloads": [ { "name": "%s", "type": "file", "source": "%s" } ] }\n' \
		"$1" "$3" "$2" >"$run/spec.json"
	"$BANKCTL" image build "$run/spec.json" -o "$4" --key "$run/pki/signer.key" \
		--cert "$run/pki/signer.crt" --intermediate "$run/pki/intermediate.crt" >/dev/null
}
build 1.0 "$run/src/v1.img" rootfs.img "$run/v1.bbi"
build 2.0 "$run/src/v2.img" rootfs.img "$www/v2.bbi"
# The full stream: none of its chunks is one of v1's (8 bytes changed in each).
cp "$run/src/v2.img" "$run/src/v2-full.img"
python3 - "$run/src/v2-full.img" "$SIZE_MIB" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    for c in range(int(sys.argv[2])):
        f.seek(c << 20)
        f.write(os.urandom(8))
PY
build 2.0 "$run/src/v2-full.img" rootfs-full.img "$www/v2-full.bbi"
rm "$run/src/v2-full.img"
ln "$www/v2.bbi" "$www/wan/v2.bbi"
ln "$www/v2-full.bbi" "$www/wan/v2-full.bbi"
rm "$run/src/v2.img"

# A disk with two banks; v1 in bank A, booted: every stage writes bank B.
truncate -s $((2 * SIZE_MIB + 300))M "$img"
"$BANKCTL" --root "$root" disk init "$img" --boot-size 16M --bank-size $((SIZE_MIB + 100))M >/dev/null
"$BANKCTL" --root "$root" stage "$run/v1.bbi" --activate >/dev/null
"$BANKCTL" --root "$root" boot --simulate >/dev/null
"$BANKCTL" --root "$root" mark-good >/dev/null
rm "$run/src/v1.img" "$run/v1.bbi"

cat >"$run/nginx/nginx.conf" <<EOF
user root;
daemon on;
worker_processes 1;
pid $run/nginx/nginx.pid;
error_log $run/nginx/error.log;
events { worker_connections 64; }
http {
	log_format bk '\$uri \$status \$body_bytes_sent';
	access_log $run/nginx/access.log bk;
	client_body_temp_path $run/nginx/body;
	proxy_temp_path $run/nginx/proxy;
	fastcgi_temp_path $run/nginx/fastcgi;
	uwsgi_temp_path $run/nginx/uwsgi;
	scgi_temp_path $run/nginx/scgi;
	keepalive_requests 1000000;
	sendfile on;
	server {
		listen 127.0.0.1:$PORT;
		root $www;
		location /wan/ { limit_rate 50m; }
	}
}
EOF
ip netns add "$ns"
ip -n "$ns" link set lo up
IN="ip netns exec $ns"
$IN nginx -p "$run/nginx" -c "$run/nginx/nginx.conf" -e "$run/nginx/error.log"
for _ in $(seq 50); do $IN curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done

echo "bench/stage-delta: $(nproc) cores, $SIZE_MIB MiB payload, $n_changed of its chunks changed, nginx on 127.0.0.1:$PORT, median of $RUNS interleaved runs"
read -r load _ </proc/loadavg
echo "load average at start: $load"
python3 - "$BANKCTL" "$root" "http://127.0.0.1:$PORT" "$run/nginx/access.log" "$RUNS" "$SIZE_MIB" "$ns" <<'PY'
import json, os, statistics, subprocess, sys, time

bankctl, root, base, log, runs, size_mib, ns = sys.argv[1:]
IN = ["ip", "netns", "exec", ns]

def shape(on):
    if on:
        subprocess.run(IN + ["tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate",
                             "400mbit", "burst", "512kb", "latency", "100ms"], check=True)
    else:
        subprocess.run(IN + ["tc", "qdisc", "del", "dev", "lo", "root"], check=False,
                       stderr=subprocess.DEVNULL)

runs, size = int(runs), int(size_mib) << 20
strict = os.environ.get("BENCH_STRICT") == "1"

def sent(uri):
    n = 0
    with open(log) as f:
        for line in f:
            u, status, b = line.split()
            if u == uri:
                n += int(b)
    return n

def stage(path):
    open(log, "w").close()
    t0 = time.perf_counter()
    p = subprocess.run(IN + [bankctl, "--root", root, "stage", base + path, "--json"],
                       check=True, capture_output=True, text=True)
    t = time.perf_counter() - t0
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return t, r["bytes_fetched"], r["bytes_reused"], sent(path)

missed = False
# One untimed run of each first: the booted bank's payload was written with O_DIRECT (not in
# the page cache), nginx serves its file from the page cache; warm both alike.
stage("/v2-full.bbi")
stage("/v2.bbi")
for link, prefix in (("50 MB/s link (tbf 400 Mbit/s, limit_rate 50m)", "/wan"), ("unlimited link", "")):
    shape(bool(prefix))
    full, delta = [], []
    for _ in range(runs):
        full.append(stage(prefix + "/v2-full.bbi"))
        delta.append(stage(prefix + "/v2.bbi"))
    if any(x[2] for x in full):
        sys.exit("bench/stage-delta: the full stream reused chunks of the booted bank: not a full stream")
    tf = statistics.median(x[0] for x in full)
    td = statistics.median(x[0] for x in delta)
    _, fetched, reused, on_wire = delta[-1]
    ratio = td / tf
    share = on_wire / size
    print(f"{link}:")
    print(f"  full stream of v2:  {tf:.2f} s  ({size / tf / 1e6:.0f} MB/s; runs {', '.join(f'{x[0]:.2f}' for x in full)}; "
          f"nginx sent {full[-1][3] / 2**20:.1f} MiB)")
    print(f"  delta stage of v2:  {td:.2f} s  (runs {', '.join(f'{x[0]:.2f}' for x in delta)}); "
          f"fetched {fetched / 2**20:.1f} MiB, reused {reused / 2**20:.1f} MiB; nginx sent {on_wire / 2**20:.2f} MiB")
    if prefix:
        ok_t, ok_b = ratio <= 0.35, share <= 0.12
        missed |= not (ok_t and ok_b)
        print(f"  delta / full time: {ratio:.3f}x (target <= 0.35x: {'met' if ok_t else 'MISSED'}); "
              f"bytes on the wire {share * 100:.1f}% of the payload (target <= 12%: {'met' if ok_b else 'MISSED'})")
    else:
        print(f"  delta / full time: {ratio:.3f}x; bytes on the wire {share * 100:.1f}% of the payload")
if missed and strict:
    sys.exit(1)
PY
