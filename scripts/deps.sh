#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Build and test dependencies of bootbank (Debian 12 package names).
#   deps.sh list      print the packages
#   deps.sh print     print the apt-get line that installs what is missing
#   deps.sh install   apt-get update + install everything (root)
#   deps.sh ensure    install what is missing when root; otherwise print the line and fail
#   deps.sh list-boot / ensure-boot   the same for `make check-boot` (tests/boot: QEMU, OVMF,
#                     GRUB for BIOS and UEFI), a list of its own: make deps/check never pull it
#   deps.sh list-deb / ensure-deb     the same for `make deb` and `make check-deb` (debhelper,
#                     lintian, ...: docs/packaging.md), also a list of its own
# When another apt or dpkg holds its locks, each apt-get step waits for them, up to
# BK_APT_LOCK_TIMEOUT seconds (default 300), saying so on stderr, and passes apt the time left
# as DPkg::Lock::Timeout (apt's own wait, which covers the dpkg locks but not the lists lock of
# `apt-get update`). BK_APT_GET (default apt-get) and BK_APT_LOCKS (the lock files) are for
# the tests (tests/integ/deps.sh).
set -eu

APT_GET=${BK_APT_GET:-apt-get}
LOCK_TIMEOUT=${BK_APT_LOCK_TIMEOUT:-300}
APT_LOCKS=${BK_APT_LOCKS:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock}
case $LOCK_TIMEOUT in
'' | *[!0-9]*)
	echo "deps.sh: BK_APT_LOCK_TIMEOUT must be a number of seconds, not '$LOCK_TIMEOUT'" >&2
	exit 2
	;;
esac

PACKAGES="build-essential clang pkg-config
libmount-dev libblkid-dev libfdisk-dev libssl-dev libjson-c-dev libinih-dev libubootenv-dev
libcurl4-openssl-dev nginx curl
libsystemd-dev
libcmocka-dev dbus python3-dbus python3-gi
util-linux fdisk e2fsprogs dosfstools squashfs-tools erofs-utils openssl python3 time
grub-common grub-emu
libubootenv-tool u-boot-tools u-boot-qemu qemu-system-arm xxd systemd-boot strace
scdoc man-db bash-completion
ansible-core openssh-server openssh-client iproute2
pylint yamllint python3-pycodestyle python3-voluptuous"

# make check-boot only. The Debian kernel it boots is fetched with `apt-get download`
# into build/check-boot (never installed on the host).
BOOT_PACKAGES="qemu-system-x86 ovmf seabios grub-pc-bin grub-efi-amd64-bin grub-common grub2-common
mtools dosfstools busybox-static cpio gzip udev fdisk util-linux squashfs-tools openssl python3"

# make deb / make check-deb only (the package's Build-Depends are in debian/control).
DEB_PACKAGES="debhelper dpkg-dev fakeroot lintian mmdebstrap squashfs-tools openssl"

missing() { # PACKAGE...
	for p in "$@"; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || printf '%s ' "$p"
	done
}

# lock_holder: prints "FILE PID" for the first of $APT_LOCKS that a process holds (apt and
# dpkg take them with fcntl F_SETLK; F_GETLK asks without taking it; perl-base is essential,
# python3 may not be installed yet); fails when none is held. PID is 0 or -1 for a holder
# this PID namespace cannot name.
lock_holder() {
	# shellcheck disable=SC2086
	perl -e 'use Fcntl;
		for my $f (@ARGV) {
			open(my $h, "<", $f) or next;
			my $fl = pack("s s x4 q q i x4", F_WRLCK, 0, 0, 0, 0);   # struct flock (LP64)
			fcntl($h, F_GETLK, $fl) or next;
			my ($type, $whence, $start, $len, $pid) = unpack("s s x4 q q i x4", $fl);
			if ($type != F_UNLCK) { print "$f $pid\n"; exit 0 }
		}
		exit 1' $APT_LOCKS
}

