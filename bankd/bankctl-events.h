/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl's side of the events log (bankd/bk-events.h): a task is one run of a verb; each of
 * its steps becomes an event (and, for the live patch, a line of the task log printed as it
 * happens). Appending needs the lock; a failure to append is a warning, never the verb's
 * failure.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bankctl.h"

struct bankctl_task {
	struct bankctl *ctx;
	const char *operation;	   /* "livepatch", "stage", ... */
	char id[17];		   /* random hex, shared by the task's events */
	bool print;		   /* print each step as a task log line (text mode) */
	struct json_object *steps; /* each step as JSON (--json), or NULL */
	uint64_t t0_ns;		   /* CLOCK_REALTIME when the task started */
};

/* Start a task (no I/O). print: text task log on stdout; collect: keep the steps as JSON. */
void bankctl_task_init(struct bankctl_task *t, struct bankctl *ctx, const char *operation,
		       bool print, bool collect);
void bankctl_task_release(struct bankctl_task *t);

/* CLOCK_REALTIME in nanoseconds. */
uint64_t bankctl_realtime_ns(void);

/*
 * Record one step: an event in ROOT/var/lib/bootbank/events.jsonl (result "ok" when r >= 0,
 * else "failed"; result_override, when not NULL, wins: "warning", "skipped", "vetoed"), a task
 * log line when printing, a JSON step when collecting. start_ns is CLOCK_REALTIME.
 */
void bankctl_task_step(struct bankctl_task *t, const char *step, int r, const char *result_override,
		       uint64_t start_ns, uint64_t duration_ns, const char *fmt, ...)
	_printf_(7, 8);

/* Print an indented detail line under the last step (task log only). */
void bankctl_task_detail(struct bankctl_task *t, const char *fmt, ...) _printf_(2, 3);

/*
 * One event for a verb that is a single step (activate, mark-good, ...): result from r, the
 * message from err when r < 0, else from fmt. Needs the lock.
 */
void bankctl_event(struct bankctl *ctx, const char *operation, int r, const struct bk_err *err,
		   const char *fmt, ...) _printf_(5, 6);

/* bankctl events [--json] [-n N] */
int bankctl_events(struct bankctl *ctx, int argc, char **argv);
