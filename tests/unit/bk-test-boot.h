/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared fixture of the boot state backend tests (test-boot-*.c): a mkdtemp() root, its
 * configuration and a backend opened beneath it; states in the model's compact text form
 * ("A=good:2:0:1 B=trying:3:1:1 floor=1 pin=none"). Kept apart from bk-test.h, which the
 * tests of lib/ include, so that only these tests see the bootloader-hooks headers.
 */
#pragma once

#include "bk-test.h"
#include "mocks.h"

#include "bk-boot.h"
#include "bk-config.h"
#include "bk-select.h"

struct bk_test_boot {
	struct bk_test_dir dir;	 /* the root */
	struct bk_config config; /* empty unless the test file's setup loads some */
	struct bk_boot *boot;	 /* opened by the test file's setup, or NULL */
};

/* A new fixture: wrappers disarmed, a fresh root, an empty configuration, no backend. */
static inline struct bk_test_boot *bk_test_boot_new(void)
{
	struct bk_test_boot *f = calloc(1, sizeof(*f));

	wrap_reset();
	assert_non_null(f);
	bk_test_dir_open(&f->dir);
	assert_int_equal(bk_config_init(&f->config), 0);
	return f;
}

/* Teardown of every backend test: wrappers disarmed, the backend freed, the root removed. */
static inline int bk_test_boot_teardown(void **state)
{
	struct bk_test_boot *f = *state;

	wrap_reset();
	f->boot = bk_boot_free(f->boot);
	bk_config_release(&f->config);
	bk_test_dir_close(&f->dir);
	free(f);
	return 0;
}

/* bk_boot_open() of backend name beneath the fixture's root with its configuration. */
static inline int bk_test_boot_open(struct bk_test_boot *f, const char *name, struct bk_boot **ret,
				    struct bk_err *err)
{
	struct bk_boot_env env = { f->dir.dfd, f->dir.path, &f->config };

	return bk_boot_open(name, &env, ret, err);
}

/* Boot data holding the state text (which must parse), no bad reasons, no last boot. */
static inline struct bk_boot_data bk_test_boot_data(const char *text)
{
	struct bk_boot_data d;
	struct bk_err err = { 0 };

	bk_boot_data_init(&d);
	assert_int_equal(bk_bootstate_parse(text, &d.state, &err), 0);
	return d;
}

/* Save the state text through b; the test fails with the backend's message otherwise. */
static inline void bk_test_boot_save(struct bk_boot *b, const char *text)
{
	struct bk_boot_data d = bk_test_boot_data(text);
	struct bk_err err = { 0 };

	if (bk_boot_save(b, &d, &err) < 0)
		fail_msg("save '%s' failed: %s", text, err.msg);
}

/* Load through b: its state in text form must be want. */
static inline void bk_test_boot_assert_state(struct bk_boot *b, const char *want)
{
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	char text[BK_BOOTSTATE_TEXT_MAX];

	if (bk_boot_load(b, &d, &err) < 0)
		fail_msg("load failed: %s", err.msg);
	assert_int_equal(bk_bootstate_format(&d.state, text, sizeof(text)), 0);
	assert_string_equal(text, want);
}
