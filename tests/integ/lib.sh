# SPDX-License-Identifier: LGPL-2.1-or-later
# Helpers for integration scripts: TAP-like output, a sandbox root, loop device tracking.
# Source it; every check prints "ok - ..." or "not ok - ..."; the script exits 1 if any failed.
set -u
BANKCTL=${BANKCTL:-$(realpath "${BK_BUILD:-build/cc}/bankctl")}
_bk_failed=0
_bk_loops=()
_bk_loop_files=()
_bk_tmp=$(mktemp -d /tmp/bk-integ-XXXXXX)

bk_cleanup() {
	local i back
	# Detach only devices that still map the file they mapped when tracked: an autoclear
	# device's number may since have been handed to another test running in parallel.
	for i in "${!_bk_loops[@]}"; do
		back=$(losetup -n -O BACK-FILE "${_bk_loops[$i]}" 2>/dev/null | sed 's/ *$//')
		[ -n "$back" ] && [ "$back" = "${_bk_loop_files[$i]}" ] &&
			losetup -d "${_bk_loops[$i]}" 2>/dev/null
	done
	rm -rf "$_bk_tmp"
}
trap bk_cleanup EXIT

bk_skip() { echo "skip: $*"; exit 77; }
bk_need_root() { [ "$(id -u)" -eq 0 ] || bk_skip "needs root"; }
bk_tmp() { echo "$_bk_tmp"; }

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; _bk_failed=1; }

# check DESC CMD...: passes when CMD exits 0
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

# expect_exit CODE DESC CMD...: runs CMD, output in $OUT (stdout) and $ERR (stderr)
expect_exit() {
	local code=$1 desc=$2 rc
	shift 2
	OUT=$("$@" 2>"$_bk_tmp/.stderr")
	rc=$?
	ERR=$(cat "$_bk_tmp/.stderr")
	if [ "$rc" -eq "$code" ]; then
		ok "$desc"
	else
		not_ok "$desc (exit $rc, expected $code; stderr: $ERR)"
	fi
}

# bk_track_loop DEV: detach DEV at exit if it still maps the same backing file.
bk_track_loop() {
	_bk_loops+=("$1")
	_bk_loop_files+=("$(losetup -n -O BACK-FILE "$1" 2>/dev/null | sed 's/ *$//')")
}

bk_done() {
	exit $_bk_failed
}

# nginx from Debian on 127.0.0.1, its prefix, config, pid and logs under DIR:
# bk_nginx_conf DIR <<EOF: DIR/nginx.conf, the common part (root, one worker, pid, logs and
#   temp paths in DIR, .bbi as octet-stream) around stdin, the rest of the http block (log
#   formats, access logs, servers);
# bk_nginx_run DIR PORT: starts it and waits until 127.0.0.1:PORT answers (5 s at most);
#   1 when nginx does not start, 2 when it does not answer;
# bk_nginx_start DIR PORT WWW: one server on 127.0.0.1:PORT serving WWW, its access log
#   DIR/access.log ("URI STATUS BODY-BYTES"), then bk_nginx_run;
# bk_nginx_stop DIR at exit.
bk_nginx_conf() {
	local dir=$1
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<EOF
user root;
daemon on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 64; }
http {
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	types { application/octet-stream bbi; }
$(cat)
}
EOF
}
bk_nginx_run() {
	nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log" || return 1
	for _ in $(seq 50); do
		curl -s -o /dev/null "http://127.0.0.1:$2/" && return 0
		sleep 0.1
	done
	return 2
}
bk_nginx_start() {
	local dir=$1 port=$2 www=$3
	bk_nginx_conf "$dir" <<EOF
	log_format bk '\$uri \$status \$body_bytes_sent';
	access_log $dir/access.log bk;
	server {
		listen 127.0.0.1:$port;
		root $www;
	}
EOF
	bk_nginx_run "$dir" "$port"
}
bk_nginx_stop() {
	local pid
	pid=$(cat "$1/nginx.pid" 2>/dev/null) || return 0
	kill -QUIT "$pid" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
	return 0
}

# ---- the banks of a sandbox disk image (stage.sh, stage-url.sh, stage-url-faults.sh) ------

