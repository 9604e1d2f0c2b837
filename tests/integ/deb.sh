#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The Debian package in a clean Debian 12 root: install it, run bankctl --version and --help,
# man -w bankctl, the completion, a sandbox stage of a test image; then remove and purge it and
# compare the root with what it was before. Run by `make check-deb` (CI) as
#   tests/integ/deb.sh DIR-WITH-THE-DEB
# In `make check` (no DIR given) it is skipped: the root alone takes about 1.5 min to make
# (mmdebstrap, from the Debian mirrors apt uses here), the package 2 min (docs/packaging.md).
. "$(dirname "$0")/lib.sh"

debdir=${1:-${BK_DEB_DIR:-}}
[ -n "$debdir" ] || bk_skip "no package given (make check-deb builds and tests it)"
bk_need_root
deb=$(ls "$debdir"/bootbank_*.deb 2>/dev/null | head -n1)
[ -f "$deb" ] || { not_ok "a bootbank_*.deb in $debdir"; bk_done; }
# make deb keeps lintian's tags next to the package (scripts/build-deb.sh, which fails on an
# error itself); an E: line there fails this test too, whoever made the directory. lintian is
# in scripts/deps.sh's list-deb, so make check-deb always has the file.
no_lintian_errors() { ! grep -q '^E: ' "$1"; }
if [ -f "$debdir/lintian.txt" ]; then
	check "lintian reports no errors on the package ($debdir/lintian.txt: $(grep -c '^E: ' "$debdir/lintian.txt") E: lines$(grep -m1 '^E: ' "$debdir/lintian.txt" | sed 's/^/, first: /'))" \
		no_lintian_errors "$debdir/lintian.txt"
else
	not_ok "lintian's report next to the package ($debdir/lintian.txt; make deb writes it)"
fi
for t in mmdebstrap unshare mksquashfs openssl; do
	command -v "$t" >/dev/null || bk_skip "$t not installed (scripts/deps.sh ensure-deb)"
done
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
# Mounts (the root's /dev, /proc, /sys) live in a private mount namespace of this script.
if [ -z "${BK_DEB_UNSHARED:-}" ]; then
	BK_DEB_UNSHARED=1 exec unshare -m --propagation private bash "$0" "$@"
fi

T=$(bk_tmp)
repo=$(cd "$(dirname "$0")/../.." && pwd)
root=$T/root

# --- a clean root: minbase plus what the package depends on, man-db and mkfs.ext4 ----------
sources=$(ls /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -n1)
# (the first of alternatives: busybox | busybox-static)
deps=$(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/|[^,]*//g; s/ //g')
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
start=$(date +%s)
if mmdebstrap --quiet --variant=minbase --include="man-db,e2fsprogs,$deps" "$suite" "$root" \
	"$sources" >"$T/mmdebstrap.log" 2>&1; then
	ok "a clean $suite root ($(($(date +%s) - start)) s)"
else
	not_ok "mmdebstrap: $(tail -n 3 "$T/mmdebstrap.log")"
	bk_done
fi

# What the root holds, besides the dpkg database, logs, caches and temporary files, and
# run/mount (libmount's utab, made by any mount through libmount; /run is a tmpfs on a host).
snapshot() {
	(cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp \
		-o -path ./var/lib/dpkg -o -path ./var/log -o -path ./var/cache -o -path ./run/mount \) \
		-prune -o -print) |
		LC_ALL=C sort
}
snapshot >"$T/before.txt"

# The root a mount point of its own (bankctl makes '/' private in its namespace), then the
# kernel's file systems in it.
mount --bind "$root" "$root"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

cp "$deb" "$root/tmp/bootbank.deb"
expect_exit 0 "dpkg -i the package" in_root dpkg -i /tmp/bootbank.deb
expect_exit 0 "bankctl --version" in_root bankctl --version
check "--version names the package's version" \
	grep -qx "bankctl $(dpkg-deb -f "$deb" Version)" <<<"$OUT"
expect_exit 0 "bankctl --help" in_root bankctl --help
check "--help lists the verbs" grep -q '^  stage IMAGE.bbi' <<<"$OUT"
expect_exit 0 "bankctl livepatch --help" in_root bankctl livepatch --help
expect_exit 0 "man -w bankctl" in_root man -w bankctl
check "man -w finds bankctl(8) in /usr/share/man" test "$OUT" = /usr/share/man/man8/bankctl.8.gz
for page in bootbank-system.conf.5 bootbank-bundle.5 bootbank-hooks.7; do
	expect_exit 0 "man -w ${page%.*}" in_root man -w "${page%.*}"
	check "$page is installed" test "$OUT" = "/usr/share/man/man${page##*.}/$page.gz"
