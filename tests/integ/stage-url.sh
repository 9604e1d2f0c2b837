#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankctl stage URL against a real nginx on 127.0.0.1 (its own config, prefix and ports
# 18480-18481, stopped at the end even on failure): a full stream; servers that lie (a flipped
# byte in one chunk, a truncated file, a redirect to another origin, the file replaced between
# requests); delta staging against the booted bank (bytes counted from nginx's access log);
# resume after killing bankctl at several points; https with a test CA, trusted and untrusted;
# https credentials: a bearer token (never sent over http; its file's owner and mode checked)
# and a client certificate (trusted, missing, from another CA). docs/stage-url.md.
. "$(dirname "$0")/lib.sh"

bk_need_root
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
for t in nginx mkfs.ext4 mksquashfs openssl python3 losetup partx curl; do
	command -v "$t" >/dev/null || bk_skip "$t not installed"
done

T=$(bk_tmp)
repo=$(cd "$(dirname "$0")/../.." && pwd)
PORT=${BK_URL_PORT:-18480}
TLS_PORT=$((PORT + 1))
pki=$T/pki
bash "$repo/tests/pki/make-pki.sh" "$pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
root=$T/root
www=$T/www
mkdir -p "$root/etc/bootbank" "$T/src" "$www/slow" "$T/mnt" "$T/nginx"
cp "$pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
conf() { # extra lines for [fetch]
	printf '[system]\ncompatible = demo-x86_64\n[fetch]\nretries = 1\nretry-delay-ms = 100\nconnect-timeout-sec = 5\ntimeout-sec = 10\n%s' "${1:-}" >"$root/etc/bootbank/system.conf"
}
conf
B() { "$BANKCTL" --root "$root" "$@"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(str(r).lower() if isinstance(r,bool) else r)' "$1"; }
# The result line of stage --json (the last line of its output)
result() { tail -n 1 <<<"$OUT" | json "$1"; }

# --- nginx: its own prefix, config and ports; stopped by the exit trap -----------------------
openssl ecparam -name prime256v1 -genkey -noout -out "$T/nginx/server.key" 2>/dev/null
openssl req -new -x509 -key "$T/nginx/server.key" -CA "$pki/root-ca.crt" -CAkey "$pki/root-ca.key" \
	-subj "/O=bootbank test/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
	-addext "extendedKeyUsage=serverAuth" -days 2 -out "$T/nginx/server.crt" 2>/dev/null ||
	bk_skip "cannot make a server certificate"
# Credentials: a random bearer token; a client CA (the one nginx trusts for client
# certificates), a client certificate it signed and one signed by a rogue CA of the same shape.
tok=$(openssl rand -hex 24)
cacert() { # NAME CN: a self-signed CA in $T/nginx
	openssl ecparam -name prime256v1 -genkey -noout -out "$T/nginx/$1.key" 2>/dev/null &&
		openssl req -new -x509 -key "$T/nginx/$1.key" -subj "/O=bootbank test/CN=$2" -days 2 \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" -out "$T/nginx/$1.crt" 2>/dev/null
}
clientcert() { # NAME CA: a clientAuth certificate NAME.{crt,key} signed by CA, in $root/etc/bootbank
	openssl ecparam -name prime256v1 -genkey -noout -out "$root/etc/bootbank/$1.key" 2>/dev/null &&
		openssl req -new -x509 -key "$root/etc/bootbank/$1.key" -CA "$T/nginx/$2.crt" \
			-CAkey "$T/nginx/$2.key" -subj "/O=bootbank test/CN=$1" -days 2 \
			-addext "basicConstraints=critical,CA:FALSE" \
			-addext "keyUsage=critical,digitalSignature" \
			-addext "extendedKeyUsage=clientAuth" -out "$root/etc/bootbank/$1.crt" 2>/dev/null &&
		chmod 600 "$root/etc/bootbank/$1.key"
}
{ cacert client-ca "bootbank test client CA" && cacert rogue-ca "bootbank test rogue CA" &&
	clientcert client client-ca && clientcert rogue-client rogue-ca; } ||
	bk_skip "cannot make the client certificates"
bk_nginx_conf "$T/nginx" <<EOF
	log_format bk '\$uri \$status \$body_bytes_sent "\$http_range"';
	log_format auth '\$server_port	\$uri	\$status	"\$ssl_client_verify"	"\$http_authorization"';
	access_log $T/nginx/access.log bk;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:$PORT;
		root $www;
		location /slow/ { limit_rate 4m; }
		location = /redirect-other.bbi { return 302 http://localhost:$PORT/v1.bbi; }
		location = /redirect-same.bbi { return 302 /v2.bbi; }
		location /auth/ {
			access_log $T/nginx/auth.log auth;
			if (\$http_authorization != "Bearer $tok") { return 401; }
			alias $www/;
		}
	}
	server {
		listen 127.0.0.1:$TLS_PORT ssl;
		ssl_certificate $T/nginx/server.crt;
		ssl_certificate_key $T/nginx/server.key;
		ssl_verify_client optional;
		ssl_client_certificate $T/nginx/client-ca.crt;
		access_log $T/nginx/auth.log auth;
		root $www;
		location /auth/ {
			if (\$http_authorization != "Bearer $tok") { return 401; }
			alias $www/;
		}
		location /mtls/ {
			if (\$ssl_client_verify != SUCCESS) { return 403; }
			alias $www/;
		}
	}
EOF
trap 'bk_nginx_stop "$T/nginx"; bk_cleanup' EXIT
bk_nginx_run "$T/nginx" "$PORT"
[ $? -ne 1 ] || bk_skip "nginx does not start on 127.0.0.1:$PORT (port in use?)"
U=http://127.0.0.1:$PORT
# fetched URI: body bytes nginx sent for URI since the log was last cut
fetched() { awk -v u="$1" '$1 == u { n += $3 } END { print n + 0 }' "$T/nginx/access.log"; }
cutlog() { : >"$T/nginx/access.log"; }

# --- images: v1; v2 = v1 with chunks 3 and 10 of big.bin changed; v3 all new ----------------
mkdir -p "$T/src/common/tree/etc"
head -c 300001 /dev/urandom >"$T/src/common/vmlinuz"
echo demo >"$T/src/common/tree/etc/os-release"
mksquashfs "$T/src/common/tree" "$T/src/common/root.squashfs" -quiet -noappend -all-root >/dev/null
head -c $((16 << 20)) /dev/urandom >"$T/src/big-1"
cp "$T/src/big-1" "$T/src/big-2"
for c in 3 10; do
	head -c 4096 /dev/urandom | dd of="$T/src/big-2" bs=4096 seek=$((c * 256 + 7)) conv=notrunc status=none
done
head -c $((24 << 20)) /dev/urandom >"$T/src/big-3"
mkimage() { # VERSION BIG
	cat >"$T/src/spec-$1.json" <<-EOF
	{ "name": "demo-os", "version": "$1", "build": "b-$1", "compatible": "demo-x86_64",
	  "security_epoch": 1, "payloads": [
	    { "name": "vmlinuz", "type": "kernel", "source": "common/vmlinuz" },
	    { "name": "root.squashfs", "type": "rootfs", "source": "common/root.squashfs" },
	    { "name": "big.bin", "type": "file", "source": "$2" } ] }
	EOF
	"$BANKCTL" image build "$T/src/spec-$1.json" -o "$www/v$1.bbi" --key "$pki/signer.key" \
		--cert "$pki/signer.crt" --intermediate "$pki/intermediate.crt" >/dev/null
}
mkimage 1 big-1
mkimage 2 big-2
mkimage 3 big-3
cp "$www/v3.bbi" "$www/slow/v3.bbi"
payloads=$(($(stat -c %s "$T/src/common/vmlinuz") + $(stat -c %s "$T/src/common/root.squashfs") + (16 << 20)))
payloads3=$((payloads + (8 << 20)))

# --- the disk ------------------------------------------------------------------------------
disk=$T/disk.img
truncate -s 120M "$disk"
expect_exit 0 "disk init" B disk init "$disk" --boot-size 8M --bank-size 40M
bk_disk_banks || not_ok "disk.json names both banks"
hashp() { bk_bank_hash "$@"; }
inbank() { bk_in_bank "$@"; }
bankstate() { B status --json | json "d['boot']['banks']['$1']['state']"; }
bank_empty() { # the boot state says empty and the bank holds nothing but lost+found
	[ "$(bankstate "$1")" = empty ] && inbank "$1" sh -c 'test "$(ls -A)" = lost+found'
}
holds() { # BANK BIG: the bank holds the common payloads and big.bin = $T/src/BIG
	inbank "$1" sh -c "cmp -s vmlinuz $T/src/common/vmlinuz && cmp -s root.squashfs $T/src/common/root.squashfs && cmp -s big.bin $T/src/$2 && test -e bank.json"
}
marker=$root/var/lib/bootbank/staging.json

# --- a full stream -------------------------------------------------------------------------
cutlog
expect_exit 0 "stage $U/v1.bbi --activate" B stage "$U/v1.bbi" --activate --json
check "v1 into bank A, every byte fetched" test "$(result "d['bank'], d['bytes_fetched'] == $payloads, d['bytes_reused'], d['bytes_resumed']")" = "('A', True, 0, 0)"
check "bank A holds v1" holds A big-1
check "nginx sent the metadata and the payloads, nothing twice" test "$(fetched /v1.bbi)" -le "$(($(stat -c %s "$www/v1.bbi") + 8192))"
check "every request was a range request" test "$(awk '$2 != 206' "$T/nginx/access.log" | wc -l)" = 0
expect_exit 0 "boot v1" B boot --simulate
expect_exit 0 "mark v1 good" B mark-good
ha=$(hashp A)

# --- servers that lie: bank B stays empty, bank A untouched -------------------------------
lie() { # CODE DESC PATTERN URL
	local hb
	hb=$(hashp B)
	expect_exit "$1" "$2: exit $1" B stage "$4"
	check "$2: one clear line" grep -q "$3" <<<"$ERR"
	check "$2: bank B empty (or, refused before any write, untouched)" eval 'bank_empty B || test "$(hashp B)" = "$hb"'
	check "$2: no marker left" test ! -e "$marker"
	check "$2: bank A untouched" test "$(hashp A)" = "$ha"
}
big_off=$("$BANKCTL" image info --json "$www/v2.bbi" | json "[p['offset'] for p in d['manifest']['payloads'] if p['name'] == 'big.bin'][0]")
cp "$www/v2.bbi" "$www/flipped.bbi"
# Chunk 3 differs from v1's: it is fetched, not reused from the booted bank.
printf '\x5a' | dd of="$www/flipped.bbi" bs=1 seek=$((big_off + 3 * 1048576 + 1234)) conv=notrunc status=none
lie 7 "a flipped byte in chunk 3" "payload 'big.bin': chunk 3 (offset 3145728): SHA-256 mismatch (corrupt payload)" "$U/flipped.bbi"
check "a flipped byte: bank B empty" bank_empty B
head -c $((big_off + 9 * 1048576)) "$www/v2.bbi" >"$www/truncated.bbi"
lie 6 "a truncated file" "truncated\|past the end" "$U/truncated.bbi"
lie 8 "a redirect to another origin" "redirect to another origin refused: 'http://localhost:$PORT/v1.bbi'" "$U/redirect-other.bbi"
expect_exit 4 "a missing file: exit 4" B stage "$U/nope.bbi"
check "missing: HTTP 404 named" grep -q "HTTP 404" <<<"$ERR"
# libcurl is dlopen()ed on the first fetch: hidden (an empty file bound over it in this mount
# namespace), a URL stage fails with one line naming the package; nothing is written.
curlso=$(ldconfig -p | awk '$1 == "libcurl.so.4" && /x86-64|64bit/ { print $NF; exit }')
if [ -n "$curlso" ] && : >"$T/empty.so" && mount --bind "$T/empty.so" "$curlso"; then
	lie 1 "libcurl hidden" "http(s) needs libcurl (libcurl.so.4, Debian package libcurl4): " "$U/v2.bbi"
	expect_exit 0 "libcurl hidden: a local bundle still stages" B stage "$www/v2.bbi" --json
	check "libcurl hidden: bank B holds v2" holds B big-2
	umount "$curlso"
else
	not_ok "cannot hide libcurl.so.4 ('$curlso') with a bind mount"
fi
# The file replaced while it is read: v3 is served slowly, v1 moved over it after 1.5 s.
cp "$www/v3.bbi" "$www/slow/replaced.bbi"
"$BANKCTL" --root "$root" stage "$U/slow/replaced.bbi" >"$T/replaced.out" 2>"$T/replaced.err" &
pid=$!
sleep 1.5
cp "$www/v1.bbi" "$www/slow/.new" && mv "$www/slow/.new" "$www/slow/replaced.bbi"
wait $pid
rc=$?
check "the file replaced between requests: exit 8 (got $rc)" test "$rc" = 8
check "replaced: one clear line" grep -q "the file changed on the server" "$T/replaced.err"
check "replaced: bank B empty" bank_empty B
check "replaced: bank A untouched" test "$(hashp A)" = "$ha"

# --- depot import URL: the depot's copy is the bundle, byte for byte; a lie changes nothing ---
depot=$root/var/lib/bootbank/depot
expect_exit 7 "depot import of the flipped bundle: exit 7" B depot import "$U/flipped.bbi"
check "depot import flipped: named the chunk" grep -q "chunk 3 (offset 3145728): SHA-256 mismatch" <<<"$ERR"
check "depot import flipped: nothing in the depot" test -z "$(ls -A "$depot" 2>/dev/null)"
expect_exit 0 "depot import $U/v2.bbi" B depot import "$U/v2.bbi"
check "depot import: the copy is the bundle" cmp "$depot/demo-os_2.bbi" "$www/v2.bbi"
expect_exit 1 "depot import again: exit 1 (already there)" B depot import "$U/v2.bbi"
check "depot import again: no temp file left" test "$(ls -A "$depot")" = demo-os_2.bbi

# --- a same-origin redirect is followed ----------------------------------------------------
expect_exit 0 "stage through a same-origin redirect" B stage "$U/redirect-same.bbi" --json
check "redirect: bank B holds v2" holds B big-2

# --- delta: v2 against the booted v1 ------------------------------------------------------
cutlog
# Bank A was staged by this version: its manifest.chunks gives the digests of its chunks, and
# each chunk of v2 is looked up there before anything is read (docs/stage-url.md).
expect_exit 0 "delta stage of v2" env LIBBOOTBANK_DEBUG=bank "$BANKCTL" --root "$root" stage "$U/v2.bbi" --json
check "delta: decided from bank A's chunk lists" grep -q "delta: the booted bank's chunk lists: [0-9]* distinct chunks in 3 payloads" <<<"$ERR"
read -r fetched_b reused_b < <(result "'%d %d' % (d['bytes_fetched'], d['bytes_reused'])")
check "delta: every payload reused but the two changed chunks ($fetched_b fetched, $reused_b reused)" test "$fetched_b" = $((2 << 20)) -a "$reused_b" = $((payloads - (2 << 20)))
sent=$(fetched /v2.bbi)
meta=$(($(stat -c %s "$www/v2.bbi") - (16 << 20) - $(stat -c %s "$T/src/common/vmlinuz") - $(stat -c %s "$T/src/common/root.squashfs")))
check "delta: nginx sent the two chunks and the metadata ($sent bytes)" test "$sent" -le $(((2 << 20) + meta)) -a "$sent" -ge $((2 << 20))
check "delta: bank B holds v2" holds B big-2
expect_exit 0 "delta: human output" B stage "$U/v2.bbi"
check "delta: human output counts fetched and reused" grep -q "^  2.0 MiB fetched, 14.3 MiB reused from the booted bank, 0.0 MiB kept from an interrupted stage" <<<"$OUT"

# --- resume after kill -9 at several points ---------------------------------------------------
# progress: the marker's chunks of big.bin (payload 2), 0 without a marker
progress() { json "d.get('chunks', 0) if d.get('payload') == 2 else 0" <"$marker" 2>/dev/null || echo 0; }
kills=0
for want in 8 16; do # killed once the marker records chunk 8, then chunk 16 (at most 30 s)
	"$BANKCTL" --root "$root" stage "$U/slow/v3.bbi" >/dev/null 2>&1 &
	pid=$!
	for _ in $(seq 300); do [ "$(progress)" -ge "$want" ] && break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null && kills=$((kills + 1))
	wait "$pid" 2>/dev/null
	check "killed stage $kills at chunk >= $want: the marker records it ($(progress))" test "$(progress)" -ge "$want"
done
expect_exit 0 "resume the killed stage" B stage "$U/slow/v3.bbi" --json
read -r fetched_b resumed_b < <(result "'%d %d' % (d['bytes_fetched'], d['bytes_resumed'])")
check "resume: kept $resumed_b bytes, fetched $fetched_b" test "$resumed_b" -ge $((16 << 20)) -a $((fetched_b + resumed_b)) = "$payloads3"
check "resume: bank B holds v3" holds B big-3
check "resume: no marker left" test ! -e "$marker"
# A network failure (the server goes away) keeps the verified chunks too.
"$BANKCTL" --root "$root" stage "$U/slow/v3.bbi" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 300); do [ "$(progress)" -ge 8 ] && break; sleep 0.1; done
bk_nginx_stop "$T/nginx"
wait "$pid"
rc=$?
check "server stopped mid-stream: exit 8 (got $rc)" test "$rc" = 8
check "server stopped: the marker stays for a resume" test -e "$marker"
check "server stopped: bank B is empty in the boot state" test "$(bankstate B)" = empty
bk_nginx_run "$T/nginx" "$PORT"
expect_exit 0 "resume after the network failure" B stage "$U/slow/v3.bbi" --json
check "network resume: bytes kept" test "$(result "d['bytes_resumed'] >= 8 << 20")" = true
check "network resume: bank B holds v3" holds B big-3

