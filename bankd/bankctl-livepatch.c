/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared by the live-patch verbs: paths beneath the root and recovery of a crashed switch. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bankctl-livepatch.h"
#include "bk-bundle.h"
#include "bk-cms.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-manifest.h"
#include "bk-rev.h"
#include "bk-sha256.h"

int bankctl_live_open(struct bankctl *ctx, struct bankctl_live *live, struct bk_err *err)
{
	char *real;
	int r;

	*live = (struct bankctl_live){ .state_dfd = -EBADF, .run_dfd = -EBADF };
	real = realpath(ctx->root, NULL);
	if (!real)
		return bk_err_set(err, -errno, "cannot resolve root '%s': %m", ctx->root);
	live->root_real = real;
	if (asprintf(&live->run_path, "%s%s" BANKCTL_RUN_DIR, real,
		     strcmp(real, "/") == 0 ? "" : "/") < 0 ||
	    asprintf(&live->hooks_dir, "%s%s" BANKCTL_ETC_DIR "/livepatch.d", real,
		     strcmp(real, "/") == 0 ? "" : "/") < 0) {
		live->run_path = live->hooks_dir = NULL;
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	r = bankctl_open_dir(ctx, BANKCTL_STATE_DIR, true, &live->state_dfd, err);
	if (r < 0)
		return r;
	r = bankctl_open_dir(ctx, BANKCTL_RUN_DIR, true, &live->run_dfd, err);
	if (r < 0)
		return r;
	live->lp = (struct bk_livepatch_ctx){
		.state_dfd = live->state_dfd,
		.run_dfd = live->run_dfd,
		.run_path = live->run_path,
		.hooks_dir = live->hooks_dir,
		.hook_timeout_ms = ctx->config.hook_timeout_sec * 1000,
		.freeze_timeout_ms = ctx->config.freeze_timeout_ms,
	};
	return 0;
}

void bankctl_live_close(struct bankctl_live *live)
{
	closep(&live->state_dfd);
	closep(&live->run_dfd);
	free(live->root_real);
	free(live->run_path);
	free(live->hooks_dir);
	*live = (struct bankctl_live){ .state_dfd = -EBADF, .run_dfd = -EBADF };
}

static int recover_with(struct bankctl_live *live, struct bk_err *err)
{
	_cleanup_free_ char *target = NULL;
	int r;

	r = bk_livepatch_recover(&live->lp, &target, err);
	if (r < 0)
		return r;
	if (r > 0)
		bk_log(LOG_NOTICE, "recovered an interrupted live patch%s%s%s",
		       target ? ": on '" : "", target ? target : "", target ? "'" : "");
	return 0;
}

int bankctl_live_recover(struct bankctl *ctx, struct bk_err *err)
{
	struct bankctl_live live;
	int r;

	r = bankctl_live_open(ctx, &live, err);
	if (r >= 0)
		r = recover_with(&live, err);
	bankctl_live_close(&live);
	return r;
}

int bankctl_live_lock_and_recover(struct bankctl *ctx, struct bankctl_live *live,
				  struct bk_err *err)
{
	int r;

	r = bankctl_lock(ctx, err);
	if (r < 0)
		return r;
	return recover_with(live, err);
}

static int add_nullable(struct json_object *o, const char *key, const char *s)
{
	if (!s)
		return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
	return bk_json_add_string(o, key, s);
}

static int hooks_json(struct json_object *parent, const char *key, const struct bk_hook_run *run)
{
	struct json_object *arr;

	if (!run)
		return 0;
	arr = json_object_new_array();
	if (bk_json_add(parent, key, arr) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < run->n_results; i++) {
		const struct bk_hook_result *h = &run->results[i];
		struct json_object *o = json_object_new_object();

		if (!o || json_object_array_add(arr, o) < 0 ||
		    bk_json_add_string(o, "name", h->name) < 0 ||
		    bk_json_add(o, "status", json_object_new_int(h->status)) < 0 ||
		    bk_json_add_bool(o, "timed_out", h->timed_out) < 0 ||
		    bk_json_add_string(o, "stdout", h->out) < 0 ||
		    bk_json_add_string(o, "stderr", h->errout) < 0 ||
		    bk_json_add_u64(o, "duration_ms", h->duration_ms) < 0)
			return -ENOMEM;
	}
	return 0;
}

static void print_hooks(const char *phase, const struct bk_hook_run *run)
{
	if (!run)
		return;
	for (size_t i = 0; i < run->n_results; i++) {
		const struct bk_hook_result *h = &run->results[i];
		_cleanup_free_ char *copy = strdup(h->out);
		char *line, *save = NULL;

		if (!copy)
			continue;
		for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			printf("  %s hook '%s': %s\n", phase, h->name, line);
	}
}

int bankctl_live_print_report(struct bankctl *ctx, const struct bk_lp_report *rep)
{
	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
		struct json_object *arr = json_object_new_array();

		if (!o || bk_json_add(o, "workloads", arr) < 0 ||
		    add_nullable(o, "from", rep->from) < 0 ||
		    bk_json_add_string(o, "to", rep->to) < 0 ||
		    bk_json_add_bool(o, "rolled_back", rep->rolled_back) < 0 ||
		    bk_json_add_u64(o, "total_us", rep->total_ns / 1000) < 0 ||
		    add_nullable(o, "hook_warning", rep->hook_warning) < 0 ||
		    hooks_json(o, "scan", rep->scan) < 0 ||
		    hooks_json(o, "apply", rep->apply) < 0 ||
		    hooks_json(o, "revert", rep->revert) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < rep->n_items; i++) {
			const struct bk_lp_report_item *it = &rep->items[i];
			struct json_object *w = json_object_new_object();
			char mode[2] = { it->mode, 0 };

			if (!w || json_object_array_add(arr, w) < 0 ||
			    bk_json_add_string(w, "name", it->name) < 0 ||
			    bk_json_add_bool(w, "running", it->running) < 0 ||
			    bk_json_add_bool(w, "skipped", it->skipped) < 0 ||
			    bk_json_add_bool(w, "switched", it->switched) < 0 ||
			    bk_json_add_string(w, "mode",
					       it->mode == BK_VIEW_BENEATH  ? "beneath" :
					       it->mode == BK_VIEW_STACKED  ? "stacked" :
					       it->mode == BK_VIEW_ATTACHED ? "attached" :
									      mode) < 0 ||
			    bk_json_add_u64(w, "frozen_us", it->frozen_ns / 1000) < 0 ||
			    bk_json_add_u64(w, "rollback_frozen_us",
					    it->rollback_frozen_ns / 1000) < 0)
				return -ENOMEM;
		}
		puts(bk_json_to_string(o, true));
		return 0;
	}
	print_hooks("scan", rep->scan);
	if (!rep->rolled_back)
		printf("switched from '%s' to '%s' in %.3f ms\n", rep->from ? rep->from : "(none)",
		       rep->to, (double) rep->total_ns / 1e6);
	for (size_t i = 0; i < rep->n_items; i++) {
		const struct bk_lp_report_item *it = &rep->items[i];

		if (!it->running)
			printf("  %-24s not running\n", it->name);
		else if (it->skipped)
			printf("  %-24s already on '%s'\n", it->name, rep->to);
		else if (it->frozen_ns)
			printf("  %-24s frozen %.3f ms (%s)%s\n", it->name,
			       (double) it->frozen_ns / 1e6,
			       it->mode == BK_VIEW_BENEATH ? "beneath" :
			       it->mode == BK_VIEW_STACKED ? "stacked" :
							     "attached",
			       rep->rolled_back && it->rollback_frozen_ns ? ", switched back" : "");
	}
	print_hooks("apply", rep->apply);
	print_hooks("revert", rep->revert);
	return 0;
}

