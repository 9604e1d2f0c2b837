# SPDX-License-Identifier: LGPL-2.1-or-later
# bootloader-hooks/uboot/: the U-Boot boot script (boot.cmd, built into boot.scr with mkimage
# by the installer or `make uboot-script`) and the libubootenv flags the `uboot` backend
# (bootloader-hooks/bk-boot-uboot.c) needs in every program and test that links
# libbootbank.a.
BK_CPPFLAGS += $(shell $(PKG_CONFIG) --cflags libubootenv 2>/dev/null)
LIBS += $(shell $(PKG_CONFIG) --libs libubootenv 2>/dev/null)

.PHONY: uboot-script
uboot-script: $(O)/bootloader-hooks/uboot/boot.scr

$(O)/bootloader-hooks/uboot/boot.scr: bootloader-hooks/uboot/boot.cmd
	@mkdir -p $(dir $@)
	$(call quiet,MKIMAGE,$@)mkimage -A arm64 -O linux -T script -C none -n bootbank \
		-d $< $@ >/dev/null