# --- the crash injector over a URL stage (tests/crash/bk-crash.c): killed before its Nth
# mutating system call at 10 points spread over the stage; after each, `bankctl recover`, the
# booted bank untouched, bank B empty (its verified chunks kept with the marker) or complete,
# and the next stage of the same URL finishes with the right bytes.
SO=$(realpath "${BK_BUILD:-build/cc}/tests/crash/bk-crash.so" 2>/dev/null) || SO=
if [ -n "$SO" ] && ! ldd "$BANKCTL" | grep -q libasan; then
	rm -f "$T/count"
	LD_PRELOAD=$SO BK_CRASH_COUNT=$T/count B stage "$U/v3.bbi" >/dev/null 2>&1
	total=$(cat "$T/count" 2>/dev/null || echo 0)
	check "crash: the URL stage counts its mutating calls ($total)" test "$total" -gt 20
	bad=0 resumed_any=0 points=0
	for k in $(seq 1 10); do
		n=$((total * k / 11))
		LD_PRELOAD=$SO BK_CRASH_AT=$n B stage "$U/v3.bbi" >/dev/null 2>&1
		rc=$?
		[ "$rc" = 137 ] || { echo "# crash@$n: exit $rc, not killed"; bad=$((bad + 1)); }
		out=$(B recover 2>&1) || { echo "# crash@$n: recover failed: $out"; bad=$((bad + 1)); }
		[ "$(hashp A)" = "$ha" ] || { echo "# crash@$n: bank A changed"; bad=$((bad + 1)); }
		st=$(bankstate B)
		if [ -e "$marker" ]; then
			[ "$st" = empty ] && [ "$(json "d['url'], d['pid']" <"$marker")" = "('$U/v3.bbi', 0)" ] ||
				{ echo "# crash@$n: marker left with bank B $st"; bad=$((bad + 1)); }
		else
			[ "$st" = empty ] || [ "$st" = staged ] || { echo "# crash@$n: bank B $st"; bad=$((bad + 1)); }
		fi
		OUT=$(B stage "$U/v3.bbi" --json 2>&1) || { echo "# crash@$n: the next stage failed: $OUT"; bad=$((bad + 1)); }
		kept=$(result "d['bytes_resumed']" 2>/dev/null)
		echo "# crash@$n: bank B $st, then $kept bytes kept by the next stage"
		[ "${kept:-0}" -gt 0 ] && resumed_any=$((resumed_any + 1))
		holds B big-3 || { echo "# crash@$n: bank B does not hold v3"; bad=$((bad + 1)); }
		points=$((points + 1))
	done
	check "crash: killed at $points points of $total, recovered, invariants hold" test "$bad" = 0
	check "crash: $resumed_any of the next stages resumed" test "$resumed_any" -ge 3
