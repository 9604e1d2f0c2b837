/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk-events.h"
#include "bk-fs.h"
#include "bk-json.h"

#define READ_MAX ((size_t) 4 * BK_EVENTS_MAX_SIZE)

void bk_event_release(struct bk_event *ev)
{
	free(ev->task);
	free(ev->operation);
	free(ev->step);
	free(ev->result);
	free(ev->message);
	*ev = (struct bk_event){ 0 };
}

struct bk_event *bk_events_free(struct bk_event *evs, size_t n)
{
	for (size_t i = 0; evs && i < n; i++)
		bk_event_release(&evs[i]);
	free(evs);
	return NULL;
}

/* The first max bytes of s, not cutting a UTF-8 sequence in two. */
static size_t cut_len(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max)
		return n;
	n = max;
	while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

struct json_object *bk_event_to_json(const struct bk_event *ev)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	const char *msg = ev->message ? ev->message : "";

	if (!o || bk_json_add_u64(o, "time", ev->time_ms) < 0 ||
	    bk_json_add_string(o, "task", ev->task ? ev->task : "") < 0 ||
	    bk_json_add_string(o, "operation", ev->operation ? ev->operation : "") < 0 ||
	    bk_json_add_string(o, "step", ev->step ? ev->step : "") < 0 ||
	    bk_json_add_string(o, "result", ev->result ? ev->result : "") < 0 ||
	    bk_json_add_u64(o, "duration_us", ev->duration_us) < 0 ||
	    bk_json_add(
		    o, "message",
		    json_object_new_string_len(msg, (int) cut_len(msg, BK_EVENTS_MESSAGE_MAX))) < 0)
		return NULL;
	return TAKE_PTR(o);
}

