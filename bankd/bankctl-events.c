/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl events: the last events of the log (bk_op_events()). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bankctl.h"
#include "bk-events.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-op.h"

/* The continuation lines of a message start under the operation column. */
#define EVENT_INDENT 25

int bankctl_events(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS,
						  { "lines", required_argument, NULL, 'n' },
						  { NULL, 0, NULL, 0 } };
	_cleanup_(json_object_putp) struct json_object *arr = NULL;
	struct bk_event *evs = NULL;
	struct bk_err err = { 0 };
	uint64_t max = 20;
	size_t n = 0;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhwn:", longopts, NULL)) != -1) {
		if (c == 'n') {
			if (bk_parse_u64(optarg, &max) < 0 || max > 100000)
				return bankctl_usage(ctx->verb,
						     "-n must be a number up to 100000, not '%s'",
						     optarg);
			continue;
		}
		if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	r = bk_op_events(&ctx->op, (size_t) max, &evs, &n, &err);
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
		const char *msg = evs[i].message ? evs[i].message : "", *nl = strchr(msg, '\n');
		char when[64] = "?";
		struct tm tm;

		if (localtime_r(&s, &tm))
			(void) strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		printf("%s.%03u  %-10s %-20s %-7s %9.3f ms  %.*s\n", when,
		       (unsigned) (evs[i].time_ms % 1000u),
		       evs[i].operation ? evs[i].operation : "-", evs[i].step,
		       evs[i].result ? evs[i].result : "-", (double) evs[i].duration_us / 1e3,
		       nl ? (int) (nl - msg) : (int) strlen(msg), msg);
		/* A message of several lines (a failing health check's output): the others
		 * indented under the event, past the time column. */
		while (nl) {
			const char *p = nl + 1;

			nl = strchr(p, '\n');
			printf("%*s%.*s\n", EVENT_INDENT, "", nl ? (int) (nl - p) : (int) strlen(p),
			       p);
		}
	}
	bk_events_free(evs, n);
	return BK_EXIT_OK;
}