fi

# --- https -----------------------------------------------------------------------------------
S=https://127.0.0.1:$TLS_PORT
hb=$(hashp B)
expect_exit 5 "https, server not trusted (system CAs): exit 5" B stage "$S/v2.bbi"
check "untrusted: one TLS line" grep -q "TLS: " <<<"$ERR"
check "untrusted: bank B untouched" test "$(hashp B)" = "$hb"
cp "$pki/root-ca.crt" "$root/etc/bootbank/server-ca.pem"
conf "ca-file = /etc/bootbank/server-ca.pem
"
expect_exit 0 "https with [fetch] ca-file" B stage "$S/v2.bbi" --json
check "https: bank B holds v2" holds B big-2

# --- https credentials: a bearer token, a client certificate ---------------------------------
# Every refusal comes at the first request, before anything is written: bank B keeps its bytes
# and its boot state. auth.log has the requests of the TLS server and of the plain server's
# /auth/, a line each: port, URI, status, "client certificate verification", "Authorization".
# authlog PORT URI: the Authorization headers nginx got for URI on PORT, one line a request.
authlog() { awk -F '\t' -v p="$1" -v u="$2" '$1 == p && $2 == u { print $5 }' "$T/nginx/auth.log"; }
oneline() { test "$(wc -l <<<"$ERR")" = 1 && grep -qF -- "$1" <<<"$ERR"; }
refused() { # DESC CODE MESSAGE CMD...
	local desc=$1 code=$2 msg=$3
	shift 3
	expect_exit "$code" "$desc: exit $code" "$@"
	check "$desc: one line: $msg" oneline "$msg"
	check "$desc: bank B untouched" test "$(hashp B)" = "$hb"
	check "$desc: bank B still $stb in the boot state" test "$(bankstate B)" = "$stb"
	check "$desc: no marker" test ! -e "$marker"
}
tokfile=$root/etc/bootbank/token
printf '%s\n' "$tok" >"$tokfile"
chmod 600 "$tokfile"
hb=$(hashp B)
stb=$(bankstate B)
: >"$T/nginx/auth.log"
refused "https /auth/ without a token" 8 \
	"'$S/auth/v3.bbi': bytes 0-127: HTTP 401 (the server wants credentials: [fetch] bearer-token-file, client-cert)" \
	B stage "$S/auth/v3.bbi"
