/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the tools in tests/tools share (header only: every .c file there is a program): the
 * error line, the "WORD REST" split of their input lines, and a boot state backend opened
 * beneath a root, to save a state to or load one from, printed in the model's compact text
 * form ("A=good:2:0:1 B=trying:3:1:1 floor=1 pin=none", bk_bootstate_format()).
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bk-boot.h"
#include "bk-config.h"
#include "bk-err.h"
#include "bk-select.h"

#define TOOL_LINE_MAX 512

/* "PROG: WHAT: MESSAGE" on stderr (err's message, else strerror(-r)); the exit code for r. */
static inline int tool_fail(const char *prog, const char *what, int r, const struct bk_err *err)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, err && err->code < 0 ? err->msg : strerror(-r));
	return bk_exit_code_from_errno(r);
}

/* Drop line's newline and split it at the first blank: *rest gets the rest. -EINVAL: none. */
static inline int tool_split_word(char *line, char **rest)
{
	char *sp;

	line[strcspn(line, "\n")] = '\0';
	sp = strchr(line, ' ');
	if (!sp)
		return -EINVAL;
	*sp = '\0';
	*rest = sp + 1;
	return 0;
}

/* Print "PREFIX STATE" (just STATE when prefix is NULL) and a newline; 0 or -EINVAL/-ENOBUFS. */
static inline int tool_print_state(const char *prefix, const struct bk_bootstate *s)
{
	char text[BK_BOOTSTATE_TEXT_MAX];
	int r;

	r = bk_bootstate_format(s, text, sizeof(text));
	if (r < 0)
		return r;
	if (prefix)
		printf("%s %s\n", prefix, text);
	else
		printf("%s\n", text);
	return 0;
}

/* A backend opened beneath a root, with the configuration it was given. */
struct tool_backend {
	int fd; /* the root */
	struct bk_config config;
	struct bk_boot *boot;
};

/*
 * Open backend name beneath root; with load_config, ROOT/etc/bootbank/system.conf is read
 * when it exists. Returns 0, or -errno with err set (nothing left open).
 */
static inline int tool_backend_open(struct tool_backend *t, const char *name, const char *root,
				    bool load_config, struct bk_err *err)
{
	struct bk_boot_env env;
	int r;

	t->boot = NULL;
	t->fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", root);
	r = bk_config_init(&t->config);
	if (r < 0) {
		(void) close(t->fd);
		return bk_err_set(err, r, "out of memory");
	}
	if (load_config) {
		r = bk_config_load_at(&t->config, t->fd, "etc/bootbank/system.conf",
				      "etc/bootbank/system.conf", err);
		if (r == -ENOENT)
			r = 0;
	}
	env = (struct bk_boot_env){ .root_fd = t->fd, .root = root, .config = &t->config };
	if (r >= 0)
		r = bk_boot_open(name, &env, &t->boot, err);
	if (r < 0) {
		bk_config_release(&t->config);
		(void) close(t->fd);
		return r;
	}
	return 0;
}

static inline void tool_backend_close(struct tool_backend *t)
{
	t->boot = bk_boot_free(t->boot);
	bk_config_release(&t->config);
	(void) close(t->fd);
	t->fd = -EBADF;
}

/* Save d through backend name beneath root: open, save, close. 0 or -errno with err set. */
static inline int tool_save(const char *name, const char *root, bool load_config,
			    const struct bk_boot_data *d, struct bk_err *err)
{
	struct tool_backend t;
	int r;

	r = tool_backend_open(&t, name, root, load_config, err);
	if (r < 0)
		return r;
	r = bk_boot_save(t.boot, d, err);
	tool_backend_close(&t);
	return r;
}

/* Load *ret through backend name beneath root: open, load, close. 0 or -errno, err set. */
static inline int tool_load(const char *name, const char *root, bool load_config,
			    struct bk_boot_data *ret, struct bk_err *err)
{
	struct tool_backend t;
	int r;

	r = tool_backend_open(&t, name, root, load_config, err);
	if (r < 0)
		return r;
	r = bk_boot_load(t.boot, ret, err);
	tool_backend_close(&t);
	return r;
}
