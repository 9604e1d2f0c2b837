/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Debug tracing (library and programs) and program logging (programs only).
 *
 * Tracing, util-linux style: LIBBOOTBANK_DEBUG=all or a comma list of mask names
 * (LIBBOOTBANK_DEBUG=fs,lock). The mask is tested before any formatting, so a disabled
 * trace costs one load and one branch. Output goes to stderr prefixed "bootbank: <mask>: ".
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

#include "bk-cleanup.h"

enum bk_debug_mask {
	BK_DEBUG_INIT = 1 << 0, /* the mask itself was read */
	BK_DEBUG_FS = 1 << 1,
	BK_DEBUG_LOCK = 1 << 2,
	BK_DEBUG_CONFIG = 1 << 3,
	BK_DEBUG_CRYPTO = 1 << 4,
	BK_DEBUG_JSON = 1 << 5,
	BK_DEBUG_BUNDLE = 1 << 6,
	BK_DEBUG_DISK = 1 << 7,
	BK_DEBUG_MOUNT = 1 << 8,
	BK_DEBUG_BANK = 1 << 9,
	BK_DEBUG_BOOT = 1 << 10,
	BK_DEBUG_SELECT = 1 << 11,
	BK_DEBUG_REV = 1 << 12,
	BK_DEBUG_ALL = 0xffff,
};

extern int bk_debug_mask;

/* Read LIBBOOTBANK_DEBUG once (idempotent; called by every BK_DBG before its first use). */
void bk_debug_init(void);

void bk_debug_print(const char *mask, const char *fmt, ...) _printf_(2, 3);

#define BK_DBG(m, ...)                                   \
	do {                                             \
		if (!(bk_debug_mask & BK_DEBUG_INIT))    \
			bk_debug_init();                 \
		if (bk_debug_mask & BK_DEBUG_##m)        \
			bk_debug_print(#m, __VA_ARGS__); \
	} while (0)

/*
 * Program logging (never called from lib/ code paths other than programs' mains).
 * Messages go to stderr; when JOURNAL_STREAM is set, each line starts with "<N>" (the syslog
 * level, parsed by journald). Levels above bk_log_max_level are dropped before formatting.
 */
extern int bk_log_max_level;

/* Set the program name used as message prefix ("bankctl"). */
void bk_log_set_program(const char *name);

/* Parse "err", "warning", "info", "debug" or a number 0..7; <0 (-EINVAL) when unknown. */
int bk_log_level_from_string(const char *s);

void bk_log_internal(int level, const char *fmt, ...) _printf_(2, 3);

#define bk_log(level, ...)                                     \
	do {                                                   \
		if ((level) <= bk_log_max_level)               \
			bk_log_internal((level), __VA_ARGS__); \
	} while (0)

/* Log and return r (a negative errno), so callers can `return bk_log_errno(LOG_ERR, r, ...)`. */
#define bk_log_errno(level, r, ...)           \
	({                                    \
		int _r = (r);                 \
		bk_log((level), __VA_ARGS__); \
		_r < 0 ? _r : -_r;            \
	})
