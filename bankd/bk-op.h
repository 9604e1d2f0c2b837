/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The operations layer (docs/architecture.md, "Operations and front ends"): every verb of
 * bootbank as a library call that takes its options as a struct, takes the lock and recovers
 * what a killed run left, reports its task steps, progress and messages through an observer,
 * and returns a result plus a struct bk_err. It never prints and never exits. bankctl and
 * bankd are its two front ends: they parse a request, call an operation and render what it
 * reports (text, progress bar, JSON; D-Bus job signals and replies).
 *
 * A context (struct bk_op_ctx) is one per process and root: the root directory, the
 * configuration, the lock, the bootbank disk found once and the partitions mounted in the
 * process's private mount namespace (entered at the first such mount, for good: run
 * operations that must make host-visible mounts, a live patch, before or in another process).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-boot.h"
#include "bk-config.h"
#include "bk-disk.h"
#include "bk-err.h"
#include "bk-select.h"
#include "bk-stage.h"

/* Paths beneath the root (--root DIR, default "/"). */
#define BK_OP_ETC_DIR	"etc/bootbank"
#define BK_OP_STATE_DIR "var/lib/bootbank"
#define BK_OP_RUN_DIR	"run/bootbank"

/* One line of a task log: a step of an operation, as it is also recorded in events.jsonl. */
struct bk_op_step {
	const char *task;      /* the task id (16 hex digits) */
	const char *operation; /* "stage", "livepatch", ... */
	const char *step;      /* "pre-check", "stage", "hook '10-x'", ... */
	const char *result;    /* "ok", "failed", "warning", "skipped", "vetoed" */
	uint64_t start_ns;     /* CLOCK_REALTIME */
	uint64_t duration_ns;
	const char *message;
};

/*
 * What an operation reports while it runs. Every callback is optional; they are called in the
 * operation's process, synchronously, and must not call back into the operation.
 */
struct bk_op_observer {
	/*
	 * A task began (after the lock and the checks that need no step): its id and what it
	 * works on (a bundle path, a revision id), for a task log header.
	 */
	void (*task)(void *userdata, const char *operation, const char *task_id,
		     const char *subject);
	/* A task log line (also appended to events.jsonl by the operation). */
	void (*step)(void *userdata, const struct bk_op_step *st);
	/* A step of the task starts (its line comes through step when it ends): bankd's Step. */
	void (*step_begin)(void *userdata, const char *task_id, const char *step);
	/* A detail line under the last step (a hook's output line, a workload not running). */
	void (*detail)(void *userdata, const char *text);
	/* Bytes written by a stage; called often (the front end throttles). */
	void (*progress)(void *userdata, const struct bk_stage_progress *p);
	/*
	 * A message for people that is not the result: a warning that did not fail the
	 * operation ("..., ignoring"), what a recovery did. level is a syslog level.
	 */
	void (*message)(void *userdata, int level, const char *text);
	void *userdata;
};

struct bk_op_recovery;

struct bk_op_ctx {
	const char *root;  /* as given, "/" by default (borrowed) */
	int root_fd;	   /* O_RDONLY|O_DIRECTORY of root */
	char *config_path; /* shown in messages */
	bool configured;   /* system.conf was found */
	struct bk_config config;
	bool wait;   /* wait for the lock instead of failing with "busy" */
	int lock_fd; /* >= 0 while the lock is ours */
	struct bk_op_observer obs;
	/*
	 * Set by an operation that calls others as steps of its own task (remediate calls
	 * activate): bk_op_event() records nothing, the caller's task records the step.
	 */
	bool events_in_task;

	/* Private state (bk-op.c, bk-op-disk.c). */
	struct bk_disk *disk;
	bool ns_private;
	struct {
		bool mounted;
		bool rw;
	} mounts[_BK_PART_MAX];
	struct bk_op_recovery *last_recovery; /* what the last recovery of this ctx did */
	bool recovery_quiet;		      /* do not report recovery through obs.message */
};

/*
 * Open root (O_DIRECTORY) and load the configuration: config_arg as given (must exist), or
 * ROOT/etc/bootbank/system.conf when it exists. Returns 0, or -errno with err: when
 * ctx->root_fd < 0 afterwards the root could not be opened ("cannot open root"), else the
 * configuration is bad or missing (-ENOENT for a config_arg that does not exist). The ctx must
 * be released (bk_op_ctx_release()) even after a failure.
 */
int bk_op_ctx_open(struct bk_op_ctx *ctx, const char *root, const char *config_arg,
		   struct bk_err *err);

