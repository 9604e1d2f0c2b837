/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl rev: mount revisions (list, add, switch, gc, restore). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bankctl-livepatch.h"
#include "bk-bank.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-manifest.h"
#include "bk-rev.h"
#include "bk-sha256.h"

static const struct bankctl_verb verb_rev = {
	"rev", NULL, "rev list|add|switch|gc|restore ...",
	"mount revisions: list, add, switch the workloads to one, gc, restore after a reboot"
};
static const struct bankctl_verb verb_list = { "rev list", NULL, "rev list [--json]",
					       "list the revisions" };
static const struct bankctl_verb verb_add = {
	"rev add", NULL,
	"rev add ID FILE [--type squashfs|erofs] [--offset N] [--size N] [--image NAME] "
	"[--version V] [--payload NAME] [--parent ID] [--digest SHA256]",
	"record a revision of a payload in FILE and mount it read-only at RUN/rev/ID"
};
static const struct bankctl_verb verb_switch = {
	"rev switch", NULL, "rev switch ID [--no-beneath] [--json]",
	"switch the current pointer and every workload's view to revision ID"
};
static const struct bankctl_verb verb_gc = {
	"rev gc", NULL, "rev gc [--keep N] [--json]",
	"remove revisions beyond the N newest (default 2), never the current or previous one "
	"nor one in use"
};
static const struct bankctl_verb verb_restore = {
	"rev restore", NULL, "rev restore",
	"after a reboot: mount the booted bank's revisions (and its image's live payload) and "
	"the revisions of other files again, and restore the current pointer"
};

static int add_nullable(struct json_object *o, const char *key, const char *s)
{
	if (!s)
		return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
	return bk_json_add_string(o, key, s);
}

/* A sub-verb's own option (long only) and where its value goes. */
struct rev_option {
	const char *name;
	enum {
		OPT_FLAG,   /* bool *: set to true */
		OPT_STRING, /* const char **: points into argv */
		OPT_STRDUP, /* char **: a copy, replacing an earlier one */
		OPT_SIZE,   /* uint64_t *: bk_parse_size(), else "invalid WHAT 'ARG'" */
		OPT_U64,    /* uint64_t *: bk_parse_u64(), else "invalid WHAT 'ARG'" */
	} kind;
	void *value;
	const char *what;
};

#define REV_OPTIONS_MAX 8
#define OPT_FIRST	0x100 /* getopt_long's value of opts[0]; above every short option */

static int set_option(const struct bankctl_verb *v, const struct rev_option *o, const char *arg)
{
	char **copy;

	switch (o->kind) {
	case OPT_FLAG:
		*(bool *) o->value = true;
		break;
	case OPT_STRING:
		*(const char **) o->value = arg;
		break;
	case OPT_STRDUP:
		copy = o->value;
		free(*copy);
		*copy = strdup(arg);
		if (!*copy)
			return bankctl_fail(-ENOMEM, NULL);
		break;
	case OPT_SIZE:
		if (bk_parse_size(arg, o->value) < 0)
			return bankctl_usage(v, "invalid %s '%s'", o->what, arg);
		break;
	case OPT_U64:
		if (bk_parse_u64(arg, o->value) < 0)
			return bankctl_usage(v, "invalid %s '%s'", o->what, arg);
		break;
	}
	return BK_EXIT_OK;
}

/*
 * The arguments of a sub-verb: the common options (--json, --help, --wait), its own
 * (opts[0..n_opts)), then exactly n_args operands from argv[optind] on; a wrong number is the
 * usage error "unexpected argument 'X'" (n_args 0) or "expected <expected>". Returns
 * BK_EXIT_OK, or the exit code after one line on stderr.
 */
