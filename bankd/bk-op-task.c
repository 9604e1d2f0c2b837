/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tasks and their steps: events.jsonl and the observer (bankd/bk-op.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bk-events.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-op.h"

void bk_op_task_init(struct bk_op_task *t, struct bk_op_ctx *ctx, const char *operation, bool quiet)
{
	*t = (struct bk_op_task){ .ctx = ctx, .operation = operation, .quiet = quiet };
	if (bk_random_hex(t->id, 16) < 0)
		(void) snprintf(t->id, sizeof(t->id), "%016llx", (unsigned long long) getpid());
	t->t0_ns = bk_op_realtime_ns();
	t->steps = json_object_new_array();
}

void bk_op_task_release(struct bk_op_task *t)
{
	json_object_put(t->steps);
	t->steps = NULL;
}

void bk_op_task_begin(struct bk_op_task *t, const char *subject)
{
	if (!t->quiet && t->ctx->obs.task)
		t->ctx->obs.task(t->ctx->obs.userdata, t->operation, t->id, subject);
}

void bk_op_task_begin_step(struct bk_op_task *t, const char *step)
{
	if (!t->quiet && t->ctx->obs.step_begin)
		t->ctx->obs.step_begin(t->ctx->obs.userdata, t->id, step);
}

/* Fill ev with copies of the strings; false when out of memory (ev released). */
static bool make_event(struct bk_event *ev, uint64_t time_ms, const char *task,
		       const char *operation, const char *step, const char *result,
		       uint64_t duration_us, const char *message)
{
	*ev = (struct bk_event){
		.time_ms = time_ms,
		.task = strdup(task),
		.operation = strdup(operation),
		.step = strdup(step),
		.result = strdup(result),
		.duration_us = duration_us,
		.message = strdup(message ? message : ""),
	};
	if (ev->task && ev->operation && ev->step && ev->result && ev->message)
		return true;
	bk_event_release(ev);
	return false;
}

/* Append an event; a failure is a warning (the operation itself went as it went). */
static void append(struct bk_op_ctx *ctx, const struct bk_event *ev)
{
	_cleanup_close_ int dfd = -EBADF;
	struct bk_err err = { 0 };
	int r;

	r = bk_op_open_dir(ctx, BK_OP_STATE_DIR, true, &dfd, &err);
	if (r >= 0)
		r = bk_events_append(dfd, ev, 0, &err);
	if (r < 0)
		bk_op_log(ctx, LOG_WARNING, "cannot record an event: %s, ignoring", err.msg);
}

void bk_op_task_step(struct bk_op_task *t, const char *step, int r, const char *result_override,
		     uint64_t start_ns, uint64_t duration_ns, const char *fmt, ...)
{
	const char *result = result_override ? result_override : r < 0 ? "failed" : "ok";
	_cleanup_free_ char *msg = NULL;
	struct bk_event ev;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		msg = NULL;
	if (!make_event(&ev, start_ns / 1000000u, t->id, t->operation, step, result,
			duration_ns / 1000u, msg)) {
		bk_op_log(t->ctx, LOG_WARNING, "cannot record an event: out of memory, ignoring");
		return;
	}
	append(t->ctx, &ev);
	if (!t->quiet && t->ctx->obs.step) {
		struct bk_op_step st = {
			.task = t->id,
			.operation = t->operation,
			.step = step,
			.result = result,
			.start_ns = start_ns,
			.duration_ns = duration_ns,
			.message = msg ? msg : "",
		};

		t->ctx->obs.step(t->ctx->obs.userdata, &st);
	}
	if (t->steps) {
		struct json_object *o = bk_event_to_json(&ev);

		if (o && json_object_array_add(t->steps, o) < 0)
			json_object_put(o);
	}
	bk_event_release(&ev);
}

void bk_op_task_detail(struct bk_op_task *t, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	int n;

	if (t->quiet || !t->ctx->obs.detail)
		return;
	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n >= 0)
		t->ctx->obs.detail(t->ctx->obs.userdata, msg);
}

void bk_op_event(struct bk_op_ctx *ctx, const char *operation, int r, const struct bk_err *err,
		 const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	char id[17];
	struct bk_event ev;
	va_list ap;
	int n;

	if (ctx->events_in_task)
		return;
	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		msg = NULL;
	if (bk_random_hex(id, 16) < 0)
		(void) snprintf(id, sizeof(id), "%016llx", (unsigned long long) getpid());
	if (!make_event(&ev, bk_op_realtime_ns() / 1000000u, id, operation, operation,
			r < 0 ? "failed" : "ok", 0, r < 0 && err && err->msg[0] ? err->msg : msg)) {
		bk_op_log(ctx, LOG_WARNING, "cannot record an event: out of memory, ignoring");
		return;
	}
	append(ctx, &ev);
	/* A one-step operation's task log is this one line (bankd's StepFinished). */
	if (ctx->obs.step) {
		struct bk_op_step st = {
			.task = ev.task,
			.operation = ev.operation,
			.step = ev.step,
			.result = ev.result,
			.start_ns = ev.time_ms * 1000000u,
			.duration_ns = 0,
			.message = ev.message,
		};

		ctx->obs.step(ctx->obs.userdata, &st);
	}
	bk_event_release(&ev);
}

int bk_op_events(struct bk_op_ctx *ctx, size_t max_n, struct bk_event **ret, size_t *ret_n,
		 struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	*ret = NULL;
	*ret_n = 0;
	/* Read-only: no lock (events are appended whole, a torn last line is skipped). */
	r = bk_op_open_dir(ctx, BK_OP_STATE_DIR, false, &dfd, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 0;
	}
	if (r < 0)
		return r;
	return bk_events_read(dfd, max_n, ret, ret_n, NULL, err);
}
