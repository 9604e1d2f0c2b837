# SPDX-License-Identifier: LGPL-2.1-or-later
# bootloader-hooks/: boot state backends (one operations table each, bk-boot.c is the registry)
# and the scripts the loaders run. Every bootloader-hooks/bk-*.c is part of libbootbank.a.
LIBBK_SRCS += $(wildcard bootloader-hooks/bk-*.c)
