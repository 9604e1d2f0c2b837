/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl internals shared by the verb files (bankctl-<verb>.c). A verb is a function that
 * parses its own options and returns an exit code (enum bk_exit).
 */
#pragma once

#include <getopt.h>
#include <stdbool.h>

#include <json-c/json.h>

#include "bk-boot.h"
#include "bk-config.h"
#include "bk-disk.h"
#include "bk-err.h"

/* Paths beneath the root (--root DIR, default "/"). */
#define BANKCTL_ETC_DIR	  "etc/bootbank"
#define BANKCTL_STATE_DIR "var/lib/bootbank"
#define BANKCTL_RUN_DIR	  "run/bootbank"

struct bankctl {
	const char *root;  /* as given, "/" by default */
	int root_fd;	   /* O_RDONLY|O_DIRECTORY of root */
	char *config_path; /* shown in messages */
	bool configured;   /* system.conf was found */
	struct bk_config config;
	bool json;
	bool wait; /* wait for the lock instead of failing with "busy" */
	int lock_fd;
};

struct bankctl_verb {
	const char *name;
	int (*run)(struct bankctl *ctx, int argc, char **argv);
	const char *usage; /* one line: "status [--json]" */
	const char *help;  /* one line: what it does */
};

/* The options every verb accepts after its name too. */
#define BANKCTL_COMMON_LONGOPTS                                                 \
	{ "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, \
	{                                                                       \
		"wait", no_argument, NULL, 'w'                                  \
	}

/*
 * Handle a common option (returns 1), or report an unknown one (returns -1 after printing a
 * usage error). 0: not a common option.
 */
int bankctl_common_option(struct bankctl *ctx, int c, const struct bankctl_verb *verb);

/* Print "usage: bankctl VERB-USAGE" to stderr and return BK_EXIT_USAGE. */
int bankctl_usage(const struct bankctl_verb *verb, const char *fmt, ...) _printf_(2, 3);

/* Log err (or strerror(r)) as one line and map r to the exit code. */
int bankctl_fail(int r, const struct bk_err *err);

/* Open (create with create=true) a directory beneath the root, e.g. BANKCTL_STATE_DIR. */
int bankctl_open_dir(struct bankctl *ctx, const char *relpath, bool create, int *ret_fd,
		     struct bk_err *err);

/* Take the mutation lock (run/bootbank/lock); honours --wait. */
int bankctl_lock(struct bankctl *ctx, struct bk_err *err);

/* "DIR/relpath" for messages (static buffer, overwritten by the next call). */
const char *bankctl_path(struct bankctl *ctx, const char *relpath);

struct bk_keyring;
/*
 * Load the keyring: arg (a --keyring PATH, used as given) or else system.conf's [keyring] path
 * resolved beneath the root. Errors are prefixed "cannot load keyring 'PATH'".
 */
int bankctl_keyring_load(struct bankctl *ctx, const char *arg, struct bk_keyring **ret,
			 struct bk_err *err);

int bankctl_status(struct bankctl *ctx, int argc, char **argv);
int bankctl_image(struct bankctl *ctx, int argc, char **argv);
int bankctl_depot(struct bankctl *ctx, int argc, char **argv);
int bankctl_rev(struct bankctl *ctx, int argc, char **argv);
int bankctl_workload(struct bankctl *ctx, int argc, char **argv);
int bankctl_livepatch(struct bankctl *ctx, int argc, char **argv);

/* bankctl-boot.c: the boot state verbs, and the helpers status shares with them. */
int bankctl_activate(struct bankctl *ctx, int argc, char **argv);
int bankctl_explain_next_boot(struct bankctl *ctx, int argc, char **argv);
int bankctl_boot(struct bankctl *ctx, int argc, char **argv);
int bankctl_mark_good(struct bankctl *ctx, int argc, char **argv);
int bankctl_mark_bad(struct bankctl *ctx, int argc, char **argv);
int bankctl_rollback(struct bankctl *ctx, int argc, char **argv);
int bankctl_roll_forward(struct bankctl *ctx, int argc, char **argv);

/*
 * Open the configured boot state backend ([system] bootloader) and load the boot state.
 * Read-only (takes no lock, creates nothing). Errors as bk_boot_open() / bk_boot_load():
 * -ENOEXEC for a corrupt store, -EOPNOTSUPP for a backend that is not built in.
 */
int bankctl_boot_load(struct bankctl *ctx, struct bk_boot **ret_boot, struct bk_boot_data *ret,
		      struct bk_err *err);

enum bankctl_booted_source {
	BANKCTL_BOOTED_RECORD,	/* ROOT/run/bootbank/booted.json (boot --simulate) */
	BANKCTL_BOOTED_CMDLINE, /* /proc/cmdline: bootbank.bank= bootbank.reason= */
};

/*
 * The booted bank: ROOT/run/bootbank/booted.json when it exists; otherwise, only when the
 * root is the host's "/", the kernel command line. Returns 0 (*ret, *ret_source set), 1 when
 * unknown, -ENOEXEC for a corrupt booted.json, -EINVAL for a bad bootbank.* value.
 */
int bankctl_booted(struct bankctl *ctx, struct bk_booted *ret,
		   enum bankctl_booted_source *ret_source, struct bk_err *err);

/* Where the booted bank was read from, for people. */
const char *bankctl_booted_source_to_string(struct bankctl *ctx, enum bankctl_booted_source s);

/* The boot state as JSON (banks, floor, pin, next boot, last boot); NULL when out of memory. */
struct json_object *bankctl_bootstate_json(const struct bk_boot_data *d);

/* Add a string member, or JSON null when s is NULL. Returns 0 or -ENOMEM. */
int bankctl_json_add_nullable(struct json_object *o, const char *key, const char *s);

/*
 * Append an item to the list in buf (len bytes, *pos used so far): "; " between items; the
 * text is cut at the end of buf, which stays NUL-terminated. buf[0] must be NUL when *pos is 0.
 */
void bankctl_listf(char *buf, size_t len, size_t *pos, const char *fmt, ...) _printf_(4, 5);

/*
 * bankctl-stage.c: `stage`, and the content record of a bank for status: bank.json of a
 * non-empty bank, read from the bank mounted read-only in bankctl's private namespace.
 * bankctl_bank_content() returns 0 and a new object in *ret (the record, or {"error": ...}
 * when it cannot be read), or 1 when there is none (empty bank, no disk, no bank.json).
 * bankctl_bank_content_text() formats such an object in one line into buf.
 */
int bankctl_stage(struct bankctl *ctx, int argc, char **argv);
int bankctl_bank_content(struct bankctl *ctx, enum bk_bank_id bank, struct json_object **ret);
const char *bankctl_bank_content_text(struct json_object *content, char *buf, size_t len);

/*
 * bankctl-recover.c: `recover`, and the recovery bankctl_lock() runs once the lock is taken
 * (stale temp files, an interrupted stage). Returns 0 or -errno (a corrupt boot state or
 * staging marker); a bank it cannot clean yet is left to the next run (logged).
 */
int bankctl_recover(struct bankctl *ctx, int argc, char **argv);
int bankctl_recover_after_lock(struct bankctl *ctx, struct bk_err *err);

/*
 * bankctl-disk.c: `disk init|probe`, and the disk every verb that touches banks uses.
 * bankctl_get_disk(): the bootbank disk (bk_disk_open() with the root, system.conf and
 * ROOT/var/lib/bootbank/disk.json), found once per process and kept open until exit (an image
 * file's loop device lives as long as bankctl). *ret is borrowed: do not free it.
 */
int bankctl_disk(struct bankctl *ctx, int argc, char **argv);
int bankctl_get_disk(struct bankctl *ctx, struct bk_disk **ret, struct bk_err *err);

/*
 * Mount partition part (BK_PART_BOOT, BK_PART_BANK_A/B, BK_PART_DATA; bk_part_id_from_bank()
 * for an enum bk_bank_id) read-only, or read-write with rw, at ROOT/run/bootbank/mnt/<part>
 * ("boot", "bank-a", "bank-b", "data") and return an O_DIRECTORY fd of its root. The first
 * call moves bankctl into a private mount namespace ("/" rprivate), so the mount is seen by
 * bankctl alone and vanishes when it exits; call it before starting any thread. ctx->root_fd is
 * then reopened in the new namespace (same fd number); fds opened earlier beneath the root keep
 * seeing the old mount tree, so open what is on the partition through *ret_dirfd. Mounting again
 * returns a new fd of the same mount (remounting when rw differs). -ENOENT when the disk has
 * no such partition, other -errno from bk_mount() (libmount's message in err).
 */
int bankctl_mount_part(struct bankctl *ctx, enum bk_part_id part, bool rw, int *ret_dirfd,
		       struct bk_err *err);

/* Unmount what bankctl_mount_part() mounted (no-op when not mounted). */
int bankctl_umount_part(struct bankctl *ctx, enum bk_part_id part, struct bk_err *err);
