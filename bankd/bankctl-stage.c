/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl stage IMAGE.bbi: the front end of the stage operation (bankd/bk-op-stage.h): a
 * progress bar on a terminal, JSON Lines progress with --json, the result. Also the one-line
 * text of a bank's content record for status.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bankctl.h"
#include "bk-bank.h"
#include "bk-cms.h"
#include "bk-fetch.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-op-remediate.h"
#include "bk-op-stage.h"
#include "bk-op.h"
#include "bk-sha256.h"

BK_DEFINE_CLEANUP(struct bk_keyring *, bk_keyring_free)

const char *bankctl_bank_content_text(struct json_object *content, char *buf, size_t len)
{
	const char *name = NULL, *version = NULL, *build = NULL, *digest = NULL, *error = NULL;
	uint64_t staged = 0;
	char when[64] = "at an unknown time";
	time_t t;
	struct tm tm;

	if (bk_json_get_string(content, "error", false, &error, NULL) == 0) {
		(void) snprintf(buf, len, "unreadable: %s", error);
		return buf;
	}
	(void) bk_json_get_string(content, "name", false, &name, NULL);
	(void) bk_json_get_string(content, "version", false, &version, NULL);
	(void) bk_json_get_string(content, "build", false, &build, NULL);
	(void) bk_json_get_string(content, "manifest_sha256", false, &digest, NULL);
	(void) bk_json_get_u64(content, "staged", false, UINT64_MAX, &staged, NULL);
	t = (time_t) staged;
	if (staged > 0 && gmtime_r(&t, &tm))
		(void) strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
	(void) snprintf(buf, len, "%s %s (build %s), manifest %.16s..., staged %s",
			name ? name : "?", version ? version : "?", build ? build : "?",
			digest ? digest : "?", when);
	return buf;
}

/* ---- progress ---------------------------------------------------------------------------- */

