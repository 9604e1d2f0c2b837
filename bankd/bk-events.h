/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The events log (docs/banks.md, "Events"): what the mutating verbs did, one JSON object per
 * line in STATE/events.jsonl (STATE being ROOT/var/lib/bootbank), appended and fsync'ed, never
 * rewritten. When the file reaches its size bound it is renamed to events.jsonl.1 (replacing
 * the older one) and a new file starts, so the log never holds more than about twice the
 * bound. A line cut short by a crash is terminated by the next append and skipped on read.
 * Never logs, never exits.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-err.h"

#define BK_EVENTS_FILE	      "events.jsonl"
#define BK_EVENTS_OLD_FILE    "events.jsonl.1"
#define BK_EVENTS_MAX_SIZE    (256 * 1024) /* default bound of one file */
#define BK_EVENTS_MESSAGE_MAX 2048	   /* bytes of a message kept in an event */

/* One event. Strings may be NULL when reading an event that lacks them (not when appending). */
struct bk_event {
	uint64_t time_ms; /* CLOCK_REALTIME, milliseconds since the epoch, at the step's start */
	char *task;	  /* id of the run that wrote it: the events of one task log */
	char *operation;  /* "livepatch", "stage", "activate", ... */
	char *step;	  /* "stage", "switch-over", "scan hook '10-x'", ... */
	char *result;	  /* "ok", "failed", "warning", "skipped" */
	uint64_t duration_us; /* of the step */
	char *message;	      /* one or more lines for people, at most BK_EVENTS_MESSAGE_MAX */
};

/* Free the strings of ev (embedded struct) and zero it. */
void bk_event_release(struct bk_event *ev);

/* Free an array of n events; returns NULL. */
struct bk_event *bk_events_free(struct bk_event *evs, size_t n);

/* The event as a new JSON object (the line's document); NULL on ENOMEM. */
struct json_object *bk_event_to_json(const struct bk_event *ev);

/*
 * Append ev to (state_dfd, events.jsonl): one write of the whole line with O_APPEND, then
 * fsync (and the directory's fsync when the file was created). A file that does not end in a
 * newline (a torn last line) gets one first. When the file already holds max_size bytes or
 * more (0: BK_EVENTS_MAX_SIZE), it is renamed to events.jsonl.1 first (directory fsync'ed).
 * The message is cut at BK_EVENTS_MESSAGE_MAX bytes. Returns 0 or -errno (message names the
 * file). Blocks on fsync. The caller holds the bootbank lock (rotation is not atomic with
 * respect to another writer).
 */
int bk_events_append(int state_dfd, const struct bk_event *ev, uint64_t max_size,
		     struct bk_err *err);

/*
 * Read the last max_n events (0: all), oldest first, from events.jsonl.1 and events.jsonl.
 * Lines that are not an event (a torn last line, garbage) are skipped and counted in
 * *ret_skipped (optional). *ret is NULL when there are none. Each file is read up to
 * 4 * BK_EVENTS_MAX_SIZE bytes (a larger file is -EFBIG). Returns 0 or -errno. Reads only.
 */
int bk_events_read(int state_dfd, size_t max_n, struct bk_event **ret, size_t *ret_n,
		   size_t *ret_skipped, struct bk_err *err);

/*
 * The newest event whose result is "failed" (for `bankctl status`): 1 and *ret filled (caller
 * releases), 0 when the log has none, <0 on error. Reads the files from their end.
 */
int bk_events_last_failure(int state_dfd, struct bk_event *ret, struct bk_err *err);