/* Release the lock, the disk, the configuration and the root fd. */
void bk_op_ctx_release(struct bk_op_ctx *ctx);

/* Report a message through ctx->obs.message (dropped without one). */
void bk_op_log(struct bk_op_ctx *ctx, int level, const char *fmt, ...) _printf_(3, 4);

/*
 * A fetch of url set up from [fetch] of system.conf (CA file, client certificate and key
 * beneath the root; the bearer token read from its file, at most 4 KiB, first line). The
 * token file must be a regular file (not a symlink) owned by the user bankctl runs as (root)
 * with no permission for group or others: -EACCES otherwise, with a message naming the fix.
 * -EINVAL not a URL; -ENOENT, -ELOOP (a symlink), -EFBIG, -EBADFD the token file; -ENOMEM.
 */
struct bk_fetch;
int bk_op_fetch_new(struct bk_op_ctx *ctx, const char *url, struct bk_fetch **ret,
		    struct bk_err *err);

/* "ROOT/relpath" for messages (static buffer, overwritten by the next call). */
const char *bk_op_path(struct bk_op_ctx *ctx, const char *relpath);

/* Open (or create with create=true) a directory beneath the root, e.g. BK_OP_STATE_DIR. */
int bk_op_open_dir(struct bk_op_ctx *ctx, const char *relpath, bool create, int *ret_fd,
		   struct bk_err *err);

/*
 * Take the mutation lock (ROOT/run/bootbank/lock; ctx->wait: wait for it, else -EBUSY with
 * "busy" in err at once), then recover what a killed run left (bk_op_recover_after_lock()).
 * A no-op when the lock is already ours. Returns 0 or -errno.
 */
int bk_op_lock(struct bk_op_ctx *ctx, struct bk_err *err);

struct bk_keyring;
/*
 * Load the keyring: path (used as given) or else system.conf's [keyring] path resolved beneath
 * the root. Errors are prefixed "cannot load keyring 'PATH'".
 */
int bk_op_keyring_load(struct bk_op_ctx *ctx, const char *path, struct bk_keyring **ret,
		       struct bk_err *err);

/*
 * Run fn(ctx, userdata, err) in a forked child (which dies with us) and return its result
 * and message: for a step that must mount in a private namespace (bk_op_mount_part()) while
 * the caller keeps making mounts where everyone sees them. The child's changes to ctx are
 * lost. Returns fn's result, or -errno when the child could not run or answer.
 */
int bk_op_call_forked(struct bk_op_ctx *ctx,
		      int (*fn)(struct bk_op_ctx *ctx, void *userdata, struct bk_err *err),
		      void *userdata, struct bk_err *err);

/* CLOCK_REALTIME in nanoseconds. */
uint64_t bk_op_realtime_ns(void);

/* Add a string member, or JSON null when s is NULL. Returns 0 or -ENOMEM. */
int bk_op_json_add_nullable(struct json_object *o, const char *key, const char *s);

/*
 * Append an item to the list in buf (len bytes, *pos used so far): "; " between items; the
 * text is cut at the end of buf, which stays NUL-terminated. buf[0] must be NUL when *pos is 0.
 */
void bk_op_listf(char *buf, size_t len, size_t *pos, const char *fmt, ...) _printf_(4, 5);

/* ---- tasks and events (bk-op-task.c) ------------------------------------------------------ */

/*
 * A task is one run of an operation; each of its steps becomes an event in
 * ROOT/var/lib/bootbank/events.jsonl and an observer step. Appending needs the lock; a failure
 * to append is a warning (obs.message), never the operation's failure.
 */
struct bk_op_task {
	struct bk_op_ctx *ctx;
	const char *operation;	   /* "livepatch", "stage", ... */
	char id[17];		   /* random hex, shared by the task's events */
	bool quiet;		   /* events only: no observer steps */
	struct json_object *steps; /* every step as JSON, in order */
	uint64_t t0_ns;		   /* CLOCK_REALTIME when the task started */
};

/* Start a task (no I/O); quiet: no observer calls (a recovery inside another operation). */
void bk_op_task_init(struct bk_op_task *t, struct bk_op_ctx *ctx, const char *operation,
		     bool quiet);
void bk_op_task_release(struct bk_op_task *t);

/* Tell the observer that the task began (obs.task), working on subject. */
void bk_op_task_begin(struct bk_op_task *t, const char *subject);

/* Tell the observer that a step starts (obs.step_begin); no event (the end records one). */
void bk_op_task_begin_step(struct bk_op_task *t, const char *step);