struct progress {
	bool json;
	bool bar;	     /* stderr is a terminal */
	bool drawn;	     /* a bar is on the screen (clear it before other output) */
	uint64_t start_ns;   /* when writing started */
	uint64_t last_ns;    /* last draw or event */
	uint64_t bytes_done; /* as of the last callback */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static double mib(uint64_t bytes)
{
	return (double) bytes / (1 << 20);
}

static void progress_cb(void *userdata, const struct bk_stage_progress *p)
{
	struct progress *pr = userdata;
	uint64_t now = now_ns();
	bool last = p->end && p->index + 1 == p->n_payloads;
	double secs = (double) (now - pr->start_ns) / 1e9;
	double rate = secs > 0 ? (double) p->done / secs : 0;

	if (pr->start_ns == 0)
		pr->start_ns = now;
	pr->bytes_done = p->done;
	/* At most ~10 redraws or events a second, and always the last one. */
	if (!last && pr->last_ns != 0 && now - pr->last_ns < 100000000u)
		return;
	pr->last_ns = now;

	if (pr->json) {
		printf("{\"event\":\"progress\",\"payload\":\"%s\",\"index\":%zu,\"payloads\":%zu,"
		       "\"bytes\":%" PRIu64 ",\"total\":%" PRIu64 ",\"payload_bytes\":%" PRIu64
		       ",\"payload_size\":%" PRIu64 "}\n",
		       p->payload, p->index, p->n_payloads, p->done, p->total, p->payload_done,
		       p->payload_size);
		fflush(stdout);
		return;
	}
	if (pr->bar) {
		const int width = 30;
		int fill = p->total ? (int) ((double) p->done / (double) p->total * width) : width;
		char bar[64], eta[32] = "";

		for (int i = 0; i < width; i++)
			bar[i] = i < fill ? '#' : '-';
		bar[width] = '\0';
		if (rate > 0 && p->done < p->total)
			snprintf(eta, sizeof(eta), "  ETA %.0fs",
				 (double) (p->total - p->done) / rate);
		fprintf(stderr, "\r\033[K[%s] %3d%%  %.1f/%.1f MiB  %.1f MB/s%s  %.24s", bar,
			p->total ? (int) (p->done * 100 / p->total) : 100, mib(p->done),
			mib(p->total), rate / 1e6, eta, p->payload);
		pr->drawn = true;
	}
}

static void progress_clear(struct progress *pr)
{
	if (pr->drawn)
		fputs("\r\033[K", stderr);
	pr->drawn = false;
}

/* ---- the verb ---------------------------------------------------------------------------- */

static void print_text(const struct bk_op_stage_result *res)
{
	const struct bk_bank_record *rec = res->record;
	const struct bk_bank_boot *bb = &res->d.state.bank[res->bank];
	char hex[BK_SHA256_HEX_LEN + 1];

	bk_sha256_to_hex(rec->manifest_sha256, hex);
	printf("staged %s %s (build %s) into bank %s (%s)\n", rec->name, rec->version, rec->build,
	       bk_bank_id_to_string(res->bank), res->why);
	printf("  %zu %s, %.1f MiB in %.2f s (%.1f MB/s), hashed while written\n", rec->n_payloads,
	       rec->n_payloads == 1 ? "payload" : "payloads", mib(res->bytes), res->seconds,
	       res->seconds > 0 ? (double) res->bytes / res->seconds / 1e6 : 0.0);
	if (res->bytes_reused > 0 || res->bytes_resumed > 0)
		printf("  %.1f MiB fetched, %.1f MiB reused from the booted bank, %.1f MiB kept "
		       "from an interrupted stage\n",
		       mib(res->bytes_fetched), mib(res->bytes_reused), mib(res->bytes_resumed));
	printf("  signed by %s, security epoch %" PRIu64 ", manifest sha256 %.16s...\n",
	       rec->signer[0] ? rec->signer : "?", rec->security_epoch, hex);
	if (res->activated)
		printf("  bank %s activated: generation %" PRIu64 ", %" PRIu64 " %s to boot and be "
		       "marked good\n",
		       bk_bank_id_to_string(res->bank), bb->generation, bb->tries_left,
		       bb->tries_left == 1 ? "try" : "tries");
	else
		printf("  bank %s is staged, not activated: 'bankctl activate %s' lets the loader "
		       "try it\n",
		       bk_bank_id_to_string(res->bank), bk_bank_id_to_string(res->bank));
	if (res->etc.done) {
		printf("  /etc: bank %s's layer carried forward into bank %s's (%zu %s)\n",
		       bk_bank_id_to_string(res->etc.from), bk_bank_id_to_string(res->bank),
		       res->etc.n_entries, res->etc.n_entries == 1 ? "entry" : "entries");
		for (size_t i = 0; i < res->etc.n_conflicts; i++)
			printf("  /etc conflict: %s: changed locally and by the new image; the "
			       "local version is kept\n",
			       res->etc.conflicts[i]);
	} else if (res->etc.tried) {
		printf("  /etc: not carried forward (%s): bank %s's first boot carries it\n",
		       res->etc.skipped, bk_bank_id_to_string(res->bank));
	}
	bankctl_print_next(&res->d.state);
}

static int print_json(const struct bk_op_stage_result *res)
{
	_cleanup_(json_object_putp) struct json_object *o = bk_op_stage_result_to_json(res);
	_cleanup_(json_object_putp) struct json_object *doc = json_object_new_object();
	struct json_object_iterator it, end;

	if (!o || !doc || bk_json_add_string(doc, "event", "result") < 0 ||
	    bk_json_add_bool(doc, "ok", true) < 0)
		return -ENOMEM;
	/* "event" and "ok" first, then the result's members, as before. */
	it = json_object_iter_begin(o);
	end = json_object_iter_end(o);
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
		if (bk_json_add(doc, json_object_iter_peek_name(&it),
				json_object_get(json_object_iter_peek_value(&it))) < 0)
			return -ENOMEM;
	puts(bk_json_to_string(doc, false));
	return 0;
}

static void print_json_failure(int code, const struct bk_err *err, int r)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	char buf[128];

	if (!o)
		return;
	if (!err->msg[0])
		(void) snprintf(buf, sizeof(buf), "%s", strerror(r < 0 ? -r : r));
	if (bk_json_add_string(o, "event", "result") < 0 || bk_json_add_bool(o, "ok", false) < 0 ||
	    bk_json_add_u64(o, "exit_code", (uint64_t) code) < 0 ||
	    bk_json_add_string(o, "error", err->msg[0] ? err->msg : buf) < 0)
		return;
	puts(bk_json_to_string(o, false));
}