static int parse_args(struct bankctl *ctx, const struct bankctl_verb *v,
		      const struct rev_option *opts, size_t n_opts, int n_args,
		      const char *expected, int argc, char **argv)
{
	static const struct option common[] = { BANKCTL_COMMON_LONGOPTS };
	struct option longopts[BK_ELEMENTSOF(common) + REV_OPTIONS_MAX + 1] = { { NULL } };
	int c, r;

	assert(n_opts <= REV_OPTIONS_MAX);
	memcpy(longopts, common, sizeof(common));
	for (size_t i = 0; i < n_opts; i++)
		longopts[BK_ELEMENTSOF(common) + i] =
			(struct option){ opts[i].name,
					 opts[i].kind == OPT_FLAG ? no_argument : required_argument,
					 NULL, OPT_FIRST + (int) i };

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c >= OPT_FIRST && c < OPT_FIRST + (int) n_opts) {
			r = set_option(v, &opts[c - OPT_FIRST], optarg);
			if (r != BK_EXIT_OK)
				return r;
		} else if (bankctl_common_option(ctx, c, v) <= 0) {
			return BK_EXIT_USAGE;
		}
	}
	if (n_args == 0 && optind < argc)
		return bankctl_usage(v, "unexpected argument '%s'", argv[optind]);
	if (argc - optind != n_args)
		return bankctl_usage(v, "expected %s", expected);
	return BK_EXIT_OK;
}

/* --- list ------------------------------------------------------------------------------- */

static int rev_list(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(json_object_putp) struct json_object *arr = NULL;
	_cleanup_free_ char *current = NULL, *previous = NULL;
	struct bankctl_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_close_ int revs_dfd = -EBADF;
	struct bk_err err = { 0 };
	struct bk_rev *revs = NULL;
	size_t n = 0;
	int r, ret = BK_EXIT_OK;

	ret = parse_args(ctx, &verb_list, NULL, 0, 0, NULL, argc, argv);
	if (ret != BK_EXIT_OK)
		return ret;
	r = bankctl_live_open(ctx, &live, &err);
	if (r < 0)
		goto fail;
	revs_dfd = openat(live.state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (revs_dfd >= 0) {
		r = bk_rev_list(revs_dfd, &revs, &n, &err);
		if (r < 0)
			goto fail;
	}
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL);
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_PREVIOUS, &previous, NULL);

	if (ctx->json) {
		arr = json_object_new_array();
		if (!arr) {
			r = bk_err_set(&err, -ENOMEM, "out of memory");
			goto fail;
		}
		for (size_t i = 0; i < n; i++) {
			struct json_object *o = bk_rev_to_json(&revs[i]);

			if (!o || json_object_array_add(arr, o) < 0 ||
			    bk_json_add_bool(o, "mounted",
					     bk_rev_is_mounted(live.run_dfd, revs[i].id)) < 0 ||
			    bk_json_add_bool(o, "current",
					     current && strcmp(current, revs[i].id) == 0) < 0 ||
			    bk_json_add_bool(o, "previous",
					     previous && strcmp(previous, revs[i].id) == 0) < 0) {
				r = bk_err_set(&err, -ENOMEM, "out of memory");
				goto fail;
			}
		}
		puts(bk_json_to_string(arr, true));
	} else {
		if (n == 0)
			printf("no revisions\n");
		else
			printf("%-24s %-16s %-16s %-20s %s\n", "ID", "IMAGE", "VERSION", "CREATED",
			       "STATE");
		for (size_t i = 0; i < n; i++) {
			char when[32] = "-";
			time_t t = (time_t) revs[i].created;
			struct tm tm;

			if (gmtime_r(&t, &tm))
				(void) strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
			printf("%-24s %-16s %-16s %-20s %s%s%s\n", revs[i].id,
			       revs[i].image && revs[i].image[0] ? revs[i].image : "-",
			       revs[i].version && revs[i].version[0] ? revs[i].version : "-", when,
			       bk_rev_is_mounted(live.run_dfd, revs[i].id) ? "mounted" :
									     "not-mounted",
			       current && strcmp(current, revs[i].id) == 0 ? ",current" : "",
			       previous && strcmp(previous, revs[i].id) == 0 ? ",previous" : "");
		}
	}
	goto out;
fail:
	ret = bankctl_fail(r, &err);
out:
	bk_revs_free(revs, n);
	bankctl_live_close(&live);
	return ret;
}

/* --- add -------------------------------------------------------------------------------- */

