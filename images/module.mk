# SPDX-License-Identifier: LGPL-2.1-or-later
# images/: the signed bundle format (manifest, bundle, depot, versions); part of libbootbank.a.
LIBBK_SRCS += $(wildcard images/bk-*.c)
