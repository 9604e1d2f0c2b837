# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/host: make check-host, a real Debian 12 system with systemd booting from a bank in QEMU
# (TCG, BIOS and UEFI) and assessing its own boots (docs/check-host.md). Needs the check-boot
# packages and mmdebstrap; the root filesystem is cached under build/check-host/cache; this
# project's Debian package (make deb, build/deb; or the one BK_HOST_DEB names, built already,
# as CI's make check-deb leaves it) is what the root gets.
.PHONY: check-host check-host-run

check-host: ensure-deps
	@scripts/deps.sh ensure-boot
	@command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y mmdebstrap
	@if [ -z "$$BK_HOST_DEB" ]; then $(MAKE) --no-print-directory deb; fi
	@$(MAKE) --no-print-directory check-host-run

check-host-run: $(PROGRAMS)
	@BK_BUILD='$(O)' tests/host/run.sh