static int rev_add(struct bankctl *ctx, int argc, char **argv)
{
	struct bankctl_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	const char *type = "squashfs", *digest = NULL;
	_cleanup_close_ int fd = -EBADF, revs_dfd = -EBADF;
	struct bk_rev rev = { 0 };
	struct bk_err err = { 0 };
	bool saved = false;
	struct stat st;
	const struct rev_option opts[] = {
		{ "type", OPT_STRING, &type, NULL },
		{ "offset", OPT_SIZE, &rev.offset, "offset" },
		{ "size", OPT_SIZE, &rev.size, "size" },
		{ "image", OPT_STRDUP, &rev.image, NULL },
		{ "version", OPT_STRDUP, &rev.version, NULL },
		{ "payload", OPT_STRDUP, &rev.payload, NULL },
		{ "parent", OPT_STRDUP, &rev.parent, NULL },
		{ "digest", OPT_STRING, &digest, NULL },
	};
	int r, ret = BK_EXIT_OK;

	ret = parse_args(ctx, &verb_add, opts, BK_ELEMENTSOF(opts), 2, "ID and FILE", argc, argv);
	if (ret != BK_EXIT_OK)
		goto out;
	rev.id = strdup(argv[optind]);
	rev.fstype = strdup(type);
	rev.source = realpath(argv[optind + 1], NULL);
	if (!rev.source) {
		bk_log(LOG_ERR, "cannot open payload '%s': %m", argv[optind + 1]);
		ret = errno == ENOENT ? BK_EXIT_NOT_FOUND : BK_EXIT_FAILURE;
		goto out;
	}
	if (digest) {
		rev.digest = strdup(digest);
		if (rev.digest && strlen(digest) != 64) {
			ret = bankctl_usage(&verb_add, "invalid digest '%s'", digest);
			goto out;
		}
	}
	rev.created = (uint64_t) time(NULL);
	if (!rev.id || !rev.fstype || (digest && !rev.digest)) {
		ret = bankctl_fail(-ENOMEM, NULL);
		goto out;
	}
	if (!bk_rev_id_is_valid(rev.id)) {
		ret = bankctl_usage(&verb_add, "invalid revision id '%s'", rev.id);
		goto out;
	}

	r = bankctl_live_open(ctx, &live, &err);
	if (r >= 0)
		r = bankctl_live_lock_and_recover(ctx, &live, &err);
	if (r >= 0)
		r = bk_maint_check(live.state_dfd, "rev add", &err);
	if (r < 0)
		goto fail;

	/* Hash and mount the very same open file. */
	fd = open(rev.source, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = bk_err_set(&err, -errno, "cannot open payload '%s': %m", rev.source);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		r = bk_err_set(&err, -EINVAL, "payload '%s' is not a regular file", rev.source);
		goto fail;
	}
	r = bk_rev_hash_fd(fd, &rev, &err);
	if (r < 0)
		goto fail;
	r = bk_rev_validate(&rev, &err);
	if (r < 0)
		goto fail;
	r = bk_mkdir_p_at(live.state_dfd, BK_REVISIONS_DIR, 0755, &revs_dfd, &err);
	if (r < 0)
		goto fail;
	/* Metadata first: a crash before the mount leaves a revision that restore mounts. */
	r = bk_rev_save(revs_dfd, &rev, true, &err);
	if (r < 0)
		goto fail;
	saved = true;
	r = bk_rev_mount_fd(live.run_dfd, live.run_path, &rev, fd, &err);
	if (r < 0)
		goto fail;
	if (!ctx->json)
		printf("revision '%s' mounted at '%s/%s/%s'\n", rev.id, live.run_path, BK_REV_DIR,
		       rev.id);
	else {
		_cleanup_(json_object_putp) struct json_object *o = bk_rev_to_json(&rev);

		if (o)
			puts(bk_json_to_string(o, true));
	}
	goto out;
fail:
	if (saved)
		(void) bk_rev_remove_meta(revs_dfd, rev.id, NULL);
	ret = bankctl_fail(r, &err);
out:
	bk_rev_release(&rev);
	bankctl_live_close(&live);
	return ret;
}

/* --- switch ----------------------------------------------------------------------------- */