done
expect_exit 0 "man bankctl renders" in_root env MANWIDTH=80 man --warnings bankctl
expect_exit 0 "bankd --version" in_root bankd --version
expect_exit 0 "man -w bankd" in_root man -w bankd
check "bankd.service is installed" test -f "$root/lib/systemd/system/bankd.service"
check "the D-Bus policy is installed" \
	test -f "$root/usr/share/dbus-1/system.d/org.bootbank.Manager1.conf"
check "the D-Bus activation file is installed" \
	test -f "$root/usr/share/dbus-1/system-services/org.bootbank.Manager1.service"
check "the completion is where bash-completion looks" \
	test -f "$root/usr/share/bash-completion/completions/bankctl"
expect_exit 0 "the completion loads in bash" in_root bash -c \
	'. /usr/share/bash-completion/completions/bankctl && complete -p bankctl'
check "the grub.d generator is a conffile" \
	grep -qx /etc/grub.d/10_bootbank "$root/var/lib/dpkg/info/bootbank.conffiles"
check "the example system.conf is documentation" \
	test -f "$root/usr/share/doc/bootbank/examples/system.conf"

# --- a sandbox stage of a test image, with the installed bankctl ---------------------------
bash "$repo/tests/pki/make-pki.sh" "$root/tmp/pki" >/dev/null 2>&1 || not_ok "test PKI"
mkdir -p "$root/tmp/img/tree/etc" "$root/tmp/sb/etc/bootbank"
echo "demo-os 1.0.0" >"$root/tmp/img/tree/etc/os-release"
mksquashfs "$root/tmp/img/tree" "$root/tmp/img/root.squashfs" -quiet -noappend -all-root >/dev/null
head -c 100000 /dev/urandom >"$root/tmp/img/vmlinuz"
head -c 50000 /dev/urandom >"$root/tmp/img/initrd.img"
cat >"$root/tmp/img/spec.json" <<-EOS
{ "name": "demo-os", "version": "1.0.0", "build": "b1", "compatible": "demo-x86_64",
  "security_epoch": 1, "payloads": [
    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
    { "name": "initrd.img", "type": "initrd", "source": "initrd.img" },
    { "name": "root.squashfs", "type": "rootfs", "source": "root.squashfs" } ] }
EOS
cp "$root/tmp/pki/keyring.pem" "$root/tmp/sb/etc/bootbank/keyring.pem"
printf '[system]\ncompatible = demo-x86_64\n' >"$root/tmp/sb/etc/bootbank/system.conf"
expect_exit 0 "image build" in_root bankctl image build /tmp/img/spec.json -o /tmp/img/demo.bbi \
	--key /tmp/pki/signer.key --cert /tmp/pki/signer.crt --intermediate /tmp/pki/intermediate.crt
truncate -s 64M "$root/tmp/sb/disk.img"
expect_exit 0 "disk init of an image file in the sandbox" in_root bankctl --root /tmp/sb disk init \
	/tmp/sb/disk.img --boot-size 8M --bank-size 16M
expect_exit 0 "stage the test image in the sandbox" in_root bankctl --root /tmp/sb stage /tmp/img/demo.bbi
check "stage wrote bank B" grep -q "staged" <<<"$OUT"
expect_exit 0 "status in the sandbox" in_root bankctl --root /tmp/sb --json status
check "bank B holds demo-os 1.0.0" grep -q '"1.0.0"' <<<"$OUT"

# State on the root itself, for the purge to remove: an administrator's system.conf and a
# workload (var/lib/bootbank, run/bootbank).
mkdir -p "$root/etc/bootbank"
printf '[system]\ncompatible = demo-x86_64\n' >"$root/etc/bootbank/system.conf"
expect_exit 0 "workload add on the root (state in /var/lib/bootbank)" \
	in_root bankctl workload add web --unit web.service --view /srv/web
check "/var/lib/bootbank exists" test -d "$root/var/lib/bootbank"

# --- remove, purge -------------------------------------------------------------------------
expect_exit 0 "dpkg --remove" in_root dpkg --remove bootbank
check "bankctl is gone after remove" test ! -e "$root/usr/sbin/bankctl"
check "the conffile stays after remove" test -e "$root/etc/grub.d/10_bootbank"
expect_exit 0 "dpkg --purge" in_root dpkg --purge bootbank
check "the conffile is gone after purge" test ! -e "$root/etc/grub.d/10_bootbank"
check "/var/lib/bootbank is gone after purge" test ! -e "$root/var/lib/bootbank"
check "/run/bootbank is gone after purge" test ! -e "$root/run/bootbank"
check "the administrator's system.conf stays (not the package's)" \
	test -f "$root/etc/bootbank/system.conf"
rm -rf "$root/etc/bootbank"
umount -R "$root" 2>/dev/null
snapshot >"$T/after.txt"
check "nothing else is left behind: $(diff "$T/before.txt" "$T/after.txt" | grep '^[<>]' | head -n 5 | tr '\n' ' ')" \
	diff -q "$T/before.txt" "$T/after.txt"

bk_done