/* --- bankctl livepatch apply|rollback ---------------------------------------------------- */

BK_DEFINE_CLEANUP(struct bk_keyring *, bk_keyring_free)

static const struct bankctl_verb verb_livepatch = {
	"livepatch", NULL, "livepatch apply|rollback ...",
	"apply a signed image's live payload to the running workloads, or go back"
};
static const struct bankctl_verb verb_apply = {
	"livepatch apply", NULL,
	"livepatch apply IMAGE.bbi [--keyring PATH] [--no-check-time] [--id ID] [--no-beneath] "
	"[--json]",
	"verify IMAGE.bbi, mount its live payload as a revision and switch every workload to it"
};
static const struct bankctl_verb verb_rollback = {
	"livepatch rollback", NULL, "livepatch rollback [--no-beneath] [--json]",
	"switch every workload back to the previous revision (revert hooks run)"
};

static char *mfree(char *p)
{
	free(p);
	return NULL;
}

/* "<name>-<version>" with every character a revision id may not hold replaced by '_'. */
static int default_id(const struct bk_manifest *m, char **ret)
{
	char *id;

	if (asprintf(&id, "%s-%s", m->name, m->version) < 0)
		return -ENOMEM;
	if (strlen(id) > BK_REV_ID_MAX)
		id[BK_REV_ID_MAX] = '\0';
	for (char *p = id; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-",
			    *p))
			*p = '_';
	if (!bk_rev_id_is_valid(id))
		id[0] = 'r';
	*ret = id;
	return 0;
}