check "no token: nginx got no Authorization header" test "$(authlog "$TLS_PORT" /auth/v3.bbi)" = '"-"'
printf 'not-%s\n' "$tok" >"$root/etc/bootbank/wrong-token"
chmod 600 "$root/etc/bootbank/wrong-token"
conf "ca-file = /etc/bootbank/server-ca.pem
bearer-token-file = /etc/bootbank/wrong-token
"
refused "https /auth/ with a wrong token" 8 \
	"HTTP 401 (the server did not accept the token of [fetch] bearer-token-file, or wants [fetch] client-cert)" \
	B stage "$S/auth/v3.bbi"
conf "ca-file = /etc/bootbank/server-ca.pem
bearer-token-file = /etc/bootbank/token
"
# The token file: owned by root, no permission for group or others; refused before any request.
: >"$T/nginx/auth.log"
chmod 644 "$tokfile"
refused "token file mode 0644" 1 \
	"[fetch] bearer-token-file '$tokfile' has mode 0644: group or others can read or replace the token (chmod 600 it)" \
	B stage "$S/auth/v3.bbi"
chmod 620 "$tokfile"
refused "token file mode 0620 (group-writable)" 1 "has mode 0620: group or others can read or replace the token" \
	B stage "$S/auth/v3.bbi"
