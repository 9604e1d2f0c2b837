#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankctl stage URL against a server that fails the ways docs/stage-url.md's table "What a
# server can do, and what it gets" lists as retried: tests/integ/range-server.py (python3
# http.server on 127.0.0.1, a port of its own, killed at exit even on failure) serves a real
# bundle with correct range answers and misbehaves per path: a stall past [fetch] timeout-sec,
# 503 once or always, 429 and 408 once, a short body (the connection closed, or an honest
# Content-Length shorter than the Content-Range), a reset mid-body, no ranges at all (200).
# Each failure: exit 8 and one line naming the URL, the range and what went wrong; bank B
# untouched when it came before anything was written, else empty in the boot state with the
# marker kept for a resume; bank A (booted) untouched. Each transient failure that goes away:
# exit 0, bank B holds the image, and the server's log shows the failed request and its retry.
. "$(dirname "$0")/lib.sh"

bk_need_root
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
for t in mkfs.ext4 mksquashfs openssl python3 losetup; do
	command -v "$t" >/dev/null || bk_skip "$t not installed"
done

T=$(bk_tmp)
repo=$(cd "$(dirname "$0")/../.." && pwd)
pki=$T/pki
bash "$repo/tests/pki/make-pki.sh" "$pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
root=$T/root
www=$T/www
mkdir -p "$root/etc/bootbank" "$T/src/tree/etc" "$www" "$T/mnt"
cp "$pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
# Small [fetch] values, so that a stall costs seconds: retries 2 (three attempts), the first
# retry after 100 ms, the second after 200 ms.
TIMEOUT=2
RETRIES=2
printf '[system]\ncompatible = demo-x86_64\n[fetch]\nretries = %d\nretry-delay-ms = 100\nconnect-timeout-sec = 2\ntimeout-sec = %d\n' \
	"$RETRIES" "$TIMEOUT" >"$root/etc/bootbank/system.conf"
