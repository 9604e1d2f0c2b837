/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl's events: tasks and their steps, and `bankctl events`. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bankctl-events.h"
#include "bk-events.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"

uint64_t bankctl_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

void bankctl_task_init(struct bankctl_task *t, struct bankctl *ctx, const char *operation,
		       bool print, bool collect)
{
	*t = (struct bankctl_task){ .ctx = ctx, .operation = operation, .print = print };
	if (bk_random_hex(t->id, 16) < 0)
		(void) snprintf(t->id, sizeof(t->id), "%016llx", (unsigned long long) getpid());
	t->t0_ns = bankctl_realtime_ns();
	if (collect)
		t->steps = json_object_new_array();
}

void bankctl_task_release(struct bankctl_task *t)
{
	json_object_put(t->steps);
	t->steps = NULL;
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
static void append(struct bankctl *ctx, const struct bk_event *ev)
{
	_cleanup_close_ int dfd = -EBADF;
	struct bk_err err = { 0 };
	int r;

	r = bankctl_open_dir(ctx, BANKCTL_STATE_DIR, true, &dfd, &err);
	if (r >= 0)
		r = bk_events_append(dfd, ev, 0, &err);
	if (r < 0)
		bk_log(LOG_WARNING, "cannot record an event: %s, ignoring", err.msg);
}

static void format_clock(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t) (ns / 1000000000u);
	struct tm tm;

	if (!localtime_r(&s, &tm) || strftime(buf, len, "%H:%M:%S", &tm) == 0)
		(void) snprintf(buf, len, "--:--:--");
	else
		(void) snprintf(buf + strlen(buf), len - strlen(buf), ".%03u",
				(unsigned) (ns / 1000000u % 1000u));
}

void bankctl_task_step(struct bankctl_task *t, const char *step, int r, const char *result_override,
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
		bk_log(LOG_WARNING, "cannot record an event: out of memory, ignoring");
		return;
	}
	append(t->ctx, &ev);
	if (t->print) {
		char when[32];

		format_clock(start_ns, when, sizeof(when));
		printf("  %s  %-18s %-7s %9.3f ms  %s\n", when, step, result,
		       (double) duration_ns / 1e6, msg ? msg : "");
		fflush(stdout);
	}
	if (t->steps) {
		struct json_object *o = bk_event_to_json(&ev);

		if (o && json_object_array_add(t->steps, o) < 0)
			json_object_put(o);
	}
	bk_event_release(&ev);
}

void bankctl_task_detail(struct bankctl_task *t, const char *fmt, ...)
{
	va_list ap;

	if (!t->print)
		return;
	fputs("                ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

void bankctl_event(struct bankctl *ctx, const char *operation, int r, const struct bk_err *err,
		   const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	char id[17];
	struct bk_event ev;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		msg = NULL;
	if (bk_random_hex(id, 16) < 0)
		(void) snprintf(id, sizeof(id), "%016llx", (unsigned long long) getpid());
	if (!make_event(&ev, bankctl_realtime_ns() / 1000000u, id, operation, operation,
			r < 0 ? "failed" : "ok", 0, r < 0 && err && err->msg[0] ? err->msg : msg)) {
		bk_log(LOG_WARNING, "cannot record an event: out of memory, ignoring");
		return;
	}
	append(ctx, &ev);
	bk_event_release(&ev);
}

/* ---- bankctl events ------------------------------------------------------------------------ */

static const struct bankctl_verb verb = { "events", NULL, "events [--json] [-n N]", "" };

int bankctl_events(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS,
						  { "lines", required_argument, NULL, 'n' },
						  { NULL, 0, NULL, 0 } };
	_cleanup_(json_object_putp) struct json_object *arr = NULL;
	_cleanup_close_ int dfd = -EBADF;
	struct bk_event *evs = NULL;
	struct bk_err err = { 0 };
	uint64_t max = 20;
	size_t n = 0;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhwn:", longopts, NULL)) != -1) {
		if (c == 'n') {
			if (bk_parse_u64(optarg, &max) < 0 || max > 100000)
				return bankctl_usage(&verb,
						     "-n must be a number up to 100000, not '%s'",
						     optarg);
			continue;
		}
		if (bankctl_common_option(ctx, c, &verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		return bankctl_usage(&verb, "unexpected argument '%s'", argv[optind]);

	/* Read-only: no lock (events are appended whole, a torn last line is skipped). */
	r = bankctl_open_dir(ctx, BANKCTL_STATE_DIR, false, &dfd, &err);
	if (r == -ENOENT)
		r = 0;
	else if (r >= 0)
		r = bk_events_read(dfd, (size_t) max, &evs, &n, NULL, &err);
	if (r < 0)
		return bankctl_fail(r, &err);

	if (ctx->json) {
		arr = json_object_new_array();
		for (size_t i = 0; arr && i < n; i++) {
			struct json_object *o = bk_event_to_json(&evs[i]);

			if (!o || json_object_array_add(arr, o) < 0) {
				json_object_put(o);
				bk_events_free(evs, n);
				return bankctl_fail(-ENOMEM, NULL);
			}
		}
		if (!arr) {
			bk_events_free(evs, n);
			return bankctl_fail(-ENOMEM, NULL);
		}
		puts(bk_json_to_string(arr, true));
	} else if (n == 0) {
		printf("no events\n");
	}
	for (size_t i = 0; !ctx->json && i < n; i++) {
		time_t s = (time_t) (evs[i].time_ms / 1000u);
		char when[64] = "?";
		struct tm tm;

		if (localtime_r(&s, &tm))
			(void) strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		printf("%s.%03u  %-10s %-20s %-7s %9.3f ms  %s\n", when,
		       (unsigned) (evs[i].time_ms % 1000u),
		       evs[i].operation ? evs[i].operation : "-", evs[i].step,
		       evs[i].result ? evs[i].result : "-", (double) evs[i].duration_us / 1e3,
		       evs[i].message ? evs[i].message : "");
	}
	bk_events_free(evs, n);
	return BK_EXIT_OK;
}
