#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs every unit test binary (cmocka, TAP output) and every integration script
# (tests/integ/*.sh, TAP-like "ok"/"not ok" lines, exit 77 = skipped), counts the
# individual cases and ends with one "N passed, N failed, N skipped" line.
# Integration scripts run as root inside their own mount namespace (unshare -m).
#   BK_BUILD=build/cc tests/run-tests.sh [FILTER]
set -u
cd "$(dirname "$0")/.."
BK_BUILD=${BK_BUILD:-build/cc}
export BK_BUILD
BANKCTL=$(realpath "$BK_BUILD/bankctl")
export BANKCTL
export CMOCKA_MESSAGE_OUTPUT=TAP
filter=${1:-}
logdir=$BK_BUILD/test-logs
mkdir -p "$logdir"

passed=0 failed=0 skipped=0
failures=()

count() { # name logfile exitcode
	local name=$1 log=$2 rc=$3 ok nok
	ok=$(grep -c '^ok ' "$log")
	nok=$(grep -c '^not ok ' "$log")
	if [ "$rc" -eq 77 ]; then
		skipped=$((skipped + 1))
		printf 'SKIP  %s (%s)\n' "$name" "$(tail -n1 "$log")"
		return
	fi
	if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
		nok=1 # crashed or failed outside a case
	fi
	passed=$((passed + ok))
	failed=$((failed + nok))
	if [ "$nok" -ne 0 ]; then
		failures+=("$name")
		printf 'FAIL  %s: %d passed, %d failed (log: %s)\n' "$name" "$ok" "$nok" "$log"
		grep -E '^not ok|^# ' "$log" | head -n 20 | sed 's/^/      /'
	else
		printf 'PASS  %s: %d\n' "$name" "$ok"
	fi
}

for t in "$BK_BUILD"/tests/unit/test-*; do
	[ -x "$t" ] || continue
	name=unit/$(basename "$t")
	[[ -n $filter && $name != *$filter* ]] && continue
	log=$logdir/$(basename "$t").log
	"$t" >"$log" 2>&1
	count "$name" "$log" $?
done

for t in tests/integ/*.sh; do
	[ -f "$t" ] || continue
	case $(basename "$t") in lib.sh | lib-*.sh) continue ;; esac # sourced helpers, not tests
	name=integ/$(basename "$t" .sh)
	[[ -n $filter && $name != *$filter* ]] && continue
	log=$logdir/integ-$(basename "$t" .sh).log
	if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
		timeout 1800 unshare -m --propagation private bash "$t" >"$log" 2>&1
	else
		timeout 1800 bash "$t" >"$log" 2>&1
	fi
	count "$name" "$log" $?
done

echo
[ ${#failures[@]} -ne 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