chmod 600 "$tokfile"
chown 65534 "$tokfile"
refused "token file owned by uid 65534" 1 \
	"[fetch] bearer-token-file '$tokfile' is owned by uid 65534, not root: another user can read or replace the token (chown it)" \
	B stage "$S/auth/v3.bbi"
chown 0 "$tokfile"
ln -s token "$root/etc/bootbank/token-link"
conf "ca-file = /etc/bootbank/server-ca.pem
bearer-token-file = /etc/bootbank/token-link
"
refused "token file is a symlink" 1 "[fetch] bearer-token-file '$root/etc/bootbank/token-link' is a symlink (name the file itself)" \
	B stage "$S/auth/v3.bbi"
check "refused token files: no request reached nginx" test ! -s "$T/nginx/auth.log"
conf "ca-file = /etc/bootbank/server-ca.pem
bearer-token-file = /etc/bootbank/token
"
# Over http the token stays home: the plain server's /auth/ answers 401, and its log shows no
# Authorization header (while the same request with the token is served, so the 401 is the
# missing header's).
refused "token configured, http:// /auth/" 8 \
	"'$U/auth/v3.bbi': bytes 0-127: HTTP 401 (the server wants credentials; [fetch] bearer-token-file is sent over https only, never to an http:// URL)" \
	B stage "$U/auth/v3.bbi"
