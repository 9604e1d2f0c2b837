/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankd, the daemon front end of the operations layer (docs/dbus-api.md): one manager object
 * (bankd-manager.c), job objects (bankd-job.c), the operations run in forked children
 * (bankd-child.c), the main loop (bankd.c). Every operation that changes something runs in a
 * forked child; reads run inline. Program-internal: nothing here is in libbootbank.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bk-cleanup.h"

#define BANKD_BUS_NAME	  "org.bootbank.Manager1"
#define BANKD_OBJECT_PATH "/org/bootbank/Manager1"
#define BANKD_INTERFACE	  "org.bootbank.Manager1"
#define BANKD_JOB_PREFIX  "/org/bootbank/Manager1/job"
#define BANKD_JOB_IFACE	  "org.bootbank.Job1"
#define BANKD_ADMIN_GROUP "bootbank"

/* How long a finished job object stays on the bus for clients that look at it late. */
#define BANKD_JOB_LINGER_USEC (60 * 1000000ULL)

/* What a child runs: one operation with its arguments (bankd-child.c). */
enum bankd_op {
	BANKD_OP_STAGE,
	BANKD_OP_ACTIVATE,
	BANKD_OP_MARK_GOOD,
	BANKD_OP_MARK_BAD,
	BANKD_OP_ROLLBACK,
	BANKD_OP_ROLL_FORWARD,
	BANKD_OP_RECOVER,
	BANKD_OP_DEPOT_IMPORT,
	BANKD_OP_DEPOT_REMOVE,
	BANKD_OP_LIVEPATCH_APPLY,
	BANKD_OP_LIVEPATCH_ROLLBACK,
	BANKD_OP_DESIRED_SET,
	BANKD_OP_DESIRED_CLEAR,
	BANKD_OP_PRECHECK,
	BANKD_OP_REMEDIATE,
	_BANKD_OP_MAX,
	_BANKD_OP_INVALID = -22,
};

struct bankd_request {
	enum bankd_op op;
	int fd;		/* the caller's bundle (owned: closed after the fork), or -EBADF */
	char *bank;	/* activate, mark: "A", "B", "booted", "other" or "" */
	char *reason;	/* mark-bad; version: depot remove; live-patch mode: desired set,
			 * precheck, remediate ("": the desired one's) */
	char *name;	/* depot remove, desired set: name; livepatch: revision id */
	char *version;	/* depot remove, desired set */
	char *url;	/* StageURL, DepotImportURL: the bundle's http(s) URL (fd unused) */
	uint32_t tries; /* activate (0: system.conf's) */
	bool activate, allow_downgrade, ignore_compatible, no_check_time, force, no_beneath;
	bool reboot; /* remediate */
};

void bankd_request_release(struct bankd_request *req);

/* "stage", "activate", ...: the operation's name as bankctl's verb. */
const char *bankd_op_to_string(enum bankd_op op);

struct bankd_manager;

/* How the method that started a job is answered. */
enum bankd_reply {
	BANKD_REPLY_PATH,   /* at once, with the job's object path */
	BANKD_REPLY_RESULT, /* when the child ends: its result JSON, or its D-Bus error */
};

struct bankd_job {
	struct bankd_manager *manager;
	uint32_t id;
	char path[64];
	enum bankd_op op;
	enum bankd_reply reply_mode;
	sd_bus_message *call; /* BANKD_REPLY_RESULT: the call to answer */

	pid_t pid; /* the child, 0 once it was reaped */
	int pipe_fd;
	sd_event_source *io_source, *child_source, *linger_source;
	sd_bus_slot *vtable_slot;
	char *buf; /* the child's output not yet parsed (one partial line) */
	size_t buf_len;

	/* Properties. */
	char *state; /* "running", "completed" or "failed" */
	char *step;  /* the current step */
	char *task;  /* the task id, once the operation began one */
	uint32_t percent;
	uint64_t done, total;

	/* The result (from the child's "result" line; else from how it ended). */
	bool has_result;
	uint32_t exit_code;
	char *error_name;
	char *message;
	char *result_json;
};

struct bankd_manager {
	sd_event *event;
	sd_bus *bus;
	const char *root;
	const char *config;
	const char *admin_group;
	uint32_t next_job_id;
	int host_mntns_fd;	   /* the mount namespace bankd started in (ctx_end()) */
	struct bankd_job *current; /* the running job (at most one) */
	struct bankd_job **jobs;   /* every job with a child or an object on the bus */
	size_t n_jobs;
	bool exiting;
};

/* ---- bankd-manager.c -------------------------------------------------------------------- */

/* Export the manager object and its vtable. Returns 0 or a negative errno (logged). */
int bankd_manager_export(struct bankd_manager *m);

/* Emit PropertiesChanged for the manager's state properties (after a job ended). */
void bankd_manager_state_changed(struct bankd_manager *m);

/* ---- bankd-job.c ------------------------------------------------------------------------ */

/*
 * Fork a child running req (taken over: released here), with a pipe for its JSON Lines; export
 * its job object, track it in m->jobs and make it m->current. reply_mode BANKD_REPLY_RESULT:
 * call is answered when the child ends. *ret is borrowed. Returns 0 or a negative errno
 * (error filled).
 */
int bankd_job_start(struct bankd_manager *m, struct bankd_request *req, enum bankd_reply reply_mode,
		    sd_bus_message *call, struct bankd_job **ret, sd_bus_error *error);

/* SIGKILL every running child and reap it (daemon shutdown); free every job. */
void bankd_jobs_kill_all(struct bankd_manager *m);

/* ---- bankd-child.c ---------------------------------------------------------------------- */

/*
 * In the forked child: run req against root/config, writing JSON Lines (task, step, detail,
 * progress, message, and last one result line) to out_fd. Never returns: _exit() with the
 * operation's exit code.
 */
_noreturn_ void bankd_child_main(const char *root, const char *config,
				 const struct bankd_request *req, int out_fd);