# wait_for_locks DEADLINE: returns once no lock of $APT_LOCKS is held, saying while it waits;
# fails at DEADLINE (seconds since the epoch) if one still is.
wait_for_locks() {
	_start=$(date +%s) _said='' _last=0
	while _held=$(lock_holder); do
		_file=${_held% *} _pid=${_held##* }
		_who="process $_pid ($(cat "/proc/$_pid/comm" 2>/dev/null || echo '?'))"
		[ "$_pid" -gt 0 ] || _who="a process outside this PID namespace"
		_now=$(date +%s)
		_waited=$((_now - _start))
		if [ "$_now" -ge "$1" ]; then
			echo "deps.sh: gave up after $_waited s: $_file is still held by $_who." >&2
			echo "deps.sh: let that apt or dpkg finish and run again (BK_APT_LOCK_TIMEOUT=SECONDS waits longer)" >&2
			return 1
		fi
		if [ -z "$_said" ]; then
			echo "deps.sh: another apt or dpkg is running: $_file is held by $_who; waiting for it, up to $LOCK_TIMEOUT s (BK_APT_LOCK_TIMEOUT)" >&2
			_said=1
		elif [ $((_waited - _last)) -ge 10 ]; then
			echo "deps.sh: still waiting for $_file ($_who): $_waited s of $LOCK_TIMEOUT s" >&2
			_last=$_waited
		fi
		sleep 1
	done
	[ -z "$_said" ] || echo "deps.sh: the apt and dpkg locks are free after $(($(date +%s) - _start)) s, going on" >&2
}

# apt_get ARG...: apt-get ARG... once the locks are free, bounded by BK_APT_LOCK_TIMEOUT. apt
# waits for the dpkg locks itself for the time left (DPkg::Lock::Timeout); should apt-get
# fail because another apt took a lock between the wait and its start (the lists lock of
# `apt-get update` has no timeout of its own), it waits again within the same bound.
apt_get() {
	_deadline=$(($(date +%s) + LOCK_TIMEOUT))
	while :; do
		wait_for_locks "$_deadline" || return 1
		_left=$((_deadline - $(date +%s)))
		[ "$_left" -ge 0 ] || _left=0
		_rc=0
		"$APT_GET" -o DPkg::Lock::Timeout="$_left" "$@" || _rc=$?
		[ "$_rc" -ne 0 ] || return 0
		if lock_holder >/dev/null && [ "$(date +%s)" -lt "$_deadline" ]; then
			echo "deps.sh: $APT_GET $1 failed (exit $_rc) while another apt or dpkg holds a lock: waiting to try again" >&2
			continue
		fi
		return "$_rc"
	done
}

apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt_get update -qq
	# shellcheck disable=SC2086
	apt_get install -y -qq --no-install-recommends $1
}

case "${1:-ensure}" in
list)
	echo $PACKAGES
	;;
print)
	# shellcheck disable=SC2086
	m=$(missing $PACKAGES)
	[ -n "$m" ] && echo "apt-get install -y $m"
	exit 0
	;;
install)
	apt_install "$(echo $PACKAGES)"
	;;
ensure)
	# shellcheck disable=SC2086
	m=$(missing $PACKAGES)
	[ -z "$m" ] && exit 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "bootbank needs these packages: $m" >&2
		echo "run as root:  apt-get update && apt-get install -y $m" >&2
		echo "(or: sudo make deps)" >&2
		exit 1
	fi
	echo "installing missing dependencies: $m"
	apt_install "$m"
	;;
list-boot)
	# shellcheck disable=SC2086
	echo $BOOT_PACKAGES
	;;
ensure-boot)
	# shellcheck disable=SC2086
	m=$(missing $BOOT_PACKAGES)
	[ -z "$m" ] && exit 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "make check-boot needs these packages: $m" >&2
		echo "run as root:  apt-get update && apt-get install -y $m" >&2
		exit 1
	fi
	echo "installing missing check-boot dependencies: $m"
	apt_install "$m"
	;;
list-deb)
	# shellcheck disable=SC2086
	echo $DEB_PACKAGES
	;;
ensure-deb)
	# shellcheck disable=SC2086
	m=$(missing $DEB_PACKAGES)
	[ -z "$m" ] && exit 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "make deb needs these packages: $m" >&2
		echo "run as root:  apt-get update && apt-get install -y $m" >&2
		exit 1
	fi
	echo "installing missing packaging dependencies: $m"
	apt_install "$m"
	;;
*)
	echo "usage: deps.sh list|print|install|ensure|list-boot|ensure-boot|list-deb|ensure-deb" >&2
	exit 2
	;;
esac