check "http: nginx on port $PORT got requests, none with an Authorization header ($(authlog "$PORT" /auth/v3.bbi | sort | uniq -c | tr '\n' ' '))" \
	test "$(authlog "$PORT" /auth/v3.bbi | sort -u)" = '"-"'
check "http: the same URL with the token would be served (206)" \
	test "$(curl -s -o /dev/null -w '%{http_code}' -r 0-0 -H "Authorization: Bearer $tok" "$U/auth/v3.bbi")" = 206
: >"$T/nginx/auth.log"
expect_exit 0 "https /auth/ with [fetch] bearer-token-file" B stage "$S/auth/v3.bbi" --json
check "token: bank B holds v3" holds B big-3
check "token: every request carried the token and was answered 206" \
	test "$(authlog "$TLS_PORT" /auth/v3.bbi | sort -u)" = "\"Bearer $tok\"" -a \
	"$(awk -F '\t' '$3 != 206' "$T/nginx/auth.log" | wc -l)" = 0

# A client certificate: /mtls/ wants one that the client CA signed.
hb=$(hashp B)
stb=$(bankstate B)
conf "ca-file = /etc/bootbank/server-ca.pem
"
refused "https /mtls/ without a client certificate" 8 \
	"'$S/mtls/v2.bbi': bytes 0-127: HTTP 403 (the server refused access without credentials: [fetch] client-cert and client-key, or bearer-token-file)" \
	B stage "$S/mtls/v2.bbi"
