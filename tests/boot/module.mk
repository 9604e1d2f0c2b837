# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/boot: make check-boot, real boots in QEMU (TCG) with real GRUB, BIOS and UEFI
# (docs/check-boot.md), then the real host: a Debian 12 system with systemd booting from a bank
# (make check-host, tests/host, docs/check-host.md). Its packages are a list of their own
# (scripts/deps.sh ensure-boot), so that plain `make check` never pulls QEMU and firmware.
#   make check-boot [BOOT=FILTER]      e.g. BOOT=uefi/fallback, BOOT="bios rollback": only the
#                                      loader scenarios that match, no host
.PHONY: check-boot check-boot-run

check-boot: ensure-deps
	@scripts/deps.sh ensure-boot
	@$(MAKE) --no-print-directory check-boot-run
	@if [ -z '$(BOOT)' ]; then $(MAKE) --no-print-directory check-host; fi

check-boot-run: $(PROGRAMS)
	@BK_BUILD='$(O)' tests/boot/run.sh $(BOOT)
