/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bk-log.h"

int bk_debug_mask;
int bk_log_max_level = LOG_INFO;
static const char *program = "bootbank";

static const struct {
	const char *name;
	int mask;
} debug_names[] = {
	{ "fs", BK_DEBUG_FS },	       { "lock", BK_DEBUG_LOCK },     { "config", BK_DEBUG_CONFIG },
	{ "crypto", BK_DEBUG_CRYPTO }, { "json", BK_DEBUG_JSON },     { "bundle", BK_DEBUG_BUNDLE },
	{ "disk", BK_DEBUG_DISK },     { "mount", BK_DEBUG_MOUNT },   { "bank", BK_DEBUG_BANK },
	{ "boot", BK_DEBUG_BOOT },     { "select", BK_DEBUG_SELECT }, { "rev", BK_DEBUG_REV },
	{ "all", BK_DEBUG_ALL },
};

void bk_debug_init(void)
{
	const char *env;
	int mask = 0;

	if (bk_debug_mask & BK_DEBUG_INIT)
		return;

	env = secure_getenv("LIBBOOTBANK_DEBUG");
	if (env) {
		const char *p = env;

		while (*p) {
			size_t len = strcspn(p, ",");

			for (size_t i = 0; i < BK_ELEMENTSOF(debug_names); i++)
				if (strlen(debug_names[i].name) == len &&
				    strncmp(debug_names[i].name, p, len) == 0)
					mask |= debug_names[i].mask;
			p += len;
			if (*p == ',')
				p++;
		}
	}
	bk_debug_mask = mask | BK_DEBUG_INIT;
}

void bk_debug_print(const char *mask, const char *fmt, ...)
{
	char lower[16];
	size_t i;
	va_list ap;

	for (i = 0; mask[i] && i < sizeof(lower) - 1; i++)
		lower[i] =
			(char) (mask[i] >= 'A' && mask[i] <= 'Z' ? mask[i] - 'A' + 'a' : mask[i]);
	lower[i] = '\0';

	fprintf(stderr, "%d: bootbank: %8s: ", (int) getpid(), lower);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void bk_log_set_program(const char *name)
{
	program = name;
}

int bk_log_level_from_string(const char *s)
{
	static const char *const names[] = { "emerg",	"alert",  "crit", "err",
					     "warning", "notice", "info", "debug" };

	if (!s)
		return -EINVAL;
	if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
		return s[0] - '0';
	for (size_t i = 0; i < BK_ELEMENTSOF(names); i++)
		if (strcmp(s, names[i]) == 0)
			return (int) i;
	if (strcmp(s, "error") == 0)
		return LOG_ERR;
	return -EINVAL;
}

void bk_log_internal(int level, const char *fmt, ...)
{
	va_list ap;

	if (getenv("JOURNAL_STREAM"))
		fprintf(stderr, "<%d>", level);
	fprintf(stderr, "%s: ", program);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
