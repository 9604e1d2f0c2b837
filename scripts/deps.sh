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
set -eu

PACKAGES="build-essential clang pkg-config
libmount-dev libblkid-dev libfdisk-dev libssl-dev libjson-c-dev libinih-dev libubootenv-dev
libcmocka-dev
util-linux fdisk e2fsprogs dosfstools squashfs-tools erofs-utils openssl python3 time
grub-common grub-emu
libubootenv-tool u-boot-tools u-boot-qemu qemu-system-arm xxd systemd-boot strace
scdoc man-db bash-completion"

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
