# SPDX-License-Identifier: LGPL-2.1-or-later
# mountrev/: mount revisions, workloads, switch-over, hooks, partial maintenance mode.
# Every mountrev/bk-*.c is part of libbootbank.a.
LIBBK_SRCS += $(wildcard mountrev/bk-*.c)