B() { "$BANKCTL" --root "$root" "$@"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(str(r).lower() if isinstance(r,bool) else r)' "$1"; }
result() { tail -n 1 <<<"$OUT" | json "$1"; }

# --- images: v1 (staged from a file into bank A, booted) and v2 (served), no chunk in common
# but root.squashfs's, so that every chunk of big.bin (10 MiB) is fetched ----------------------
echo demo >"$T/src/tree/etc/os-release"
mksquashfs "$T/src/tree" "$T/src/root.squashfs" -quiet -noappend -all-root >/dev/null
mkimage() { # VERSION OUT
	head -c 100001 /dev/urandom >"$T/src/vmlinuz-$1"
	head -c $((10 << 20)) /dev/urandom >"$T/src/big-$1"
	cat >"$T/src/spec-$1.json" <<-EOF
	{ "name": "demo-os", "version": "$1", "build": "b-$1", "compatible": "demo-x86_64",
	  "security_epoch": 1, "payloads": [
	    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz-$1" },
	    { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" },
	    { "name": "big.bin", "type": "file", "source": "big-$1" } ] }
	EOF
	"$BANKCTL" image build "$T/src/spec-$1.json" -o "$2" --key "$pki/signer.key" \
		--cert "$pki/signer.crt" --intermediate "$pki/intermediate.crt" >/dev/null
}
mkimage 1 "$T/v1.bbi"
mkimage 2 "$www/v2.bbi"
big_off=$("$BANKCTL" image info --json "$www/v2.bbi" | json "[p['offset'] for p in d['manifest']['payloads'] if p['name'] == 'big.bin'][0]")
# AT: chunk 9 of big.bin (1 MiB chunks), the request a payload-phase fault is aimed at: the
# metadata, vmlinuz, root.squashfs and chunks 0-8 of big.bin have been verified and written,
# and the marker checkpointed after chunk 7 (BK_STAGE_CHECKPOINT_CHUNKS: the first after 8).
AT=$((big_off + (9 << 20)))
ATR=$AT-$((AT + (1 << 20) - 1))

# --- the disk: bank A holds v1, booted and good --------------------------------------------
disk=$T/disk.img
truncate -s 80M "$disk"
expect_exit 0 "disk init" B disk init "$disk" --boot-size 8M --bank-size 24M
bk_disk_banks || not_ok "disk.json names both banks"
hashp() { bk_bank_hash "$@"; }
inbank() { bk_in_bank "$@"; }
bankstate() { B status --json | json "d['boot']['banks']['$1']['state']"; }
holds() { # BANK VERSION: the bank holds image VERSION's payloads
	inbank "$1" sh -c "cmp -s vmlinuz $T/src/vmlinuz-$2 && cmp -s root.squashfs $T/src/root.squashfs && cmp -s big.bin $T/src/big-$2 && test -e bank.json"
}
marker=$root/var/lib/bootbank/staging.json
expect_exit 0 "stage v1 (a file) into bank A --activate" B stage "$T/v1.bbi" --activate
expect_exit 0 "boot v1" B boot --simulate
expect_exit 0 "mark v1 good" B mark-good
ha=$(hashp A)

# --- the server: a port of its own (the kernel's pick), killed at exit ----------------------
: >"$T/faults"
python3 "$repo/tests/integ/range-server.py" "$www" "$T/faults" "$T/server.log" "$T/port" \
	--stall-sec $((TIMEOUT + 2)) 2>"$T/server.err" &
spid=$!
trap 'kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; bk_cleanup' EXIT
for _ in $(seq 50); do [ -s "$T/port" ] && break; sleep 0.1; done
[ -s "$T/port" ] || bk_skip "the range server does not start: $(cat "$T/server.err")"
U=http://127.0.0.1:$(cat "$T/port")
# fault PATH MODE [AT]: the server misbehaves for PATH from now on (range-server.py)
fault() { echo "$*" >>"$T/faults"; }
# seen PATH [RANGE]: what the server answered to PATH (for RANGE only), "STATUS WHAT" a line
seen() { awk -v p="$1" -v r="${2:-}" '$2 == p && (r == "" || $3 == r) { print $4, $6 }' "$T/server.log"; }
# times PATH RANGE: when the server got each request for RANGE of PATH, a line each
times() { awk -v p="$1" -v r="$2" '$2 == p && $3 == r { print $1 }' "$T/server.log"; }
oneline() { test "$(wc -l <<<"$ERR")" = 1 && grep -qF -- "$1" <<<"$ERR" || { echo "# stderr: $ERR"; false; }; }
lines() { printf '%s\n' "$@"; }

# fails DESC PATH RANGE MESSAGE WHEN: exit 8 with one line "'URL': bytes RANGE...: MESSAGE";
# WHEN is "before" (the failure came before anything was written: bank B untouched, no
# marker) or "during" (in the payloads: bank B empty in the boot state, the marker names the
# URL and big.bin's first 8 chunks, which bank B keeps, verified, for a resume; the failing
# stage's own line says so, and the next run's recovery (here `recover`) does not report it
# again as "an interrupted stage": nothing was interrupted); bank A untouched either way.
fails() {
	local desc=$1 path=$2 rng=$3 msg=$4 when=$5 hb stb
	hb=$(hashp B)
	stb=$(bankstate B)
	expect_exit 8 "$desc: exit 8" B stage "$U$path"
	check "$desc: one line: ...'$U$path': bytes $rng: $msg" oneline "'$U$path': bytes $rng: $msg"
	if [ "$when" = before ]; then
		check "$desc: bank B untouched" test "$(hashp B)" = "$hb"
		check "$desc: bank B still $stb in the boot state" test "$(bankstate B)" = "$stb"
		check "$desc: no marker" test ! -e "$marker"
	else
		check "$desc: bank B empty in the boot state" test "$(bankstate B)" = empty
		check "$desc: the marker kept for a resume: payload 2, chunk 8 ($(json "d.get('url'), d.get('payload'), d.get('chunks')" <"$marker" 2>&1))" \
			test "$(json "d['url'], d['payload'], d['chunks']" <"$marker" 2>&1)" = "('$U$path', 2, 8)"
		check "$desc: bank B keeps the verified payloads and chunks" \
			inbank B sh -c "cmp -s vmlinuz $T/src/vmlinuz-2 && cmp -s root.squashfs $T/src/root.squashfs && cmp -s -n $((8 << 20)) .partial.big.bin $T/src/big-2"
		check "$desc: the line says the verified chunks stay for a resume" \
			grep -qF "; the verified chunks stay in bank B: staging the same URL again resumes" <<<"$ERR"
		check "$desc: the marker stays, pid 0 (reported)" test "$(json "d['url'], d['pid']" <"$marker" 2>&1)" = "('$U$path', 0)"
		expect_exit 0 "$desc: recover" B recover
		check "$desc: recover does not call it an interrupted stage" \
			bash -c '! grep -q "interrupted" <<<"$0"' "$OUT$ERR"
		check "$desc: the marker still there, pid 0" test "$(json "d['url'], d['pid']" <"$marker" 2>&1)" = "('$U$path', 0)"
	fi
	check "$desc: bank A untouched" test "$(hashp A)" = "$ha"
}
# recovers DESC PATH: exit 0, bank B holds v2, bank A untouched
recovers() {
	expect_exit 0 "$1: exit 0" B stage "$U$2" --json
	check "$1: bank B holds v2" holds B 2
	check "$1: no marker left" test ! -e "$marker"
	check "$1: bank A untouched" test "$(hashp A)" = "$ha"
}

# --- a full stream from the server, no fault -------------------------------------------------
recovers "no fault" /ok/v2.bbi
check "no fault: every answer a 206, big.bin's chunk 9 once" \
	test "$(seen /ok/v2.bbi | sort -u)" = "206 ok" -a "$(seen /ok/v2.bbi "$ATR")" = "206 ok"

# --- failures before anything is written ----------------------------------------------------
# A server without ranges answers 200 to the header's request: refused at once, not retried.
fault /ignore-range/v2.bbi ignore-range
fails "ignores Range (200 with the whole file)" /ignore-range/v2.bbi 0-127 \
	"the server does not serve byte ranges (HTTP 200)" before
check "ignores Range: asked once, not retried" test "$(seen /ignore-range/v2.bbi)" = "200 ignore-range"
# 503 for every attempt at the header: three requests, then exit 8.
fault /always-503-head/v2.bbi always-503 0
fails "503 to every attempt at the header" /always-503-head/v2.bbi "0-127 (after every retry)" "HTTP 503" before
check "503 at the header: $((RETRIES + 1)) attempts" \
	test "$(seen /always-503-head/v2.bbi)" = "$(lines "503 always-503" "503 always-503" "503 always-503")"

# --- failures in the payloads: retried, then exit 8; the verified chunks stay ----------------
# A stall: the 206 headers, then nothing for timeout-sec + 2 s. libcurl gives up after
# timeout-sec below 1 KiB/s, each attempt.
fault /stall/v2.bbi stall "$AT"
t0=$(date +%s.%N)
fails "a stall past timeout-sec" /stall/v2.bbi "$ATR (after every retry)" \
	"Operation too slow. Less than 1024 bytes/sec transferred the last $TIMEOUT seconds" during
t1=$(date +%s.%N)
check "stall: $((RETRIES + 1)) attempts at chunk 9 ($(seen /stall/v2.bbi "$ATR" | tr '\n' ' '))" \
	test "$(seen /stall/v2.bbi "$ATR")" = "$(lines "206 stall" "206 stall" "206 stall")"
check "stall: each attempt given up after timeout-sec ($(times /stall/v2.bbi "$ATR" | tr '\n' ' '))" \
	python3 -c 'import sys; t = [float(x) for x in sys.argv[2:]]; s = float(sys.argv[1]); sys.exit(not all(s <= b - a < s + 2 for a, b in zip(t, t[1:])))' \
	"$TIMEOUT" $(times /stall/v2.bbi "$ATR")
echo "# stall: the stage took $(python3 -c "print('%.1f' % ($t1 - $t0))") s"
# The server behaves again: the same URL resumes from the verified chunks.
: >"$T/faults"
expect_exit 0 "stall: the same URL again, the server well" B stage "$U/stall/v2.bbi" --json
check "stall: resumed ($(result "d['bytes_resumed']") bytes kept, $(result "d['bytes_fetched']") fetched)" \
	test "$(result "d['bytes_resumed'] >= (8 << 20) + 100001")" = true
check "stall: bank B holds v2" holds B 2
check "stall: bank A untouched" test "$(hashp A)" = "$ha"

# 503 for every attempt at chunk 9: retried after 100 ms, then 200 ms, then exit 8 (the
# server's times are printed to the millisecond: 1 ms of rounding is allowed).
fault /always-503/v2.bbi always-503 "$AT"
fails "503 to every attempt (retries exhausted)" /always-503/v2.bbi "$ATR (after every retry)" "HTTP 503" during
check "503: $((RETRIES + 1)) attempts at chunk 9" \
	test "$(seen /always-503/v2.bbi "$ATR")" = "$(lines "503 always-503" "503 always-503" "503 always-503")"
check "503: the retries waited retry-delay-ms, then twice that ($(times /always-503/v2.bbi "$ATR" | tr '\n' ' '))" \
	python3 -c 'import sys; t = [float(x) for x in sys.argv[1:]]; sys.exit(not (t[1] - t[0] >= 0.099 and t[2] - t[1] >= 0.199))' \
	$(times /always-503/v2.bbi "$ATR")
# A short body: Content-Range and Content-Length claim the chunk, half of it comes, then the
# connection is closed (libcurl counts the missing bytes).
fault /short/v2.bbi short "$AT"
fails "a short body, closed" /short/v2.bbi "$ATR (after every retry)" \
	"transfer closed with 524288 bytes remaining to read" during
check "short: $((RETRIES + 1)) attempts at chunk 9" test "$(seen /short/v2.bbi "$ATR" | wc -l)" = $((RETRIES + 1))
# A short body the server owns up to: Content-Length half the Content-Range (bootbank counts).
fault /short-cl/v2.bbi short-cl "$AT"
fails "a short body, Content-Length shorter than Content-Range" /short-cl/v2.bbi "$ATR (after every retry)" \
	"short read: 524288 of 1048576 bytes" during
check "short-cl: $((RETRIES + 1)) attempts at chunk 9" test "$(seen /short-cl/v2.bbi "$ATR" | wc -l)" = $((RETRIES + 1))

# --- transient failures that go away: retried, the stage completes ---------------------------
fault /fail-once-503/v2.bbi fail-once-503 "$AT"
recovers "503 once at chunk 9" /fail-once-503/v2.bbi
check "503 once: the server saw the 503 and the retry" \
	test "$(seen /fail-once-503/v2.bbi "$ATR")" = "$(lines "503 fail-once-503" "206 ok")"
fault /fail-once-429/v2.bbi fail-once-429 0
recovers "429 once at the header" /fail-once-429/v2.bbi
check "429 once: the server saw the 429 and the retry" \
	test "$(seen /fail-once-429/v2.bbi 0-127)" = "$(lines "429 fail-once-429" "206 ok")"
fault /fail-once-408/v2.bbi fail-once-408 "$AT"
recovers "408 once at chunk 9" /fail-once-408/v2.bbi
check "408 once: the server saw the 408 and the retry" \
	test "$(seen /fail-once-408/v2.bbi "$ATR")" = "$(lines "408 fail-once-408" "206 ok")"
fault /reset-once/v2.bbi reset-once "$AT"
recovers "a reset mid-body at chunk 9" /reset-once/v2.bbi
check "reset: the server saw the reset (half the chunk sent) and the retry" \
	test "$(awk -v p=/reset-once/v2.bbi -v r="$ATR" '$2 == p && $3 == r { print $4, $5, $6 }' "$T/server.log")" = \
	"$(lines "206 524288 reset-once" "206 1048576 ok")"

bk_done