static int rev_switch(struct bankctl *ctx, int argc, char **argv)
{
	struct bankctl_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_(bk_lp_report_freep) struct bk_lp_report *rep = NULL;
	_cleanup_close_ int revs_dfd = -EBADF;
	struct bk_rev rev = { 0 };
	struct bk_err err = { 0 };
	bool no_beneath = false;
	const struct rev_option opts[] = {
		{ "no-beneath", OPT_FLAG, &no_beneath, NULL },
	};
	int r, ret = BK_EXIT_OK;

	ret = parse_args(ctx, &verb_switch, opts, BK_ELEMENTSOF(opts), 1, "one revision ID", argc,
			 argv);
	if (ret != BK_EXIT_OK)
		return ret;
	if (!bk_rev_id_is_valid(argv[optind]))
		return bankctl_usage(&verb_switch, "invalid revision id '%s'", argv[optind]);

	r = bankctl_live_open(ctx, &live, &err);
	if (r >= 0)
		r = bankctl_live_lock_and_recover(ctx, &live, &err);
	if (r < 0)
		goto fail;
	if (no_beneath)
		live.lp.view_flags |= BK_VIEW_NO_BENEATH;
	revs_dfd = openat(live.state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r = revs_dfd < 0 ? bk_err_set(&err, -ENOENT, "no revision '%s'", argv[optind]) :
			   bk_rev_load(revs_dfd, argv[optind], &rev, &err);
	if (r < 0)
		goto fail;
	r = bk_livepatch_switch(&live.lp, argv[optind], &rep, &err);
	if (rep)
		(void) bankctl_live_print_report(ctx, rep);
	if (rep && rep->hook_warning)
		bk_log(LOG_WARNING, "%s, ignoring", rep->hook_warning);
	if (r < 0)
		goto fail;
	goto out;
fail:
	if (rep && rep->rolled_back)
		(void) bk_err_prefix(&err, "switch to '%s' rolled back", argv[optind]);
	ret = bankctl_fail(r, &err);
out:
	bk_rev_release(&rev);
	bankctl_live_close(&live);
	return ret;
}

/* --- gc --------------------------------------------------------------------------------- */

static int rev_gc(struct bankctl *ctx, int argc, char **argv)
{
	struct bankctl_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_(json_object_putp) struct json_object *out = NULL;
	_cleanup_free_ char *current = NULL, *previous = NULL;
	_cleanup_close_ int revs_dfd = -EBADF;
	struct json_object *removed = NULL, *kept = NULL;
	struct bk_rev *revs = NULL;
	struct bk_err err = { 0 };
	uint64_t keep = 2;
	size_t n = 0;
	const struct rev_option opts[] = {
		{ "keep", OPT_U64, &keep, "--keep" },
	};
	int r, ret = BK_EXIT_OK;

	ret = parse_args(ctx, &verb_gc, opts, BK_ELEMENTSOF(opts), 0, NULL, argc, argv);
	if (ret != BK_EXIT_OK)
		return ret;

	out = json_object_new_object();
	removed = json_object_new_array();
	kept = json_object_new_array();
	if (!out || bk_json_add(out, "removed", removed) < 0 || bk_json_add(out, "kept", kept) < 0)
		return bankctl_fail(-ENOMEM, NULL);
	r = bankctl_live_open(ctx, &live, &err);
	if (r >= 0)
		r = bankctl_live_lock_and_recover(ctx, &live, &err);
	if (r < 0)
		goto fail;
	revs_dfd = openat(live.state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (revs_dfd >= 0) {
		r = bk_rev_list(revs_dfd, &revs, &n, &err);
		if (r < 0)
			goto fail;
	}
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL);
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_PREVIOUS, &previous, NULL);

	/* Oldest first; the newest `keep` are kept whatever they are. */
	for (size_t i = 0; i + keep < n; i++) {
		const char *id = revs[i].id;
		_cleanup_free_ char *where = NULL;
		const char *why = NULL;
		struct json_object *o;
		dev_t dev;

		if (current && strcmp(id, current) == 0)
			why = "current";
		else if (previous && strcmp(id, previous) == 0)
			why = "previous";
		else if (bk_rev_is_mounted(live.run_dfd, id) &&
			 bk_rev_dev(live.run_dfd, id, &dev, NULL) == 0) {
			r = bk_rev_in_use(live.run_path, id, dev, &where, &err);
			if (r < 0)
				goto fail;
			if (r > 0)
				why = "in use";
		}
		if (why) {
			o = json_object_new_object();
			if (json_object_array_add(kept, o) < 0 ||
			    bk_json_add_string(o, "id", id) < 0 ||
			    bk_json_add_string(o, "reason", why) < 0 ||
			    add_nullable(o, "where", where) < 0) {
				r = bk_err_set(&err, -ENOMEM, "out of memory");
				goto fail;
			}
			if (!ctx->json)
				printf("kept '%s': %s%s%s\n", id, why, where ? " by " : "",
				       where ? where : "");
			continue;
		}
		r = bk_rev_umount(live.run_dfd, live.run_path, id, &err);
		if (r < 0)
			goto fail;
		r = bk_rev_remove_meta(revs_dfd, id, &err);
		if (r < 0)
			goto fail;
		if (json_object_array_add(removed, json_object_new_string(id)) < 0) {
			r = bk_err_set(&err, -ENOMEM, "out of memory");
			goto fail;
		}
		if (!ctx->json)
			printf("removed '%s'\n", id);
	}
	/* A bank whose revisions are all gone need not stay mounted. */
	for (int b = 0; b < _BK_BANK_MAX; b++) {
		r = bankctl_live_bank_release(ctx, &live, (enum bk_bank_id) b, &err);
		if (r < 0)
			goto fail;
	}
	if (ctx->json)
		puts(bk_json_to_string(out, true));
	goto done;
fail:
	ret = bankctl_fail(r, &err);
done:
	bk_revs_free(revs, n);
	bankctl_live_close(&live);
	return ret;
}

