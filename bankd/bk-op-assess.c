/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Boot assessment: health checks, then mark-good or mark-bad on a trial boot (bk-op-assess.h). */
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
#include "bk-op-assess.h"

static const char *const action_names[_BK_ASSESS_ACTION_MAX] = {
	[BK_ASSESS_NONE] = "none",
	[BK_ASSESS_MARKED_GOOD] = "marked-good",
	[BK_ASSESS_MARKED_BAD] = "marked-bad",
};

const char *bk_assess_action_to_string(enum bk_assess_action a)
{
	if (a < 0 || a >= _BK_ASSESS_ACTION_MAX)
		return NULL;
	return action_names[a];
}

void bk_op_assess_result_release(struct bk_op_assess_result *res)
{
	res->required = bk_hook_run_free(res->required);
	res->wanted = bk_hook_run_free(res->wanted);
	res->failed = NULL;
}

/* "ROOT/etc/bootbank/health.d/KIND.d" as an absolute path (the runner takes a path). */
static int check_dir(struct bk_op_ctx *ctx, const char *rel, char **ret, struct bk_err *err)
{
	_cleanup_free_ char *real = realpath(ctx->root, NULL);

	if (!real)
		return bk_err_set(err, -errno, "cannot resolve root '%s': %m", ctx->root);
	if (asprintf(ret, "%s%s" BK_OP_ETC_DIR "/%s", real, strcmp(real, "/") == 0 ? "" : "/",
		     rel) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

/* One line saying how a check ended: "ok", "exit status 1", "timed out after 5000 ms". */
static void verdict(const struct bk_hook_result *h, uint64_t timeout_ms, char *buf, size_t len)
{
	if (h->timed_out)
		(void) snprintf(buf, len, "timed out after %llu ms",
				(unsigned long long) timeout_ms);
	else if (h->status < 0)
		(void) snprintf(buf, len, "killed by signal %d", h->signal);
	else if (h->status > 0)
		(void) snprintf(buf, len, "exit status %d", h->status);
	else
		(void) snprintf(buf, len, "ok");
}

static bool check_failed(const struct bk_hook_result *h)
{
	return h->status != 0 || h->timed_out;
}

/*
 * A failing check's event message (docs/systemd.md, "Health checks"): never more than
 * BK_EVENTS_MESSAGE_MAX bytes, so the events log keeps all of it (it cuts longer messages at
 * their end, which would lose the output's end, the part that says what went wrong).
 */
struct msgbuf {
	char s[BK_EVENTS_MESSAGE_MAX + 1];
	size_t len;
};

/* The first line, the headings and the markers around the kept output, at their longest. */
#define MSG_OVERHEAD                                \
	(64 /* verdict */ + 2 + 3 /* "..." */ + 1 + \
	 2 * (8 /* "stderr:\n" */ + 24 /* bytes cut */ + 1 + 80 /* not captured */))
_Static_assert(BK_ASSESS_EVENT_OUTPUT_MAX + BK_ASSESS_EVENT_LAST_LINE_MAX + MSG_OVERHEAD <=
		       BK_EVENTS_MESSAGE_MAX,
	       "a failing check's event message must fit the events' message bound");

static void msg_add(struct msgbuf *m, const char *p, size_t n)
{
	if (n > BK_EVENTS_MESSAGE_MAX - m->len)
		n = BK_EVENTS_MESSAGE_MAX - m->len;
	memcpy(m->s + m->len, p, n);
	m->len += n;
	m->s[m->len] = '\0';
}

static void msg_addf(struct msgbuf *m, const char *fmt, ...) _printf_(2, 3);
static void msg_addf(struct msgbuf *m, const char *fmt, ...)
{
	size_t room = sizeof(m->s) - m->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(m->s + m->len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		m->len += (size_t) n < room ? (size_t) n : room - 1;
}

/*
 * Output as text for the log and a terminal: newlines and tabs kept, a CR before a newline
 * dropped, every other control byte (escape sequences, a lone CR) shown as '?' (JSON would
 * escape each as six bytes).
 */
static void msg_add_text(struct msgbuf *m, const char *p, size_t n)
{
	for (size_t i = 0; i < n && m->len < BK_EVENTS_MESSAGE_MAX; i++) {
		unsigned char c = (unsigned char) p[i];

		if (c == '\r' && (i + 1 == n || p[i + 1] == '\n'))
			continue;
		if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
			c = '?';
		m->s[m->len++] = (char) c;
	}
	m->s[m->len] = '\0';
}

/* The length of s without its trailing blanks and newlines. */
static size_t trimmed_len(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	while (n > 0 && strchr(" \t\r\n", s[n - 1]))
		n--;
	return n;
}

/* Where the last budget bytes of s[0, len) start: at a line's start when one begins there. */
static size_t tail_start(const char *s, size_t len, size_t budget)
{
	size_t start;
	const char *nl;

	if (len <= budget)
		return 0;
	start = len - budget;
	if (s[start - 1] != '\n') {
		nl = memchr(s + start, '\n', len - start);
		if (nl)
			return (size_t) (nl + 1 - s);
	}
	/* One line longer than the budget: its end, not cutting a UTF-8 sequence. */
	while (start < len && ((unsigned char) s[start] & 0xc0) == 0x80)
		start++;
	return start;
}

/* "stderr:", a marker when the start was cut, the kept end, a marker when the runner cut. */
static void msg_add_stream(struct msgbuf *m, const char *name, const char *s, size_t len,
			   size_t budget, bool truncated)
{
	size_t start = tail_start(s, len, budget);

	if (len == 0 && !truncated)
		return;
	msg_addf(m, "\n%s:", name);
	if (start > 0)
		msg_addf(m, "\n[... %zu bytes cut]", start);
	if (len > start) {
		msg_add(m, "\n", 1);
		msg_add_text(m, s + start, len - start);
	}
	if (truncated)
		msg_addf(m, "\n[... the rest was not captured (%u KiB per stream)]",
			 (unsigned) (BK_HOOK_OUTPUT_MAX / 1024));
}

/*
 * The event message of a failing check: "VERDICT: LAST LINE" (the line stderr ended with,
 * else stdout's, its first BK_ASSESS_EVENT_LAST_LINE_MAX bytes); when the output is more than
 * that line, the output's end follows, stdout then stderr, each under its name: the
 * last BK_ASSESS_EVENT_OUTPUT_MAX bytes of the two together (a stream shorter than its half
 * leaves the rest to the other), from a line's start, "[... N bytes cut]" before.
 */
static void check_message(const struct bk_hook_result *h, const char *v, const char *last,
			  struct msgbuf *m)
{
	size_t lo = trimmed_len(h->out), le = trimmed_len(h->errout), ll = strlen(last);
	size_t half = BK_ASSESS_EVENT_OUTPUT_MAX / 2, bo, be;
	bool cut = false;

	if (ll > BK_ASSESS_EVENT_LAST_LINE_MAX) {
		ll = BK_ASSESS_EVENT_LAST_LINE_MAX;
		while (ll > 0 && ((unsigned char) last[ll] & 0xc0) == 0x80)
			ll--;
		cut = true;
	}
	msg_addf(m, "%s%s", v, last[0] ? ": " : "");
	msg_add_text(m, last, ll);
	if (cut)
		msg_add(m, "...", 3);
	/* The last line was all of it: nothing more to keep. */
	if (!cut && !h->out_truncated && !h->err_truncated &&
	    ((lo == 0 && le == ll && strncmp(h->errout, last, ll) == 0) ||
	     (le == 0 && lo == ll && strncmp(h->out, last, ll) == 0)))
		return;
	if (lo + le <= BK_ASSESS_EVENT_OUTPUT_MAX)
		bo = lo, be = le;
	else if (le <= half)
		be = le, bo = BK_ASSESS_EVENT_OUTPUT_MAX - le;
	else if (lo <= half)
		bo = lo, be = BK_ASSESS_EVENT_OUTPUT_MAX - lo;
	else
		bo = half, be = BK_ASSESS_EVENT_OUTPUT_MAX - half;
	msg_add_stream(m, "stdout", h->out, lo, bo, h->out_truncated);
	msg_add_stream(m, "stderr", h->errout, le, be, h->err_truncated);
}

/*
 * Each check of run as a task step: its verdict and the last line of its output, and for a
 * failing check the end of its output (check_message()).
 */
static void record_run(struct bk_op_task *t, const char *kind, const struct bk_hook_run *run,
		       uint64_t timeout_ms)
{
	for (size_t i = 0; run && i < run->n_results; i++) {
		const struct bk_hook_result *h = &run->results[i];
		_cleanup_free_ char *last = bk_hook_last_line(h->errout[0] ? h->errout : h->out);
		struct msgbuf m = { .len = 0 };
		char step[192], v[64];
		bool failed = check_failed(h);

		verdict(h, timeout_ms, v, sizeof(v));
		(void) snprintf(step, sizeof(step), "%s check '%s'", kind, h->name);
		if (failed)
			check_message(h, v, last ? last : "", &m);
		/* A passing check: its verdict and last line, as always. */
		bk_op_task_step(t, step, failed ? -EPROTO : 0,
				failed && strcmp(kind, "wanted") == 0 ? "warning" : NULL,
				bk_op_realtime_ns() - h->duration_ms * 1000000u,
				h->duration_ms * 1000000u, "%s%s%s", failed ? m.s : v,
				!failed && last && last[0] ? ": " : "",
				!failed && last ? last : "");
		/* Every output line under the step (observer only; events keep the end). */
		for (int s = 0; s < 2; s++) {
			const char *p = s == 0 ? h->out : h->errout;

			while (p && *p) {
				const char *nl = strchr(p, '\n');
				int n = nl ? (int) (nl - p) : (int) strlen(p);

				if (n > 0)
					bk_op_task_detail(t, "%.*s", n, p);
				p += n + (nl ? 1 : 0);
			}
		}
	}
}

/*
 * The conflicts of the /etc carry-forward the initramfs reported (run/bootbank/etc-conflicts,
 * one path a line, docs/initramfs.md) as events of this task, once: the file is removed.
 */
static void record_etc_conflicts(struct bk_op_ctx *ctx, struct bk_op_task *t)
{
	_cleanup_close_ int dfd = -EBADF;
	_cleanup_free_ char *buf = NULL;
	char *line, *save = NULL;

	dfd = bk_open_beneath(ctx->root_fd, BK_OP_RUN_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			      false);
	if (dfd < 0 ||
	    bk_read_file_at(dfd, BK_ASSESS_ETC_CONFLICTS, 1024 * 1024, &buf, NULL, NULL) < 0)
		return;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		bk_op_task_step(t, "etc carry-forward", -EEXIST, "warning", bk_op_realtime_ns(), 0,
				"%s: changed locally and by the new image; the local version is "
				"kept",
				line);
	(void) unlinkat(dfd, BK_ASSESS_ETC_CONFLICTS, 0);
}

static int write_result(struct bk_op_ctx *ctx, const struct bk_op_assess_result *res,
			struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = bk_op_assess_result_to_json(res);
	_cleanup_close_ int dfd = -EBADF;
	const char *s;
	int r;

	if (!o)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = bk_op_open_dir(ctx, BK_OP_RUN_DIR, true, &dfd, err);
	if (r < 0)
		return r;
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	return bk_write_atomic_at(dfd, BK_ASSESS_FILE, s, strlen(s), 0644, 0, err);
}

static int booted_state(struct bk_op_ctx *ctx, enum bk_bank_id *ret_bank,
			enum bk_bank_state *ret_state, struct bk_err *err)
{
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_booted booted;
	struct bk_boot_data d;
	int r;

	r = bk_op_booted(ctx, &booted, NULL, err);
	if (r < 0)
		return r;
	if (r > 0)
		return bk_err_set(err, -ENOENT,
				  "cannot tell which bank is booted: no '%s' and no bootbank.bank= "
				  "on the kernel command line",
				  bk_op_path(ctx, BK_OP_RUN_DIR "/" BK_BOOTED_FILE));
	r = bk_op_boot_load(ctx, &b, &d, err);
	if (r < 0)
		return r;
	*ret_bank = booted.bank;
	*ret_state = d.state.bank[booted.bank].state;
	return 0;
}

int bk_op_assess_is_trial(struct bk_op_ctx *ctx, bool *ret, struct bk_err *err)
{
	enum bk_bank_id bank;
	enum bk_bank_state state;
	int r;

	r = booted_state(ctx, &bank, &state, err);
	if (r < 0)
		return r;
	*ret = state == BK_BANK_TRYING;
	return 0;
}

int bk_op_assess(struct bk_op_ctx *ctx, const struct bk_op_assess_options *o,
		 struct bk_op_assess_result *res, struct bk_err *err)
{
	uint64_t timeout_ms = o && o->timeout_ms ? o->timeout_ms : BK_ASSESS_TIMEOUT_MS_DEFAULT;
	_cleanup_free_ char *req_dir = NULL, *want_dir = NULL;
	struct bk_boot_decision next;
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_err rerr = { 0 }, werr = { 0 };
	struct bk_op_task t;
	int r, rr, rw;

	*res = (struct bk_op_assess_result){ .bank = _BK_BANK_INVALID, .next = _BK_BANK_INVALID };
	r = booted_state(ctx, &res->bank, &res->state, err);
	if (r < 0)
		return r;
	res->trial = res->state == BK_BANK_TRYING;

	r = check_dir(ctx, BK_ASSESS_REQUIRED_DIR, &req_dir, err);
	if (r < 0)
		return r;
	r = check_dir(ctx, BK_ASSESS_WANTED_DIR, &want_dir, err);
	if (r < 0)
		return r;

	/*
	 * The checks run before the lock is taken: a slow check must not keep an operator's
	 * verb busy. The boot state is read again under the lock by the mark below.
	 */
	if (o && o->fail_reason) {
		rr = rw = 0;
		(void) snprintf(res->reason, sizeof(res->reason), "%s", o->fail_reason);
	} else {
		rr = bk_hooks_run(req_dir, BK_HOOK_HEALTH, &(struct bk_hook_env){ 0 }, timeout_ms,
				  &res->required, &rerr);
		rw = bk_hooks_run(want_dir, BK_HOOK_HEALTH, &(struct bk_hook_env){ 0 }, timeout_ms,
				  &res->wanted, &werr);
	}

	for (size_t i = 0; res->required && i < res->required->n_results; i++)
		if (check_failed(&res->required->results[i])) {
			char v[64];

			res->failed = res->required->results[i].name;
			verdict(&res->required->results[i], timeout_ms, v, sizeof(v));
			(void) snprintf(res->reason, sizeof(res->reason),
					"health check '%s' failed: %s", res->failed, v);
			break;
		}
	/*
	 * Required checks that could not be listed or started (a check others could rewrite,
	 * an unreadable directory) fail the assessment: nothing vouched for the boot.
	 */
	if (!res->reason[0] && rr < 0 && rr != -EPROTO)
		(void) snprintf(res->reason, sizeof(res->reason), "required health checks: %.200s",
				rerr.msg[0] ? rerr.msg : strerror(-rr));
	if (rw < 0 && rw != -EPROTO)
		res->n_wanted_failed++;
	for (size_t i = 0; res->wanted && i < res->wanted->n_results; i++)
		if (check_failed(&res->wanted->results[i]))
			res->n_wanted_failed++;

	r = bk_op_lock(ctx, err);
	if (r < 0)
		return r;
	/*
	 * The boot state again, now under the lock: a deadline (--fail-reason) or an operator
	 * that marked the bank meanwhile wins; a bank no longer trying is never marked here.
	 */
	if (res->trial) {
		enum bk_bank_id bank;
		enum bk_bank_state state;

		r = booted_state(ctx, &bank, &state, err);
		if (r < 0)
			return r;
		res->trial = state == BK_BANK_TRYING;
	}
	bk_op_task_init(&t, ctx, "assess", false);
	bk_op_task_begin(&t, bk_bank_id_to_string(res->bank));
	record_etc_conflicts(ctx, &t);
	record_run(&t, "required", res->required, timeout_ms);
	record_run(&t, "wanted", res->wanted, timeout_ms);
	if (rr < 0 && rr != -EPROTO)
		bk_op_task_step(&t, "required checks", rr, NULL, bk_op_realtime_ns(), 0, "%s",
				rerr.msg);
	if (rw < 0 && rw != -EPROTO)
		bk_op_task_step(&t, "wanted checks", rw, "warning", bk_op_realtime_ns(), 0, "%s",
				werr.msg);

	if (res->trial && !res->reason[0]) {
		r = bk_op_mark(ctx, true, bk_bank_id_to_string(res->bank), NULL, &res->mark, err);
		if (r >= 0)
			res->action = BK_ASSESS_MARKED_GOOD;
	} else if (res->trial) {
		r = bk_op_mark(ctx, false, bk_bank_id_to_string(res->bank), res->reason, &res->mark,
			       err);
		if (r >= 0)
			res->action = BK_ASSESS_MARKED_BAD;
	} else {
		r = bk_op_boot_load(ctx, &b, &res->mark.d, err);
	}
	if (r < 0) {
		bk_op_task_step(&t, "verdict", r, NULL, bk_op_realtime_ns(), 0, "%s", err->msg);
		bk_op_task_release(&t);
		return r;
	}

	/* Reboot only when the loader would then boot the other bank: never a reboot loop. */
	if (bk_select_decide(&res->mark.d.state, false, &next, NULL) >= 0) {
		res->next = next.bank;
		res->reboot = res->action == BK_ASSESS_MARKED_BAD && next.bank != res->bank &&
			      next.bank != _BK_BANK_INVALID && next.reason != BK_REASON_EMERGENCY;
	}
	bk_op_task_step(
		&t, "verdict", res->reason[0] ? -EPROTO : 0,
		res->reason[0] && res->action != BK_ASSESS_MARKED_BAD ? "warning" : NULL,
		bk_op_realtime_ns(), 0, "bank %s (%s%s): %s%s%s; %zu wanted check(s) failed%s",
		bk_bank_id_to_string(res->bank), bk_bank_state_to_string(res->state),
		res->trial ? ", trial boot" : "",
		res->action == BK_ASSESS_MARKED_GOOD ? "marked good" :
		res->action == BK_ASSESS_MARKED_BAD  ? "marked bad" :
						       "reported only",
		res->reason[0] ? ": " : "", res->reason, res->n_wanted_failed,
		res->reboot			    ? "; rebooting into the other bank" :
		res->action == BK_ASSESS_MARKED_BAD ? "; no other bank can boot, not rebooting" :
						      "");
	bk_op_task_release(&t);
	return write_result(ctx, res, err);
}

static struct json_object *run_json(const struct bk_hook_run *run)
{
	_cleanup_(json_object_putp) struct json_object *a = json_object_new_array();

	if (!a)
		return NULL;
	for (size_t i = 0; run && i < run->n_results; i++) {
		const struct bk_hook_result *h = &run->results[i];
		struct json_object *c = json_object_new_object();

		if (json_object_array_add(a, c) < 0 || bk_json_add_string(c, "name", h->name) < 0 ||
		    bk_json_add(c, "status", json_object_new_int(h->status)) < 0 ||
		    bk_json_add(c, "signal", json_object_new_int(h->signal)) < 0 ||
		    bk_json_add_bool(c, "timed_out", h->timed_out) < 0 ||
		    bk_json_add_bool(c, "ok", !check_failed(h)) < 0 ||
		    bk_json_add_u64(c, "duration_ms", h->duration_ms) < 0 ||
		    bk_json_add_string(c, "stdout", h->out) < 0 ||
		    bk_json_add_string(c, "stderr", h->errout) < 0)
			return NULL;
	}
	return TAKE_PTR(a);
}

struct json_object *bk_op_assess_result_to_json(const struct bk_op_assess_result *res)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();

	if (!o || bk_op_json_add_nullable(o, "bank", bk_bank_id_to_string(res->bank)) < 0 ||
	    bk_op_json_add_nullable(o, "state", bk_bank_state_to_string(res->state)) < 0 ||
	    bk_json_add_bool(o, "trial", res->trial) < 0 ||
	    bk_json_add(o, "required", run_json(res->required)) < 0 ||
	    bk_json_add(o, "wanted", run_json(res->wanted)) < 0 ||
	    bk_op_json_add_nullable(o, "failed", res->failed) < 0 ||
	    bk_json_add_u64(o, "wanted_failed", res->n_wanted_failed) < 0 ||
	    bk_json_add_string(o, "action", bk_assess_action_to_string(res->action)) < 0 ||
	    bk_op_json_add_nullable(o, "reason", res->reason[0] ? res->reason : NULL) < 0 ||
	    bk_json_add_bool(o, "reboot", res->reboot) < 0 ||
	    bk_op_json_add_nullable(o, "next", bk_bank_id_to_string(res->next)) < 0 ||
	    bk_json_add(o, "boot", bk_op_bootstate_json(&res->mark.d)) < 0)
		return NULL;
	return TAKE_PTR(o);
}