static int keyring_load(struct bankctl *ctx, const char *arg, struct bk_keyring **ret,
			struct bk_err *err)
{
	const char *path = arg;
	char buf[4096];
	int r;

	if (!path) {
		path = ctx->config.keyring;
		if (strcmp(ctx->root, "/") != 0) {
			(void) snprintf(buf, sizeof(buf), "%s",
					bankctl_path(ctx, path + strspn(path, "/")));
			path = buf;
		}
	}
	r = bk_keyring_load(path, ret, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot load keyring '%s'", path);
	return 0;
}

/* The one live payload of the bundle, a squashfs or erofs filesystem. */
static int find_live_payload(const struct bk_bundle *b, const char *path,
			     const struct bk_payload **ret, struct bk_err *err)
{
	const struct bk_payload *p, *found = NULL;
	size_t it = 0;

	while (bk_bundle_next_payload(b, &it, &p) == 0) {
		if (!p->live)
			continue;
		if (found)
			return bk_err_set(err, -EOPNOTSUPP,
					  "'%s' has several live payloads ('%s', '%s'): only one "
					  "per live patch is supported",
					  path, found->name, p->name);
		found = p;
	}
	if (!found)
		return bk_err_set(err, -ENOENT, "'%s' has no live payload", path);
	if (found->fs != BK_FS_SQUASHFS && found->fs != BK_FS_EROFS)
		return bk_err_set(err, -EMEDIUMTYPE,
				  "'%s': live payload '%s' is %s, not squashfs or erofs", path,
				  found->name, bk_payload_fs_to_string(found->fs));
	*ret = found;
	return 0;
}

/* May the image live-patch the revision in service? */
static int check_base(struct bankctl_live *live, const struct bk_manifest *m, const char *path,
		      char **ret_current, struct bk_err *err)
{
	_cleanup_close_ int revs_dfd = -EBADF;
	_cleanup_free_ char *current = NULL;
	struct bk_rev rev = { 0 };
	bool ok = false;
	int r;

	r = bk_rev_pointer_get(live->run_dfd, BK_REV_CURRENT, &current, err);
	if (r == -ENOENT) {
		*ret_current = NULL;
		return 0; /* nothing in service yet: the first revision */
	}
	if (r < 0)
		return r;
	revs_dfd = openat(live->state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r = revs_dfd < 0 ? bk_err_set(err, -ENOENT, "no revision '%s'", current) :
			   bk_rev_load(revs_dfd, current, &rev, err);
	if (r < 0)
		return bk_err_prefix(err, "current revision");
	for (size_t i = 0; i < m->n_live_patch_from && rev.version; i++)
		ok = ok || strcmp(m->live_patch_from[i], rev.version) == 0;
	if (!ok)
		r = bk_err_set(
			err, -EMEDIUMTYPE,
			"'%s' (%s %s) cannot live-patch revision '%s' (version '%s'): not one "
			"of its live-patch base versions",
			path, m->name, m->version, current, rev.version ? rev.version : "");
	bk_rev_release(&rev);
	if (r < 0)
		return r;
	*ret_current = TAKE_PTR(current);
	return 0;
}

/* Record and mount the revision of payload p (or reuse an identical one). */
static int make_revision(struct bankctl_live *live, struct bk_bundle *b, const struct bk_payload *p,
			 const char *bundle_path, const char *id, const char *parent,
			 struct bk_err *err)
{
	const struct bk_manifest *m = bk_bundle_get_manifest(b);
	_cleanup_close_ int revs_dfd = -EBADF;
	char hex[BK_SHA256_HEX_LEN + 1];
	struct bk_rev rev = { 0 }, old = { 0 };
	int r;

	bk_sha256_to_hex(p->sha256, hex);
	r = bk_mkdir_p_at(live->state_dfd, BK_REVISIONS_DIR, 0755, &revs_dfd, err);
	if (r < 0)
		return r;
	r = bk_rev_load(revs_dfd, id, &old, NULL);
	if (r == 0) {
		bool same = strcmp(old.digest, hex) == 0;

		bk_rev_release(&old);
		if (!same)
			return bk_err_set(err, -EEXIST,
					  "revision '%s' exists with another payload (use --id)",
					  id);
		if (bk_rev_is_mounted(live->run_dfd, id))
			return 0;
		r = bk_rev_load(revs_dfd, id, &rev, err);
		if (r >= 0)
			r = bk_rev_mount_fd(live->run_dfd, live->run_path, &rev,
					    bk_bundle_get_fd(b), err);
		bk_rev_release(&rev);
		return r;
	}
	rev.id = strdup(id);
	rev.image = strdup(m->name);
	rev.version = strdup(m->version);
	rev.payload = strdup(p->name);
	rev.fstype = strdup(bk_payload_fs_to_string(p->fs));
	rev.digest = strdup(hex);
	rev.parent = parent ? strdup(parent) : NULL;
	rev.source = realpath(bundle_path, NULL);
	rev.offset = p->offset;
	rev.size = p->size;
	rev.created = (uint64_t) time(NULL);
	if (!rev.id || !rev.image || !rev.version || !rev.payload || !rev.fstype || !rev.digest ||
	    (parent && !rev.parent) || !rev.source) {
		bk_rev_release(&rev);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	r = bk_rev_save(revs_dfd, &rev, true, err);
	if (r >= 0) {
		r = bk_rev_mount_fd(live->run_dfd, live->run_path, &rev, bk_bundle_get_fd(b), err);
		if (r < 0)
			(void) bk_rev_remove_meta(revs_dfd, rev.id, NULL);
	}
	bk_rev_release(&rev);
	return r;
}

static int livepatch_apply(struct bankctl *ctx, int argc, char **argv)
{
	enum { OPT_KEYRING = 0x100, OPT_NO_CHECK_TIME, OPT_ID, OPT_NO_BENEATH };
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "keyring", required_argument, NULL, OPT_KEYRING },
		{ "no-check-time", no_argument, NULL, OPT_NO_CHECK_TIME },
		{ "id", required_argument, NULL, OPT_ID },
		{ "no-beneath", no_argument, NULL, OPT_NO_BENEATH },
		{ NULL, 0, NULL, 0 },
	};
	struct bankctl_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_(bk_lp_report_freep) struct bk_lp_report *rep = NULL;
	_cleanup_(bk_keyring_freep) struct bk_keyring *keyring = NULL;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_free_ char *id = NULL, *current = NULL;
	const char *keyring_arg = NULL, *id_arg = NULL, *path;
	bool no_check_time = false, no_beneath = false;
	_cleanup_close_ int fd = -EBADF;
	const struct bk_manifest *m = NULL;
	const struct bk_payload *p = NULL;
	struct bk_err err = { 0 };
	int c, r, ret = BK_EXIT_OK;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_KEYRING:
			keyring_arg = optarg;
			break;
		case OPT_NO_CHECK_TIME:
			no_check_time = true;
			break;
		case OPT_ID:
			id_arg = optarg;
			break;
		case OPT_NO_BENEATH:
			no_beneath = true;
			break;
		default:
			if (bankctl_common_option(ctx, c, &verb_apply) <= 0)
				return BK_EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return bankctl_usage(&verb_apply, "expected one IMAGE.bbi");
	if (id_arg && !bk_rev_id_is_valid(id_arg))
		return bankctl_usage(&verb_apply, "invalid revision id '%s'", id_arg);
	path = argv[optind];

	r = keyring_load(ctx, keyring_arg, &keyring, &err);
	if (r < 0) {
		bk_log(LOG_ERR, "%s", err.msg);
		return r == -ENOMEM ? BK_EXIT_FAILURE : BK_EXIT_USAGE;
	}
	r = bankctl_live_open(ctx, &live, &err);
	if (r >= 0)
		r = bankctl_live_lock_and_recover(ctx, &live, &err);
	if (r >= 0)
		r = bk_maint_check(live.state_dfd, "live patch", &err);
	if (r < 0)
		goto fail;
	if (no_beneath)
		live.lp.view_flags |= BK_VIEW_NO_BENEATH;

	/* Everything mounted comes from this one open, verified file. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = bk_err_set(&err, -errno, "cannot open '%s': %m", path);
		goto fail;
	}
	r = bk_bundle_open_verified(
		fd, keyring, no_check_time || !ctx->config.check_time ? BK_CMS_NO_CHECK_TIME : 0,
		&b, &err);
	if (r < 0) {
		(void) bk_err_prefix(&err, "'%s'", path);
		goto fail;
	}
	m = bk_bundle_get_manifest(b);
	if (ctx->config.compatible && strcmp(ctx->config.compatible, m->compatible) != 0) {
		r = bk_err_set(&err, -EMEDIUMTYPE, "'%s' is for '%s', this host is '%s'", path,
			       m->compatible, ctx->config.compatible);
		goto fail;
	}
	r = find_live_payload(b, path, &p, &err);
	if (r < 0)
		goto fail;
	if (id_arg)
		id = strdup(id_arg);
	else if (default_id(m, &id) < 0)
		id = NULL;
	if (!id) {
		r = bk_err_set(&err, -ENOMEM, "out of memory");
		goto fail;
	}
	if (bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL) == 0 &&
	    strcmp(current, id) == 0) {
		r = bk_err_set(&err, -EALREADY, "revision '%s' of '%s' is already in service", id,
			       path);
		goto fail;
	}
	current = mfree(current);
	r = check_base(&live, m, path, &current, &err);
	if (r >= 0)
		r = bk_bundle_verify_payload(b, p, &err);
	if (r < 0)
		goto fail;
	r = make_revision(&live, b, p, path, id, current, &err);
	if (r < 0)
		goto fail;
	r = bk_livepatch_switch(&live.lp, id, &rep, &err);
	if (rep)
		(void) bankctl_live_print_report(ctx, rep);
	if (rep && rep->hook_warning)
		bk_log(LOG_WARNING, "%s, ignoring", rep->hook_warning);
	if (r < 0) {
		if (rep && rep->rolled_back)
			(void) bk_err_prefix(&err, "live patch to '%s' rolled back", id);
		goto fail;
	}
	goto out;
fail:
	ret = bankctl_fail(r, &err);
out:
	bankctl_live_close(&live);
	return ret;
}

static int livepatch_rollback(struct bankctl *ctx, int argc, char **argv)
{
	enum { OPT_NO_BENEATH = 0x100 };
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "no-beneath", no_argument, NULL, OPT_NO_BENEATH },
		{ NULL, 0, NULL, 0 },
	};
	struct bankctl_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_(bk_lp_report_freep) struct bk_lp_report *rep = NULL;
	_cleanup_free_ char *previous = NULL;
	struct bk_err err = { 0 };
	bool no_beneath = false;
	int c, r, ret = BK_EXIT_OK;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_NO_BENEATH)
			no_beneath = true;
		else if (bankctl_common_option(ctx, c, &verb_rollback) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		return bankctl_usage(&verb_rollback, "unexpected argument '%s'", argv[optind]);
	r = bankctl_live_open(ctx, &live, &err);
	if (r >= 0)
		r = bankctl_live_lock_and_recover(ctx, &live, &err);
	if (r < 0)
		goto fail;
	r = bk_rev_pointer_get(live.run_dfd, BK_REV_PREVIOUS, &previous, &err);
	if (r == -ENOENT)
		r = bk_err_set(&err, -ENOENT, "no previous revision to go back to");
	if (r < 0)
		goto fail;
	live.lp.rollback = true;
	if (no_beneath)
		live.lp.view_flags |= BK_VIEW_NO_BENEATH;
	r = bk_livepatch_switch(&live.lp, previous, &rep, &err);
	if (rep)
		(void) bankctl_live_print_report(ctx, rep);
	if (r < 0)
		goto fail;
	goto out;
fail:
	ret = bankctl_fail(r, &err);
out:
	bankctl_live_close(&live);
	return ret;
}

int bankctl_livepatch(struct bankctl *ctx, int argc, char **argv)
{
	if (argc < 2)
		return bankctl_usage(&verb_livepatch, "missing sub-command");
	if (strcmp(argv[1], "apply") == 0)
		return livepatch_apply(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "rollback") == 0)
		return livepatch_rollback(ctx, argc - 1, argv + 1);
	return bankctl_usage(&verb_livepatch, "unknown sub-command '%s'", argv[1]);
}
