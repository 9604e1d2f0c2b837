/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Image versions and their ordering (docs/bundle-format.md, "Version ordering"):
 * N(.N)* with 1..8 numeric components, optionally -PRE (dot-separated [0-9A-Za-z-]
 * identifiers), at most BK_VERSION_MAX_LEN bytes. Numeric components compare numerically
 * (missing ones count as 0: 1.2 == 1.2.0, 1.10.0 > 1.9.2); a pre-release sorts below the
 * release; pre-release identifiers follow SemVer 2.0. Pure functions, no I/O.
 */
#pragma once

#include <stdbool.h>

#define BK_VERSION_MAX_LEN	  64
#define BK_VERSION_MAX_COMPONENTS 8

/* True when s is a version by the grammar above. */
bool bk_version_is_valid(const char *s);

/*
 * Compare two versions: <0 when a is lower, 0 when equal in order (1.2 and 1.2.0), >0 when
 * higher. A total order: a string that is not a valid version (or NULL) sorts below every valid
 * version, and invalid strings compare among themselves by strcmp (NULL lowest).
 */
int bk_version_compare(const char *a, const char *b);
