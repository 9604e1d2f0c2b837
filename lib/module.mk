# SPDX-License-Identifier: LGPL-2.1-or-later
# lib/: the core of libbootbank.a (every lib/*.c is part of it).
LIBBK_SRCS += $(wildcard lib/*.c)