conf "ca-file = /etc/bootbank/server-ca.pem
client-cert = /etc/bootbank/rogue-client.crt
client-key = /etc/bootbank/rogue-client.key
"
: >"$T/nginx/auth.log"
refused "https /mtls/ with a client certificate of another CA" 8 \
	"'$S/mtls/v2.bbi': bytes 0-127: HTTP 400 (bad request; a server that checks client certificates says so when it does not trust [fetch] client-cert)" \
	B stage "$S/mtls/v2.bbi"
check "rogue certificate: nginx got it, could not verify it and answered 400" \
	test "$(awk -F '\t' '$2 == "/mtls/v2.bbi" { print $3, substr($4, 1, 8) }' "$T/nginx/auth.log" | sort -u)" = '400 "FAILED:'
conf "ca-file = /etc/bootbank/server-ca.pem
client-cert = /etc/bootbank/client.crt
client-key = /etc/bootbank/client.key
"
: >"$T/nginx/auth.log"
expect_exit 0 "https /mtls/ with [fetch] client-cert and client-key" B stage "$S/mtls/v2.bbi" --json
check "client certificate: bank B holds v2" holds B big-2
check "client certificate: every request verified and answered 206" \
	test "$(awk -F '\t' '{ print $2, $3, $4 }' "$T/nginx/auth.log" | sort -u)" = '/mtls/v2.bbi 206 "SUCCESS"'
check "https credentials: bank A untouched all along" test "$(hashp A)" = "$ha"

bk_done