int bankctl_stage(struct bankctl *ctx, int argc, char **argv)
{
	enum {
		OPT_ACTIVATE = 0x100,
		OPT_ALLOW_DOWNGRADE,
		OPT_IGNORE_COMPATIBLE,
		OPT_KEYRING,
		OPT_NO_CHECK_TIME,
		OPT_DESIRED,
	};
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "activate", no_argument, NULL, OPT_ACTIVATE },
		{ "allow-downgrade", no_argument, NULL, OPT_ALLOW_DOWNGRADE },
		{ "ignore-compatible", no_argument, NULL, OPT_IGNORE_COMPATIBLE },
		{ "keyring", required_argument, NULL, OPT_KEYRING },
		{ "no-check-time", no_argument, NULL, OPT_NO_CHECK_TIME },
		{ "desired", no_argument, NULL, OPT_DESIRED },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_free_ char *desired_file = NULL;
	bool desired = false;
	_cleanup_(bk_keyring_freep) struct bk_keyring *keyring = NULL;
	struct bk_op_stage_opts o = { 0 };
	struct bk_op_stage_result res = { .bank = _BK_BANK_INVALID };
	struct progress pr = { 0 };
	_cleanup_close_ int fd = -EBADF;
	const char *keyring_arg = NULL;
	struct bk_err err = { 0 };
	int c, r, code;

	/* Options may follow IMAGE (no "+": getopt permutes). */
	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_ACTIVATE:
			o.activate = true;
			break;
		case OPT_ALLOW_DOWNGRADE:
			o.allow_downgrade = true;
			break;
		case OPT_IGNORE_COMPATIBLE:
			o.ignore_compatible = true;
			break;
		case OPT_KEYRING:
			keyring_arg = optarg;
			break;
		case OPT_NO_CHECK_TIME:
			o.no_check_time = true;
			break;
		case OPT_DESIRED:
			desired = true;
			break;
		default:
			if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
				return BK_EXIT_USAGE;
		}
	}
	if (optind >= argc && !desired)
		return bankctl_usage(ctx->verb, "missing IMAGE.bbi");
	if (!desired)
		o.path = argv[optind++];
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);
	if (!ctx->op.configured)
		return bankctl_usage(ctx->verb, "nothing is configured: no '%s'",
				     ctx->op.config_path);

	/* A keyring that cannot be loaded is a configuration error (exit 2), as for verify. */
	r = bk_op_keyring_load(&ctx->op, keyring_arg, &keyring, &err);
	if (r < 0) {
		code = r == -ENOMEM ? BK_EXIT_FAILURE : BK_EXIT_USAGE;
		bk_log(LOG_ERR, "%s", err.msg);
		if (ctx->json)
			print_json_failure(code, &err, r);
		return code;
	}

	o.keyring = keyring;
	pr.json = ctx->json;
	pr.bar = !ctx->json && isatty(STDERR_FILENO);
	if (pr.json || pr.bar) {
		ctx->op.obs.progress = progress_cb;
		ctx->op.obs.userdata = &pr;
	}
	/* --desired: the desired image from the depot (vLCM's stage; docs/remediation.md). */
	/* An http:// or https:// URL is read by the operation (bk-fetch.h), never opened here. */
	if (!desired && bk_fetch_is_url(o.path))
		o.url = o.path;
	r = desired ? bk_op_desired_open(&ctx->op, &fd, &desired_file, NULL, &err) :
	    o.url   ? 0 :
		      bankctl_open_bundle(o.path, &fd, &err);
	if (r >= 0) {
		if (desired)
			o.path = desired_file;
		o.fd = fd;
		r = bk_op_stage(&ctx->op, &o, &res, &err);
	}
	progress_clear(&pr);
	if (r < 0) {
		code = bankctl_fail(r, &err);
		if (ctx->json)
			print_json_failure(code, &err, r);
		bk_op_stage_result_release(&res);
		return code;
	}
	if (ctx->json)
		r = print_json(&res);
	else
		print_text(&res);
	bk_op_stage_result_release(&res);
	return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
}
