#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# make install DESTDIR=: what a real host needs is installed (docs/systemd.md,
# docs/initramfs.md: the units, the tmpfiles, the initramfs-tools hook and boot method, the
# health-check directories), and every file of data/ the install recipe reads is tracked by git
# (make deb and a fresh clone build from tracked files only: an ignored file, such as
# data/tmpfiles.d/ under the "*.d" pattern, installs here and breaks the package).
. "$(dirname "$0")/lib.sh"

repo=$(cd "$(dirname "$0")/../.." && pwd)
T=$(bk_tmp)
build=$(realpath "${BK_BUILD:-build/cc}")
if make -C "$repo" --no-print-directory install DESTDIR="$T/dest" PREFIX=/usr O="$build" \
	>"$T/install.log" 2>&1; then
	ok "make install DESTDIR= PREFIX=/usr"
else
	not_ok "make install: $(tail -n 3 "$T/install.log")"
fi
for f in /usr/sbin/bankctl /usr/lib/systemd/system/bootbank-assess.service \
	/usr/lib/systemd/system/bootbank-deadline.timer /usr/lib/systemd/system/bootbank-deadline.service \
	/usr/lib/systemd/system/bootbank-rev-restore.service /usr/lib/tmpfiles.d/bootbank.conf \
	/usr/share/initramfs-tools/hooks/bootbank /usr/share/initramfs-tools/scripts/bootbank \
	/usr/share/bootbank/systemd/workload.conf.example /usr/sbin/bankd \
	/usr/lib/systemd/system/bankd.service /usr/share/dbus-1/system.d/org.bootbank.Manager1.conf \
	/usr/share/dbus-1/system-services/org.bootbank.Manager1.service; do
	check "installs $f" test -s "$T/dest$f"
done
check "bankd.service starts the installed bankd" grep -qx 'ExecStart=/usr/sbin/bankd' "$T/dest/usr/lib/systemd/system/bankd.service"
check "the bus activation file names bankd.service" grep -qx 'SystemdService=bankd.service' "$T/dest/usr/share/dbus-1/system-services/org.bootbank.Manager1.service"
for d in /etc/bootbank/health.d/required.d /etc/bootbank/health.d/wanted.d; do
	check "makes $d" test -d "$T/dest$d"
done

if ! git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
	echo "# not a git checkout: the tracked-files check is skipped"
	bk_done
fi
srcs=$(make -C "$repo" --no-print-directory -n install DESTDIR=/nonexistent PREFIX=/usr O="$build" 2>/dev/null |
	grep -o 'data/[A-Za-z0-9_./-]*' | sort -u)
tracked() { git -C "$repo" ls-files --error-unmatch "$1" >/dev/null 2>&1; }
n=0
for f in $srcs; do
	[ -f "$repo/$f" ] || continue
	n=$((n + 1))
	check "$f (installed) is tracked by git" tracked "$f"
done
check "the install recipe reads files of data/ ($n)" test "$n" -ge 6
bk_done