# After `bankctl --root $root disk init $disk`: bk_disk_banks reads bank A's and B's offsets
# and sizes from $root/var/lib/bootbank/disk.json (into sa za sb zb; 1 when they are not
# there); then, with $disk and $T/mnt:
# bk_bank_range A|B: "OFFSET SIZE";
# bk_bank_hash A|B: the sha256 of the partition's bytes, read straight from the image with
#   O_DIRECT (bankctl attaches and drops its own loop devices); a failed read never looks
#   unchanged;
# bk_in_bank [-w] A|B CMD...: CMD in the bank mounted (read-only unless -w) at $T/mnt, through
#   a loop device of its range that lives for that one command.
bk_disk_banks() {
	read -r sa za sb zb < <(python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
print(" ".join("%d %d" % (p["start"], p["size"]) for p in d["partitions"] if p["part"] in ("bank-a", "bank-b")))' "$root/var/lib/bootbank/disk.json" 2>/dev/null)
	[ -n "${zb:-}" ]
}
bk_bank_range() { if [ "$1" = A ]; then echo "$sa $za"; else echo "$sb $zb"; fi; }
bk_bank_hash() {
	local h off size
	read -r off size < <(bk_bank_range "$1")
	h=$(set -o pipefail; dd if="$disk" iflag=direct,skip_bytes,count_bytes skip="$off" count="$size" bs=1M status=none | sha256sum) || h="unreadable-$RANDOM"
	echo "${h%% *}"
}
# bk_untrack_loop LOOP: detach a loop device we attached and stop tracking it (so the exit
# trap never detaches a device of the same name that someone else attached later)
bk_untrack_loop() {
	local i
	losetup -d "$1"
	for i in "${!_bk_loops[@]}"; do
		[ "${_bk_loops[$i]}" = "$1" ] && unset '_bk_loops[i]'
	done
	return 0
}
bk_in_bank() {
	local ro=-r opt=ro l off size rc
	if [ "$1" = -w ]; then ro= opt=rw; shift; fi
	read -r off size < <(bk_bank_range "$1")
	shift
	l=$(losetup $ro -o "$off" --sizelimit "$size" -f --show "$disk") || return 1
	bk_track_loop "$l"
	if ! mount -o "$opt" "$l" "$T/mnt"; then
		bk_untrack_loop "$l"
		return 1
	fi
	(cd "$T/mnt" && "$@")
	rc=$?
	umount "$T/mnt"
	bk_untrack_loop "$l"
	return $rc
}

# ---- a private system bus and bankd on it (dbus.sh, trust.sh; bench/bankd.sh too) ---------
. "$(dirname "${BASH_SOURCE[0]}")/lib-bus.sh"

# ---- the live-patch sandbox (livepatch.sh, crash-livepatch.sh, remediate.sh) ----------------

# bk_live_sandbox NAME TMPFS-SIZE [TOOL...]: skips unless this can run (live-reader, the tools,
# loop devices, a cgroup2 mount); sets B, READER, SO (the crash injector, or empty), CGROOT; a
# tmpfs NAME at $T holding the sandbox root $root (system.conf for acme-x86_64, the keyring of
# the test PKI in $T/pki), $view, $disk (not created yet) and $T/img; the cgroup $cg
# ($CGROOT/$cgname, cgname NAME-PID). At exit: bk_live_stop when the test defines it, $reader
# and every pid in pids killed, the cgroup's children and itself removed, every revision and
# bank mount, the tmpfs.
bk_live_sandbox() {
	local name=$1 size=$2 t
	shift 2
	B=${BK_BUILD:-build/cc}
	READER=$(realpath "$B/tests/tools/live-reader" 2>/dev/null) || bk_skip "no live-reader (make tests)"
	for t in openssl mksquashfs python3 losetup mkfs.ext4 findmnt "$@"; do
		command -v "$t" >/dev/null || bk_skip "needs $t"
	done
	[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
	CGROOT=$(findmnt -n -o TARGET -t cgroup2 | head -n1)
	[ -n "$CGROOT" ] || bk_skip "no cgroup2 mount"
	SO=$(realpath "$B/tests/crash/bk-crash.so" 2>/dev/null) || SO=
	if [ -n "$SO" ] && ldd "$BANKCTL" | grep -q libasan; then
		export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
	fi
	T=$(bk_tmp)
	pids=()
	reader=
	cg=
	mount -t tmpfs -o size="$size" "$name" "$T" || bk_skip "cannot mount tmpfs"
	root=$T/root
	trap bk_live_cleanup EXIT
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	view=$T/view
	disk=$T/disk.img
	cgname=$name-$$
	mkdir -p "$root/etc/bootbank" "$view" "$T/img"
	mkdir "$CGROOT/$cgname" || bk_skip "cannot create a cgroup under '$CGROOT'"
	cg=$CGROOT/$cgname
	bash "$repo/tests/pki/make-pki.sh" "$T/pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
	cp "$T/pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
	bk_live_conf
}

# bk_live_conf [COMPATIBLE]: (re)write the sandbox's system.conf
bk_live_conf() {
	cat >"$root/etc/bootbank/system.conf" <<EOF
[system]
compatible = ${1:-acme-x86_64}
[keyring]
path = /etc/bootbank/keyring.pem
[livepatch]
freeze-timeout-ms = 1000
EOF
}

unmount_all() {
	local d
	for d in "$root"/run/bootbank/rev/* "$root"/run/bootbank/bank/*; do
		[ -d "$d" ] && umount "$d" 2>/dev/null
	done
	return 0
}

bk_live_cleanup() {
	local p d
	declare -F bk_live_stop >/dev/null && bk_live_stop
	for p in ${reader:-} "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in ${reader:-} "${pids[@]}"; do wait "$p" 2>/dev/null; done
	if [ -n "${cg:-}" ]; then
		for d in "$cg"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
		rmdir "$cg" 2>/dev/null
	fi
	unmount_all
	umount "$T" 2>/dev/null
	bk_cleanup
}

# bc: bankctl on the sandbox root; jq1 EXPR: EXPR of the JSON document d on stdin, printed
bc() { "$BANKCTL" --root "$root" "$@"; }
jq1() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(str(r).lower() if isinstance(r,bool) else r)' "$1"; }

# bk_live_bundle FILE VERSION STAMP FROM [compatible=C] [epoch=N] [build=B] [signer=WHO]
#   [kernel=NAME] [kernel_bytes=N]: $T/img/FILE.bbi, acme-os VERSION, signed by WHO of the test
# PKI (default signer, with the intermediate), live-patching the versions FROM (the inside of
# a JSON list), a live squashfs of files "rev=STAMP" and a random kernel payload.
bk_live_bundle() {
	local file=$1 d=$T/src-$1 version=$2 stamp=$3 from=$4 compatible=acme-x86_64 epoch=1 build=1
	local signer=signer kernel=vmlinuz kernel_bytes=100000 i o
	shift 4
	for o in "$@"; do
		case $o in
		compatible=* | epoch=* | build=* | signer=* | kernel=* | kernel_bytes=*) local "$o" ;;
		*) echo "bk_live_bundle: unknown option '$o'" >&2; return 2 ;;
		esac
	done
	mkdir -p "$d/tree/d"
	for i in 0 1 2 3; do echo "rev=$stamp" >"$d/tree/f00$i"; done
	cp "$d"/tree/f00* "$d/tree/d/"
	mksquashfs "$d/tree" "$d/app.squashfs" -quiet -noappend -all-root >/dev/null
	head -c "$kernel_bytes" /dev/urandom >"$d/vmlinuz"
	cat >"$d/spec.json" <<EOF
{ "name": "acme-os", "version": "$version", "build": "$build", "compatible": "$compatible",
  "security_epoch": $epoch, "live_patch": { "from": [ $from ] },
  "payloads": [
    { "name": "$kernel", "type": "kernel", "source": "vmlinuz" },
    { "name": "app.squashfs", "type": "component", "source": "app.squashfs",
      "live": true, "mountpoint": "/opt/acme" } ] }
EOF
	"$BANKCTL" image build "$d/spec.json" -o "$T/img/$file.bbi" --key "$T/pki/$signer.key" \
		--cert "$T/pki/$signer.crt" $([ "$signer" = signer ] && echo --intermediate "$T/pki/intermediate.crt") >/dev/null
}

# start_reader: the reader workload (tests/tools/live-reader) in the cgroup $cg/app, in its own
# mount namespace with the current revision bound on $view; its pid in $reader, its statistics
# in $T/stats (waits up to 5 s for the first).
start_reader() {
	rm -f "$T/stats"
	(
		echo "$BASHPID" >"$cg/app/cgroup.procs"
		exec unshare -m --propagation private sh -c 'mount --bind "$1" "$2" && exec "$3" "$2" 4 "$4" 200' \
			_ "$root/run/bootbank/current" "$view" "$READER" "$T/stats"
	) &
	reader=$!
	for _ in $(seq 1 100); do [ -s "$T/stats" ] && break; sleep 0.05; done
}
