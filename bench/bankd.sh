#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/bankd: the daemon's Status round trip through the bus (p50, p99 over N calls on one
# connection, tests/integ/bankd-client.py) against `bankctl --json status` (a process per call,
# N runs) in the same run, on a sandbox whose two banks hold images (A good and booted, B
# staged) and a private dbus-daemon; the same without the banks' record copies (Status then
# mounts each bank: bankd goes back to its mount namespace after each call); and bankd's VmRSS
# idle after start and after the calls. Targets (design brief §6): p99 under 5 ms, idle RSS
# under 8 MiB. Needs root (loop devices) and dbus-daemon, python3-dbus; everything is stopped
# and detached at the end. N (default 1000). BENCH_STRICT=1: exit 1 when a target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
BK_BUILD=${BK_BUILD:-build/cc}
BANKCTL=$(realpath "$BK_BUILD/bankctl")
BANKD=$(realpath "$BK_BUILD/bin/bankd")
N=${N:-1000}
PY=/usr/bin/python3
if [ "$(id -u)" -ne 0 ]; then
	echo "bench/bankd: needs root (loop devices), skipped"
	exit 0
fi
for t in mksquashfs losetup dbus-daemon busctl; do
	command -v "$t" >/dev/null || { echo "bench/bankd: needs $t" >&2; exit 1; }
done
$PY -c 'import dbus' 2>/dev/null || { echo "bench/bankd: needs python3-dbus" >&2; exit 1; }
mkdir -p build/bench
run=$(mktemp -d "$PWD/build/bench/bankd.XXXXXX")
dbus_pid= bankd_pid=
cleanup() {
	local l
	[ -n "$bankd_pid" ] && kill "$bankd_pid" 2>/dev/null && wait "$bankd_pid" 2>/dev/null
	[ -n "$dbus_pid" ] && kill "$dbus_pid" 2>/dev/null && wait "$dbus_pid" 2>/dev/null
	for l in $(losetup -j "$run/disk.img" 2>/dev/null | cut -d: -f1); do losetup -d "$l" 2>/dev/null || true; done
	rm -rf "$run"
}
trap cleanup EXIT
root=$run/root
. bench/lib/images.sh
bench_two_banks "$run" "$root"
loop=$BENCH_LOOP

. tests/integ/lib-bus.sh
bk_bus_start "$run/bus" || { echo "bench/bankd: dbus-daemon does not start: $(cat "$run/bus/log")" >&2; exit 1; }
dbus_pid=$BK_BUS_PID
addr=$BK_BUS
bk_bankd_start "$root" "$run/bankd.log" --log-level warning || { echo "bench/bankd: bankd does not start: $(tail -n 3 "$run/bankd.log")" >&2; exit 1; }
bankd_pid=$BK_BANKD_PID
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$bankd_pid/status"; }
sleep 0.5
rss0=$(rss)

echo "bench/bankd: Status over a private bus, $N calls each (2 banks with images, file backend)"
bus=$($PY tests/integ/bankd-client.py "$addr" bench "$N")
read -r p50 p99 < <($PY -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.3f %.3f" % (d["p50_ms"], d["p99_ms"]))' "$bus")
printf '%-38s p50 %7.3f ms   p99 %7.3f ms\n' "bankd Status (D-Bus round trip)" "$p50" "$p99"
bench_time "$N" "bankctl --json status (a process)" "$BANKCTL" --root "$root" --json status
rss1=$(rss)
mv "$root/var/lib/bootbank/banks" "$root/var/lib/bootbank/banks.off"
nocopy=$($PY tests/integ/bankd-client.py "$addr" bench 100)
$PY -c 'import json,sys; d=json.loads(sys.argv[1]); print("%-38s p50 %7.3f ms   p99 %7.3f ms" % ("bankd Status, no record copies (100)", d["p50_ms"], d["p99_ms"]))' "$nocopy"
mv "$root/var/lib/bootbank/banks.off" "$root/var/lib/bootbank/banks"
same_ns=no
[ "$(readlink "/proc/$bankd_pid/ns/mnt")" = "$(readlink /proc/self/ns/mnt)" ] && same_ns=yes
echo "bankd in the mount namespace it started in after those: $same_ns"
rss2=$(rss)
echo "bankd VmRSS: idle after start $((rss0 / 1024)).$(((rss0 % 1024) * 10 / 1024)) MiB ($rss0 kB), after the calls $rss1 kB, after the mounting calls $rss2 kB"
losetup -d "$loop"
judge() { awk "BEGIN { exit !($1) }" && echo met || echo MISSED; }
p99_ok=$(judge "$p99 < 5")
rss_ok=$(judge "$rss0 < 8192")
echo "  target (design §6): Status p99 under 5 ms (got $p99 ms): $p99_ok"
echo "  target (design §6): idle RSS under 8 MiB (got $rss0 kB): $rss_ok"
if [ "${BENCH_STRICT:-0}" = 1 ]; then
	[ "$p99_ok" = met ] && [ "$rss_ok" = met ] && [ "$same_ns" = yes ] || exit 1
fi