/* --- restore ---------------------------------------------------------------------------- */

/* The live payload of the image in the bank (manifest.json, checked against bank.json). */
static int bank_live_payload(int bank_dfd, struct bk_manifest **ret_m,
			     const struct bk_payload **ret_p, struct bk_err *err)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	_cleanup_free_ char *buf = NULL;
	struct bk_manifest *m = NULL;
	uint8_t d[BK_SHA256_LEN];
	size_t len;
	int r;

	r = bk_bank_record_read_at(bank_dfd, &rec, err);
	if (r < 0)
		return r;
	r = bk_read_file_at(bank_dfd, BK_BANK_MANIFEST_FILE, BK_MANIFEST_MAX_SIZE, &buf, &len, err);
	if (r < 0)
		return r;
	if (bk_sha256_buf(buf, len, d) < 0 || memcmp(d, rec->manifest_sha256, sizeof(d)) != 0)
		return bk_err_set(err, -EUCLEAN, "'%s' does not match the bank's record",
				  BK_BANK_MANIFEST_FILE);
	r = bk_manifest_parse(buf, len, 0, &m, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < m->n_payloads; i++)
		if (m->payloads[i].live &&
		    (m->payloads[i].fs == BK_FS_SQUASHFS || m->payloads[i].fs == BK_FS_EROFS)) {
			*ret_p = &m->payloads[i];
			*ret_m = m;
			return 1;
		}
	bk_manifest_free(m);
	return 0;
}

/* Hash and mount rev from fd; a failure is a warning (the others are still restored). */
static bool restore_one(struct bankctl_live *live, struct bk_rev *rev, int fd)
{
	struct bk_err err = { 0 };
	int r;

	r = bk_rev_hash_fd(fd, rev, &err);
	if (r >= 0)
		r = bk_rev_mount_fd(live->run_dfd, live->run_path, rev, fd, &err);
	if (r < 0) {
		bk_log(LOG_WARNING, "%s, ignoring", err.msg);
		return false;
	}
	printf("mounted '%s'%s%s\n", rev->id, rev->bank ? " from bank " : "",
	       rev->bank ? rev->bank : "");
	return true;
}

/*
 * The booted bank's base revision: the live payload of the image it holds, unless a revision
 * of that payload out of this bank is recorded already. Returns 0 or -errno.
 */
