#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# How `make check-boot` waits for a boot (issue 16, item 11), without QEMU: a boot is given
# up when its console stalls (no output for BK_BOOT_STALL_TIMEOUT seconds) or at the hard cap
# (BK_BOOT_TIMEOUT), never at a fixed time while it keeps printing. Each boot goes through
# vm_boot of tests/boot/lib.sh and tests/boot/vm.py exactly as check-boot runs them, with
# tests/boot/fake-qemu.py on PATH as qemu-system-x86_64 (it serves QMP and prints a console
# as FAKE_QEMU says):
#   - a slow boot that prints steadily for four times the stall timeout passes
#     (BK_TEST_BOOT_VM_STEADY=SECONDS makes it longer, e.g. 150 to outlast the 120 s that
#     used to be the fixed limit);
#   - a boot whose console stalls is given up a stall timeout after its last output, says so
#     with the console's last line, and its QEMU is killed;
#   - a boot that prints forever is given up at the hard cap, and says that.
. "$(dirname "$0")/lib.sh"

REPO=$(realpath "$(dirname "$0")/../..")
command -v python3 >/dev/null || bk_skip "python3 is not installed"
T=$(bk_tmp)
mkdir -p "$T/bin"
ln -s "$REPO/tests/boot/fake-qemu.py" "$T/bin/qemu-system-x86_64"
export PATH=$T/bin:$PATH
export FAKE_QEMU_PIDFILE=$T/qemu.pid
unset BK_BOOT_TIMEOUT BK_BOOT_STALL_TIMEOUT

# boot NAME: one boot with vm_boot (FW=bios, the fake disk in $T); the JSON in $RES, the
# seconds it took in $SECS.
boot() {
	local t0
	t0=$(date +%s.%N)
	rm -f "$FAKE_QEMU_PIDFILE"
	# shellcheck disable=SC2016
	RES=$(FW=bios D=$T bash -c '. "$1/tests/boot/lib.sh"; vm_boot "$2" none; echo "$RES"' _ "$REPO" "$1")
	SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}
# res FIELD: a field of $RES
res() {
	python3 -c 'import json, sys
v = json.loads(sys.argv[1]).get(sys.argv[2])
print("" if v is None else "; ".join(v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else v)' "$RES" "$1"
}
between() { awk -v s="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(s >= lo && s < hi) }'; }
qemu_gone() {
	local pid
	pid=$(cat "$FAKE_QEMU_PIDFILE" 2>/dev/null) || return 1
	! kill -0 "$pid" 2>/dev/null
}

# 1. Slow but steady: a line every 0.5 s for 4x the stall timeout (12 s by default).
steady=${BK_TEST_BOOT_VM_STEADY:-12}
FAKE_QEMU="steady 0.5 $steady" BK_BOOT_STALL_TIMEOUT=3 boot steady
check "a boot printing steadily for $steady s (stall timeout 3 s) powers off by itself ($SECS s; errors: $(res errors))" \
	[ "$(res powered_off)" = true ]
check "the steady boot is not timed out" [ "$(res timed_out)" = false ]
check "the steady boot took its $steady s ($SECS s)" between "$SECS" "$steady" "$((steady + 30))"
check "the steady boot's longest silence is below the stall timeout ($(res longest_silence) s)" \
	between "$(res longest_silence)" 0 3
check "the steady boot's report was read (bank $(res bank), mark-good rc $(res mark_good_rc))" \
	[ "$(res bank) $(res mark_good_rc)" = "A 0" ]
check "the steady boot's console is in its log" grep -q "fake console line 20 " "$T/steady.log"

# 2. Stalled: output for 1 s, then nothing.
FAKE_QEMU="stall 1" BK_BOOT_STALL_TIMEOUT=3 boot stall
check "a stalled boot fails (powered off: $(res powered_off))" [ "$(res powered_off)" = false ]
check "the stalled boot is given up 3 s after its last output ($SECS s)" between "$SECS" 3.5 10
check "the stalled boot is reported as stalled" [ "$(res stalled) $(res timed_out)" = "true true" ]
check "the message says the console stalled, for how long and its last line: $(res errors)" \
	grep -q "the console stalled: no output for 3 s (--stall, BK_BOOT_STALL_TIMEOUT), [0-9]* s into the boot; its last line: 'fake console: the last line before the stall'" <<<"$(res errors)"
check "the stalled boot's QEMU was killed" qemu_gone

# 3. Printing forever: given up at the hard cap, not as a stall.
FAKE_QEMU="forever 0.3" BK_BOOT_STALL_TIMEOUT=3 BK_BOOT_TIMEOUT=6 boot forever
check "a boot printing forever is given up at the hard cap BK_BOOT_TIMEOUT=6 ($SECS s)" between "$SECS" 6 15
check "it is timed out, not stalled" [ "$(res timed_out) $(res stalled)" = "true false" ]
check "the message names the hard cap: $(res errors)" \
	grep -q "still running after 6 s, the hard cap (--timeout, BK_BOOT_TIMEOUT), although the console printed 0\.[0-9] s ago; its last line: 'fake console line" <<<"$(res errors)"
check "its QEMU was killed" qemu_gone

bk_done
