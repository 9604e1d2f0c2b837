# SPDX-License-Identifier: LGPL-2.1-or-later
# A private system bus and bankd on it, for tests/integ/lib.sh (dbus.sh, trust.sh) and
# bench/bankd.sh. Source it; it defines functions only (no temp dir, no trap).

# bk_bus_start DIR: a system-type dbus-daemon of its own (config, socket and log in DIR) with
#   bootbank's policy file from the tree; its address in BK_BUS, its pid in BK_BUS_PID;
#   1 when it does not start (the log in DIR/log). Stopped by bk_bus_stop.
# bk_bankd_start ROOT LOG [ARGS...]: bankd (BANKD) serving ROOT on BK_BUS, its output appended
#   to LOG; waits until it owns its name (it recovers before it takes it); pid in
#   BK_BANKD_PID; 1 when it does not get there (exited, or 15 s).
bk_bus_start() {
	local dir=$1 repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	mkdir -p "$dir"
	BK_BUS=unix:path=$dir/socket
	cat >"$dir/system.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>$BK_BUS</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>$repo/data/dbus/org.bootbank.Manager1.conf</include>
</busconfig>
EOF
	dbus-daemon --config-file="$dir/system.conf" --nofork --nopidfile >"$dir/log" 2>&1 &
	BK_BUS_PID=$!
	for _ in $(seq 100); do [ -S "$dir/socket" ] && return 0; sleep 0.05; done
	return 1
}
bk_bus_stop() {
	[ -n "${BK_BUS_PID:-}" ] || return 0
	kill -9 "$BK_BUS_PID" 2>/dev/null
	wait "$BK_BUS_PID" 2>/dev/null
	BK_BUS_PID=
	return 0
}
bk_bankd_start() {
	local root=$1 log=$2
	shift 2
	"$BANKD" --root "$root" --bus-address "$BK_BUS" "$@" >>"$log" 2>&1 &
	BK_BANKD_PID=$!
	for _ in $(seq 300); do
		busctl --address="$BK_BUS" list --no-pager 2>/dev/null | grep -q '^org\.bootbank\.Manager1 ' && return 0
		kill -0 "$BK_BANKD_PID" 2>/dev/null || break
		sleep 0.05
	done
	return 1
}