static int restore_base(struct bankctl_live *live, int revs_dfd, const char *x, int bank_dfd,
			const char *bank_path, const struct bk_rev *revs, size_t n,
			struct bk_err *err)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	_cleanup_free_ char *id = NULL;
	_cleanup_close_ int fd = -EBADF;
	const struct bk_payload *p = NULL;
	char hex[BK_SHA256_HEX_LEN + 1];
	struct bk_rev rev = { 0 }, old = { 0 };
	int r;

	r = bank_live_payload(bank_dfd, &m, &p, err);
	if (r <= 0)
		return r == -ENOENT ? 0 : r;
	bk_sha256_to_hex(p->sha256, hex);
	for (size_t i = 0; i < n; i++)
		if (revs[i].bank && strcmp(revs[i].bank, x) == 0 &&
		    strcmp(revs[i].digest, hex) == 0)
			return 0;
	if (asprintf(&id, "%s-%s", m->name, m->version) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (char *c = id; *c; c++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-",
			    *c))
			*c = '_';
	if (strlen(id) > BK_REV_ID_MAX)
		id[BK_REV_ID_MAX] = '\0';
	if (!bk_rev_id_is_valid(id))
		id[0] = 'r';
	if (bk_rev_load(revs_dfd, id, &old, NULL) == 0) {
		/* That name is taken by another payload: the bank's comes second. */
		bk_rev_release(&old);
		free(id);
		if (asprintf(&id, "%.60s-%s", m->name, x) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
		if (!bk_rev_id_is_valid(id) || bk_rev_load(revs_dfd, id, &old, NULL) == 0) {
			bk_rev_release(&old);
			return 0;
		}
	}
	fd = openat(bank_dfd, p->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return bk_err_set(err, -errno, "bank %s: cannot open '%s': %m", x, p->name);
	rev.id = TAKE_PTR(id);
	rev.image = strdup(m->name);
	rev.version = strdup(m->version);
	rev.payload = strdup(p->name);
	rev.fstype = strdup(bk_payload_fs_to_string(p->fs));
	rev.digest = strdup(hex);
	rev.bank = strdup(x);
	rev.size = p->size;
	rev.created = (uint64_t) time(NULL);
	if (asprintf(&rev.source, "%s/%s", bank_path, p->name) < 0)
		rev.source = NULL;
	if (!rev.image || !rev.version || !rev.payload || !rev.fstype || !rev.digest || !rev.bank ||
	    !rev.source) {
		bk_rev_release(&rev);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	r = bk_rev_hash_fd(fd, &rev, err);
	if (r >= 0)
		r = bk_rev_save(revs_dfd, &rev, true, err);
	if (r >= 0) {
		r = bk_rev_mount_fd(live->run_dfd, live->run_path, &rev, fd, err);
		if (r < 0)
			(void) bk_rev_remove_meta(revs_dfd, rev.id, NULL);
		else
			printf("mounted '%s' from bank %s (the image's own live payload)\n", rev.id,
			       x);
	}
	bk_rev_release(&rev);
	return r;
}

static int rev_restore(struct bankctl *ctx, int argc, char **argv)
{
	struct bankctl_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_free_ char *current = NULL, *recorded = NULL, *bank_path = NULL;
	_cleanup_close_ int revs_dfd = -EBADF, bank_dfd = -EBADF;
	const char *x = NULL, *pick = NULL;
	struct bk_booted booted;
	struct bk_rev *revs = NULL;
	struct bk_err err = { 0 };
	size_t n = 0;
	int r, ret = BK_EXIT_OK;

	ret = parse_args(ctx, &verb_restore, NULL, 0, 0, NULL, argc, argv);
	if (ret != BK_EXIT_OK)
		return ret;
	r = bankctl_live_open(ctx, &live, &err);
	if (r >= 0)
		r = bankctl_live_lock_and_recover(ctx, &live, &err);
	if (r < 0)
		goto fail;
	r = bk_mkdir_p_at(live.state_dfd, BK_REVISIONS_DIR, 0755, &revs_dfd, &err);
	if (r < 0)
		goto fail;
	r = bk_rev_list(revs_dfd, &revs, &n, &err);
	if (r < 0)
		goto fail;

	/* Revisions out of a bank come back only when that bank is the one booted. */
	if (ctx->configured && bankctl_booted(ctx, &booted, NULL, NULL) == 0) {
		x = bk_bank_id_to_string(booted.bank);
		r = bankctl_live_bank_open(ctx, &live, booted.bank, &bank_dfd, &bank_path, &err);
		if (r < 0 && r != -ENOENT) {
			bk_log(LOG_WARNING, "%s, ignoring the revisions of bank %s", err.msg, x);
			x = NULL;
		}
		if (r == -ENOENT)
			x = NULL; /* no bootbank disk: no bank to restore from */
		bk_err_clear(&err);
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_close_ int fd = -EBADF;

		if (bk_rev_is_mounted(live.run_dfd, revs[i].id))
			continue;
		if (revs[i].bank) {
			if (!x || strcmp(revs[i].bank, x) != 0)
				continue; /* another bank's: it comes back when that one boots */
			fd = openat(bank_dfd, revs[i].payload ? revs[i].payload : "",
				    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
		} else {
			fd = open(revs[i].source, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		}
		if (fd < 0) {
			bk_log(LOG_WARNING, "revision '%s': cannot open '%s': %m, ignoring",
			       revs[i].id, revs[i].source);
			continue;
		}
		(void) restore_one(&live, &revs[i], fd);
	}
	if (x) {
		r = restore_base(&live, revs_dfd, x, bank_dfd, bank_path, revs, n, &err);
		if (r < 0) {
			bk_log(LOG_WARNING, "bank %s: %s, ignoring", x, err.msg);
			bk_err_clear(&err);
		}
		bk_revs_free(revs, n);
		revs = NULL;
		n = 0;
		r = bk_rev_list(revs_dfd, &revs, &n, &err);
		if (r < 0)
			goto fail;
	}

	/*
	 * current: the last committed revision, when it came back; else the newest of the
	 * booted bank's (after a reboot into the other bank, that bank's revisions are the ones
	 * in service).
	 */
	if (bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL) == -ENOENT) {
		if (bk_read_file_at(revs_dfd, BK_REV_CURRENT_REC, BK_REV_ID_MAX + 2, &recorded,
				    NULL, NULL) == 0) {
			recorded[strcspn(recorded, "\n")] = '\0';
			if (bk_rev_is_mounted(live.run_dfd, recorded))
				pick = recorded;
		}
		for (size_t i = 0; i < n && x; i++) {
			const struct bk_rev *rv = &revs[n - 1 - i];

			if (pick && strcmp(pick, rv->id) == 0)
				break; /* the recorded one is the booted bank's, or newer */
			if (rv->bank && strcmp(rv->bank, x) == 0 &&
			    bk_rev_is_mounted(live.run_dfd, rv->id)) {
				pick = rv->id;
				break;
			}
		}
		if (pick) {
			r = bk_rev_pointer_set(live.run_dfd, BK_REV_CURRENT, pick, &err);
			if (r < 0)
				goto fail;
			printf("current is '%s'\n", pick);
		}
	}
	if (x) {
		(void) close(TAKE_FD(bank_dfd));
		r = bankctl_live_bank_release(ctx, &live, booted.bank, &err);
		if (r < 0) {
			bk_log(LOG_WARNING, "%s, ignoring", err.msg);
			bk_err_clear(&err);
		}
	}
	goto out;
fail:
	ret = bankctl_fail(r, &err);
out:
	bk_revs_free(revs, n);
	bankctl_live_close(&live);
	return ret;
}

int bankctl_rev(struct bankctl *ctx, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(struct bankctl *, int, char **);
	} subs[] = {
		{ "list", rev_list }, { "add", rev_add },	  { "switch", rev_switch },
		{ "gc", rev_gc },     { "restore", rev_restore },
	};

	if (argc < 2)
		return bankctl_usage(&verb_rev, "missing sub-command");
	for (size_t i = 0; i < BK_ELEMENTSOF(subs); i++)
		if (strcmp(argv[1], subs[i].name) == 0)
			return subs[i].run(ctx, argc - 1, argv + 1);
	return bankctl_usage(&verb_rev, "unknown sub-command '%s'", argv[1]);
}