/* Rename events.jsonl to events.jsonl.1 when it has reached max bytes. */
static int maybe_rotate(int dfd, uint64_t max, struct bk_err *err)
{
	struct stat st;
	int r;

	if (fstatat(dfd, BK_EVENTS_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return bk_err_set(err, -errno, "cannot stat '%s': %m", BK_EVENTS_FILE);
	}
	if ((uint64_t) st.st_size < max)
		return 0;
	if (renameat(dfd, BK_EVENTS_FILE, dfd, BK_EVENTS_OLD_FILE) < 0)
		return bk_err_set(err, -errno, "cannot rotate '%s': %m", BK_EVENTS_FILE);
	r = bk_fsync_dir(dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the directory of '%s': %s", BK_EVENTS_FILE,
				  strerror(-r));
	return 0;
}

int bk_events_append(int state_dfd, const struct bk_event *ev, uint64_t max_size,
		     struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *line = NULL;
	const char *s;
	bool created = false;
	struct stat st;
	size_t len, slen;
	char last;
	int r;

	o = bk_event_to_json(ev);
	s = o ? bk_json_to_string(o, false) : NULL;
	if (!s)
		return bk_err_set(err, -ENOMEM, "out of memory");
	slen = strlen(s);
	while (slen > 0 && s[slen - 1] == '\n')
		slen--;
	/* Room for a newline that ends a torn last line, the line and its newline. */
	line = malloc(slen + 2);
	if (!line)
		return bk_err_set(err, -ENOMEM, "out of memory");

	r = maybe_rotate(state_dfd, max_size ? max_size : BK_EVENTS_MAX_SIZE, err);
	if (r < 0)
		return r;
	fd = openat(state_dfd, BK_EVENTS_FILE,
		    O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0);
	if (fd < 0 && errno == ENOENT) {
		fd = openat(state_dfd, BK_EVENTS_FILE,
			    O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
		created = fd >= 0;
	}
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", BK_EVENTS_FILE);
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", BK_EVENTS_FILE);
	if (!S_ISREG(st.st_mode))
		return bk_err_set(err, -EINVAL, "'%s' is not a regular file", BK_EVENTS_FILE);

	/* A line cut short by a crash: end it, so this event starts a line of its own. */
	len = 0;
	if (st.st_size > 0) {
		if (pread(fd, &last, 1, st.st_size - 1) != 1)
			return bk_err_set(err, errno ? -errno : -EIO, "cannot read '%s': %m",
					  BK_EVENTS_FILE);
		if (last != '\n')
			line[len++] = '\n';
	}
	memcpy(line + len, s, slen);
	len += slen;
	line[len++] = '\n';

	r = bk_write_full(fd, line, len);
	if (r < 0)
		return bk_err_set(err, r, "cannot write '%s': %s", BK_EVENTS_FILE, strerror(-r));
	if (fsync(fd) < 0)
		return bk_err_set(err, -errno, "cannot sync '%s': %m", BK_EVENTS_FILE);
	if (created) {
		r = bk_fsync_dir(state_dfd);
		if (r < 0)
			return bk_err_set(err, r, "cannot sync the directory of '%s': %s",
					  BK_EVENTS_FILE, strerror(-r));
	}
	return 0;
}

static int dup_str(struct json_object *o, const char *key, char **ret)
{
	const char *s = NULL;

	if (bk_json_get_string(o, key, false, &s, NULL) != 0 || !s)
		return 0;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

/* Parse one line: 0 and *ret, -EINVAL when it is not an event, -ENOMEM. */
static int parse_line(const char *line, size_t len, struct bk_event *ret)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct bk_event ev = { 0 };
	const char *step = NULL;

	if (bk_json_parse(line, len, &o, NULL) < 0 || !json_object_is_type(o, json_type_object))
		return -EINVAL;
	if (bk_json_get_u64(o, "time", true, UINT64_MAX, &ev.time_ms, NULL) != 0 ||
	    bk_json_get_string(o, "step", true, &step, NULL) != 0)
		return -EINVAL;
	(void) bk_json_get_u64(o, "duration_us", false, UINT64_MAX, &ev.duration_us, NULL);
	if (dup_str(o, "task", &ev.task) < 0 || dup_str(o, "operation", &ev.operation) < 0 ||
	    dup_str(o, "step", &ev.step) < 0 || dup_str(o, "result", &ev.result) < 0 ||
	    dup_str(o, "message", &ev.message) < 0) {
		bk_event_release(&ev);
		return -ENOMEM;
	}
	*ret = ev;
	return 0;
}

/* The whole file (at most READ_MAX bytes), or NULL with *len 0 when it does not exist. */
static int read_log(int dfd, const char *name, char **ret, size_t *ret_len, struct bk_err *err)
{
	int r;

	r = bk_read_file_at(dfd, name, READ_MAX, ret, ret_len, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		*ret = NULL;
		*ret_len = 0;
		return 0;
	}
	return r;
}

/* Call fn on each line of buf, in order. */
static int each_line(const char *buf, size_t len, int (*fn)(const char *, size_t, void *), void *ud)
{
	size_t pos = 0;

	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t l = nl ? (size_t) (nl - (buf + pos)) : len - pos;
		int r;

		if (l > 0) {
			r = fn(buf + pos, l, ud);
			if (r < 0)
				return r;
		}
		pos += l + 1;
	}
	return 0;
}

struct collect {
	struct bk_event *evs; /* a ring of max_n (or a growing array when max_n is 0) */
	size_t max_n, n, cap, head;
	size_t skipped;
};

static int collect_line(const char *line, size_t len, void *ud)
{
	struct collect *c = ud;
	struct bk_event ev;
	int r;

	r = parse_line(line, len, &ev);
	if (r == -EINVAL) {
		c->skipped++;
		return 0;
	}
	if (r < 0)
		return r;
	if (c->max_n > 0 && c->n == c->max_n) {
		/* Full: the oldest goes. */
		bk_event_release(&c->evs[c->head]);
		c->evs[c->head] = ev;
		c->head = (c->head + 1) % c->max_n;
		return 0;
	}
	if (c->n == c->cap) {
		size_t cap = c->max_n > 0 ? c->max_n : (c->cap ? c->cap * 2 : 64);
		struct bk_event *n = realloc(c->evs, cap * sizeof(*n));

		if (!n) {
			bk_event_release(&ev);
			return -ENOMEM;
		}
		c->evs = n;
		c->cap = cap;
	}
	c->evs[c->n++] = ev;
	return 0;
}

int bk_events_read(int state_dfd, size_t max_n, struct bk_event **ret, size_t *ret_n,
		   size_t *ret_skipped, struct bk_err *err)
{
	static const char *const files[] = { BK_EVENTS_OLD_FILE, BK_EVENTS_FILE };
	struct collect c = { .max_n = max_n };
	struct bk_event *out;
	int r;

	for (size_t i = 0; i < BK_ELEMENTSOF(files); i++) {
		_cleanup_free_ char *buf = NULL;
		size_t len = 0;

		r = read_log(state_dfd, files[i], &buf, &len, err);
		if (r >= 0 && buf) {
			r = each_line(buf, len, collect_line, &c);
			if (r < 0)
				(void) bk_err_set(err, r, "out of memory");
		}
		if (r < 0) {
			bk_events_free(c.evs, c.n);
			return r;
		}
	}
	/* Unroll the ring: oldest first. */
	out = NULL;
	if (c.n > 0) {
		out = calloc(c.n, sizeof(*out));
		if (!out) {
			bk_events_free(c.evs, c.n);
			return bk_err_set(err, -ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < c.n; i++)
			out[i] = c.evs[(c.head + i) % c.n];
	}
	free(c.evs);
	*ret = out;
	*ret_n = c.n;
	if (ret_skipped)
		*ret_skipped = c.skipped;
	return 0;
}

/* The last failed event of buf, scanning lines from the end: 1 found, 0 none, <0 error. */
static int last_failure_in(const char *buf, size_t len, struct bk_event *ret)
{
	size_t end = len;

	while (end > 0) {
		size_t start = end;
		struct bk_event ev;
		int r;

		while (start > 0 && buf[start - 1] != '\n')
			start--;
		/* Cheap filter first: only lines that mention the result are parsed. */
		if (end > start && memmem(buf + start, end - start, "\"failed\"", 8)) {
			r = parse_line(buf + start, end - start, &ev);
			if (r == -ENOMEM)
				return r;
			if (r == 0 && ev.result && strcmp(ev.result, "failed") == 0) {
				*ret = ev;
				return 1;
			}
			if (r == 0)
				bk_event_release(&ev);
		}
		end = start > 0 ? start - 1 : 0;
	}
	return 0;
}

int bk_events_last_failure(int state_dfd, struct bk_event *ret, struct bk_err *err)
{
	static const char *const files[] = { BK_EVENTS_FILE, BK_EVENTS_OLD_FILE };

	for (size_t i = 0; i < BK_ELEMENTSOF(files); i++) {
		_cleanup_free_ char *buf = NULL;
		size_t len = 0;
		int r;

		r = read_log(state_dfd, files[i], &buf, &len, err);
		if (r < 0)
			return r;
		if (!buf)
			continue;
		r = last_failure_in(buf, len, ret);
		if (r < 0)
			return bk_err_set(err, r, "out of memory");
		if (r > 0)
			return 1;
	}
	return 0;
}
