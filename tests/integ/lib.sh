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
