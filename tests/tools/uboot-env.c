/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * uboot-env: the C side of the U-Boot script cross-check (tests/integ/uboot-script.sh), and a
 * small driver of any boot state backend for the integration scripts. States use the model's
 * compact text form ("A=good:2:0:1 B=trying:3:1:1 floor=1 pin=none"); enumerating the
 * reachable states and the model's decisions come from tests/tools/bk-model.
 *
 *   setenv       read "ID STATE" lines; print "ID CMDS": the U-Boot commands that put STATE
 *                into the environment exactly as the `uboot` backend writes it
 *                (bk_boot_uboot_encode(): "setenv bootbank_A_state good; ...; setenv
 *                bootbank_pin" for no pin)
 *   [--backend NAME] save ROOT STATE [BANK=REASON]...
 *                save STATE through backend NAME (default uboot) beneath ROOT, with the bad
 *                reason REASON for BANK
 *   [--backend NAME] load ROOT
 *                print the state loaded through backend NAME beneath ROOT, then one line
 *                "BANK=REASON" per bad reason the store kept
 *   [--backend NAME] roundtrip ROOT
 *                read states from stdin; save each through backend NAME beneath ROOT, load it
 *                back with a new handle and print "STATE LOADED" (one process for many states)
 */
#include <stdio.h>
#include <string.h>

#include "bk-boot-uboot.h"
#include "bk-tool.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: uboot-env setenv | [--backend NAME] save ROOT STATE [BANK=REASON]... "
		"| [--backend NAME] load ROOT | [--backend NAME] roundtrip ROOT\n");
	return BK_EXIT_USAGE;
}

static int fail(const char *what, int r, const struct bk_err *err)
{
	return tool_fail("uboot-env", what, r, err);
}

static int cmd_setenv(void)
{
	char line[TOOL_LINE_MAX];
	unsigned lineno = 0;

	while (fgets(line, sizeof(line), stdin)) {
		struct bk_boot_uboot_var vars[BK_BOOT_UBOOT_N_VARS];
		struct bk_err err = { 0 };
		struct bk_boot_data d;
		char *state;
		int r;

		lineno++;
		if (tool_split_word(line, &state) < 0) {
			fprintf(stderr, "uboot-env: stdin:%u: expected 'ID STATE'\n", lineno);
			return BK_EXIT_USAGE;
		}
		bk_boot_data_init(&d);
		r = bk_bootstate_parse(state, &d.state, &err);
		if (r < 0)
			return fail(line, r, &err);
		r = bk_boot_uboot_encode(&d, vars, &err);
		if (r < 0)
			return fail(line, r, &err);
		printf("%s", line);
		for (size_t i = 0; i < BK_ELEMENTSOF(vars); i++) {
			/* Values are words (states, decimals, A/B): no quoting needed. */
			if (vars[i].absent)
				printf(" setenv %s;", vars[i].name);
			else
				printf(" setenv %s %s;", vars[i].name, vars[i].value);
		}
		printf("\n");
	}
	return 0;
}

static int cmd_save(const char *backend, int argc, char **argv)
{
	struct bk_err err = { 0 };
	struct bk_boot_data d;
	int r;

	if (argc < 3)
		return usage();
	bk_boot_data_init(&d);
	r = bk_bootstate_parse(argv[2], &d.state, &err);
	if (r < 0)
		return fail("save", r, &err);
	for (int i = 3; i < argc; i++) {
		enum bk_bank_id bank = bk_bank_id_from_string((char[]){ argv[i][0], '\0' });

		if (bank < 0 || argv[i][1] != '=')
			return usage();
		r = bk_boot_data_set_bad_reason(&d, bank, argv[i] + 2, &err);
		if (r < 0)
			return fail("save", r, &err);
	}
	r = tool_save(backend, argv[1], true, &d, &err);
	if (r < 0)
		return fail("save", r, &err);
	return 0;
}

static int cmd_load(const char *backend, int argc, char **argv)
{
	struct bk_err err = { 0 };
	struct bk_boot_data d;
	int r;

	if (argc != 2)
		return usage();
	r = tool_load(backend, argv[1], true, &d, &err);
	if (r < 0)
		return fail("load", r, &err);
	r = tool_print_state(NULL, &d.state);
	if (r < 0)
		return fail("load", r, NULL);
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (d.bad_reason[i][0] != '\0')
			printf("%s=%s\n", bk_bank_id_to_string((enum bk_bank_id) i),
			       d.bad_reason[i]);
	return 0;
}

/* Save each state, then load it back through a new handle: a reopened store, as at a boot. */
static int cmd_roundtrip(const char *backend, int argc, char **argv)
{
	char line[TOOL_LINE_MAX];

	if (argc != 2)
		return usage();
	while (fgets(line, sizeof(line), stdin)) {
		struct bk_err err = { 0 };
		struct bk_boot_data d;
		int r;

		line[strcspn(line, "\n")] = '\0';
		bk_boot_data_init(&d);
		r = bk_bootstate_parse(line, &d.state, &err);
		if (r < 0)
			return fail(line, r, &err);
		r = tool_save(backend, argv[1], true, &d, &err);
		if (r >= 0)
			r = tool_load(backend, argv[1], true, &d, &err);
		if (r < 0)
			return fail(line, r, &err);
		r = tool_print_state(line, &d.state);
		if (r < 0)
			return fail(line, r, NULL);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *backend = "uboot";

	if (argc >= 3 && strcmp(argv[1], "--backend") == 0) {
		backend = argv[2];
		argc -= 2;
		argv += 2;
	}
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "setenv") == 0 && argc == 2)
		return cmd_setenv();
	if (strcmp(argv[1], "save") == 0)
		return cmd_save(backend, argc - 1, argv + 1);
	if (strcmp(argv[1], "load") == 0)
		return cmd_load(backend, argc - 1, argv + 1);
	if (strcmp(argv[1], "roundtrip") == 0)
		return cmd_roundtrip(backend, argc - 1, argv + 1);
	return usage();
}