/*
 * Record one step: an event (result "ok" when r >= 0, else "failed"; result_override, when not
 * NULL, wins), an observer step, a JSON step in t->steps. start_ns is CLOCK_REALTIME.
 */
void bk_op_task_step(struct bk_op_task *t, const char *step, int r, const char *result_override,
		     uint64_t start_ns, uint64_t duration_ns, const char *fmt, ...) _printf_(7, 8);

/* A detail line under the last step (observer only). */
void bk_op_task_detail(struct bk_op_task *t, const char *fmt, ...) _printf_(2, 3);

/*
 * One event for an operation that is a single step (activate, mark-good, ...): result from r,
 * the message from err when r < 0, else from fmt; the same line goes to obs.step (its task
 * log). Needs the lock.
 */
void bk_op_event(struct bk_op_ctx *ctx, const char *operation, int r, const struct bk_err *err,
		 const char *fmt, ...) _printf_(5, 6);

struct bk_event;
/*
 * The last max_n events (0: all), oldest first (bk_events_read(); none when there is no state
 * directory). Free with bk_events_free(). Reads only, no lock.
 */
int bk_op_events(struct bk_op_ctx *ctx, size_t max_n, struct bk_event **ret, size_t *ret_n,
		 struct bk_err *err);

/* ---- the disk and its partitions (bk-op-disk.c) ------------------------------------------- */

/* True when the root is the host's "/" (not a sandbox). */
bool bk_op_root_is_host(struct bk_op_ctx *ctx);

/*
 * The bootbank disk (bk_disk_open() with the root, system.conf and
 * ROOT/var/lib/bootbank/disk.json), found once per ctx and kept open until it is released (an
 * image file's loop device lives as long as the ctx). *ret is borrowed.
 */
int bk_op_get_disk(struct bk_op_ctx *ctx, struct bk_disk **ret, struct bk_err *err);

/*
 * Mount partition part read-only, or read-write with rw, at ROOT/run/bootbank/mnt/<part> and
 * return an O_DIRECTORY fd of its root. The first call moves the process into a private mount
 * namespace ("/" rprivate): the mount is seen by this process alone and vanishes when it
 * exits; call it before starting any thread. ctx->root_fd is then reopened in the new
 * namespace (same fd number). -ENOENT when the disk has no such partition, other -errno from
 * bk_mount().
 */
int bk_op_mount_part(struct bk_op_ctx *ctx, enum bk_part_id part, bool rw, int *ret_dirfd,
		     struct bk_err *err);

/* Unmount what bk_op_mount_part() mounted (no-op when not mounted). */
int bk_op_umount_part(struct bk_op_ctx *ctx, enum bk_part_id part, struct bk_err *err);

/*
 * Lock, then partition o->target for bootbank and record it in the state directory
 * (bk_disk_init(); docs/disk.md). *ret: the new disk (caller frees).
 */
int bk_op_disk_init(struct bk_op_ctx *ctx, const struct bk_disk_init_options *o,
		    struct bk_disk **ret, struct bk_err *err);

/* ---- the boot state (bk-op-boot.c) -------------------------------------------------------- */

/* Open the configured backend and load the boot state. Read-only, no lock. */
int bk_op_boot_load(struct bk_op_ctx *ctx, struct bk_boot **ret_boot, struct bk_boot_data *ret,
		    struct bk_err *err);

enum bk_op_booted_source {
	BK_OP_BOOTED_RECORD,  /* ROOT/run/bootbank/booted.json (boot --simulate) */
	BK_OP_BOOTED_CMDLINE, /* /proc/cmdline: bootbank.bank= bootbank.reason= */
};

/*
 * The booted bank: ROOT/run/bootbank/booted.json when it exists; otherwise, only when the
 * root is the host's "/", the kernel command line. Returns 0 (*ret, *ret_source set), 1 when
 * unknown, -ENOEXEC for a corrupt booted.json, -EINVAL for a bad bootbank.* value.
 */
int bk_op_booted(struct bk_op_ctx *ctx, struct bk_booted *ret, enum bk_op_booted_source *ret_source,
		 struct bk_err *err);

/* Where the booted bank was read from, for people. */
const char *bk_op_booted_source_to_string(struct bk_op_ctx *ctx, enum bk_op_booted_source s);

/* The boot state as JSON (banks, floor, pin, next boot, last boot); NULL when out of memory. */
struct json_object *bk_op_bootstate_json(const struct bk_boot_data *d);
