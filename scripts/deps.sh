#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Build and test dependencies of bootbank (Debian 12 package names).
#   deps.sh list      print the packages
#   deps.sh print     print the apt-get line that installs what is missing
#   deps.sh install   apt-get update + install everything (root)
#   deps.sh ensure    install what is missing when root; otherwise print the line and fail
set -eu

PACKAGES="build-essential clang pkg-config
libmount-dev libblkid-dev libfdisk-dev libssl-dev libjson-c-dev libinih-dev libubootenv-dev
libcmocka-dev
util-linux fdisk e2fsprogs squashfs-tools erofs-utils openssl python3 time
grub-common grub-emu
libubootenv-tool u-boot-tools u-boot-qemu qemu-system-arm xxd systemd-boot"

missing() {
	for p in $PACKAGES; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || printf '%s ' "$p"
	done
}

apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $1
}

case "${1:-ensure}" in
list)
	echo $PACKAGES
	;;
print)
	m=$(missing)
	[ -n "$m" ] && echo "apt-get install -y $m"
	exit 0
	;;
install)
	apt_install "$(echo $PACKAGES)"
	;;
ensure)
	m=$(missing)
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
*)
	echo "usage: deps.sh list|print|install|ensure" >&2
	exit 2
	;;
esac
