/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl image build|sign|verify|info|mount|umount: signed image bundles
 * (docs/bundle-format.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bankctl.h"
#include "bk-bundle.h"
#include "bk-cms.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-mount.h"
#include "bk-sha256.h"

#define MAX_INTERMEDIATES 8

BK_DEFINE_CLEANUP(struct bk_keyring *, bk_keyring_free)

/* ---- shared ----------------------------------------------------------------------------- */

struct opts {
	const char *output, *key, *cert, *keyring;
	const char *intermediates[MAX_INTERMEDIATES + 1];
	size_t n_intermediates;
	bool no_check_time;
	bool force;
};

enum { OPT_KEY = 0x100, OPT_CERT, OPT_INTERMEDIATE, OPT_KEYRING, OPT_NO_CHECK_TIME };

/* Parse options; positional arguments are left in argv[optind..]. -1: usage error printed. */
static int parse_opts(struct bankctl *ctx, const struct bankctl_verb *verb, int argc, char **argv,
		      struct opts *o)
{
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "output", required_argument, NULL, 'o' },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "intermediate", required_argument, NULL, OPT_INTERMEDIATE },
		{ "keyring", required_argument, NULL, OPT_KEYRING },
		{ "no-check-time", no_argument, NULL, OPT_NO_CHECK_TIME },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhwo:", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->output = optarg;
			break;
		case OPT_KEY:
			o->key = optarg;
			break;
		case OPT_CERT:
			o->cert = optarg;
			break;
		case OPT_INTERMEDIATE:
			if (o->n_intermediates == MAX_INTERMEDIATES)
				return bankctl_usage(verb, "at most %d intermediates",
						     MAX_INTERMEDIATES),
				       -1;
			o->intermediates[o->n_intermediates++] = optarg;
			break;
		case OPT_KEYRING:
			o->keyring = optarg;
			break;
		case OPT_NO_CHECK_TIME:
			o->no_check_time = true;
			break;
		default:
			if (bankctl_common_option(ctx, c, verb) <= 0)
				return -1;
		}
	}
	return 0;
}

/* Exactly n positional arguments, else a usage error. */
static int want_args(const struct bankctl_verb *verb, int argc, char **argv, int n)
{
	if (argc - optind < n) {
		(void) bankctl_usage(verb, "missing argument");
		return -1;
	}
	if (argc - optind > n) {
		(void) bankctl_usage(verb, "unexpected argument '%s'", argv[optind + n]);
		return -1;
	}
	return 0;
}

static unsigned cms_flags(struct bankctl *ctx, const struct opts *o)
{
	return o->no_check_time || !ctx->op.config.check_time ? BK_CMS_NO_CHECK_TIME : 0;
}

/* Every verb opens a bundle path this way: never blocks, refuses what is not a regular file. */
static int open_bundle_file(const char *path, int *ret_fd, struct bk_err *err)
{
	return bk_bundle_open_path(AT_FDCWD, path, ret_fd, err);
}

/* Open the directory of path and return it with the last component in *ret_name. */
static int open_parent(const char *path, int *ret_dfd, char **ret_name, struct bk_err *err)
{
	_cleanup_free_ char *a = strdup(path), *b = strdup(path);
	char *name;
	int dfd;

	if (!a || !b)
		return bk_err_set(err, -ENOMEM, "out of memory");
	name = strdup(basename(a));
	if (!name)
		return bk_err_set(err, -ENOMEM, "out of memory");
	dfd = open(dirname(b), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		free(name);
		return bk_err_set(err, -errno, "cannot open the directory of '%s': %m", path);
	}
	*ret_dfd = dfd;
	*ret_name = name;
	return 0;
}

static int fail_on(const char *path, int r, struct bk_err *err)
{
	if (bk_err_is_set(err))
		(void) bk_err_prefix(err, "'%s'", path);
	return bankctl_fail(r, err);
}

/* "built 'OUT'" or { "built": "OUT" }. */
static int print_done(struct bankctl *ctx, const char *what, const char *path)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;

	if (!ctx->json) {
		printf("%s '%s'\n", what, path);
		return BK_EXIT_OK;
	}
	o = json_object_new_object();
	if (!o || bk_json_add_string(o, what, path) < 0)
		return bankctl_fail(-ENOMEM, NULL);
	puts(bk_json_to_string(o, true));
	return BK_EXIT_OK;
}

/* ---- build / sign ----------------------------------------------------------------------- */

static int created_now(char buf[32], struct bk_err *err)
{
	const char *sde = secure_getenv("SOURCE_DATE_EPOCH");
	uint64_t v;
	time_t t;
	struct tm tm;

	if (sde) {
		if (bk_parse_u64(sde, &v) < 0 || v > (uint64_t) INT32_MAX * 4)
			return bk_err_set(err, -EINVAL, "SOURCE_DATE_EPOCH '%s' is not a timestamp",
					  sde);
		t = (time_t) v;
	} else
		t = time(NULL);
	if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return bk_err_set(err, -EINVAL, "cannot format the time");
	return 0;
}

static int check_signer_opts(const struct bankctl_verb *verb, const struct opts *o)
{
	if (!o->output)
		return bankctl_usage(verb, "missing -o OUT.bbi");
	if (!o->key || !o->cert)
		return bankctl_usage(verb, "missing --key or --cert");
	return 0;
}

int bankctl_image_build(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_free_ char *spec = NULL, *out_name = NULL, *spec_copy = NULL;
	_cleanup_close_ int src_dfd = -EBADF, out_dfd = -EBADF;
	struct opts o = { 0 };
	struct bk_err err = { 0 };
	struct bk_bundle_signer signer;
	const char *spec_path;
	char created[32];
	size_t len;
	int r;

	if (parse_opts(ctx, ctx->verb, argc, argv, &o) < 0 ||
	    want_args(ctx->verb, argc, argv, 1) < 0)
		return BK_EXIT_USAGE;
	if (check_signer_opts(ctx->verb, &o) != 0)
		return BK_EXIT_USAGE;
	spec_path = argv[optind];

	r = created_now(created, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = bk_read_file_at(AT_FDCWD, spec_path, BK_MANIFEST_MAX_SIZE, &spec, &len, &err);
	if (r < 0)
		return bankctl_fail(r == -EFBIG ? -ENOEXEC : r, &err);
	spec_copy = strdup(spec_path);
	if (!spec_copy)
		return bankctl_fail(-ENOMEM, NULL);
	src_dfd = open(dirname(spec_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src_dfd < 0)
		return bankctl_fail(-errno, NULL);
	r = open_parent(o.output, &out_dfd, &out_name, &err);
	if (r < 0)
		return bankctl_fail(r, &err);

	signer = (struct bk_bundle_signer){ .key = o.key,
					    .cert = o.cert,
					    .intermediates = o.intermediates };
	r = bk_bundle_build(spec, len, src_dfd, created, &signer, out_dfd, out_name, &err);
	if (r < 0)
		return fail_on(spec_path, r, &err);
	return print_done(ctx, "built", o.output);
}

int bankctl_image_sign(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_free_ char *out_name = NULL;
	_cleanup_close_ int fd = -EBADF, out_dfd = -EBADF;
	struct opts o = { 0 };
	struct bk_err err = { 0 };
	struct bk_bundle_signer signer;
	const char *in;
	int r;

	if (parse_opts(ctx, ctx->verb, argc, argv, &o) < 0 ||
	    want_args(ctx->verb, argc, argv, 1) < 0)
		return BK_EXIT_USAGE;
	if (check_signer_opts(ctx->verb, &o) != 0)
		return BK_EXIT_USAGE;
	in = argv[optind];
	r = open_bundle_file(in, &fd, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = open_parent(o.output, &out_dfd, &out_name, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	signer = (struct bk_bundle_signer){ .key = o.key,
					    .cert = o.cert,
					    .intermediates = o.intermediates };
	r = bk_bundle_resign(fd, &signer, out_dfd, out_name, &err);
	if (r < 0)
		return fail_on(in, r, &err);
	return print_done(ctx, "signed", o.output);
}

/* ---- verify ----------------------------------------------------------------------------- */

struct report {
	struct json_object *checks; /* array */
	int first_r;		    /* first failure */
	struct bk_err first_err;
};

static int add_check(struct report *rep, const char *check, const char *payload, int r,
		     const struct bk_err *err, bool skipped)
{
	struct json_object *c = json_object_new_object();

	if (!c || json_object_array_add(rep->checks, c) < 0) {
		json_object_put(c);
		return -ENOMEM;
	}
	if (bk_json_add_string(c, "check", check) < 0 ||
	    (payload && bk_json_add_string(c, "payload", payload) < 0) ||
	    bk_json_add_string(c, "result",
			       skipped ? "skipped" :
			       r < 0   ? "failed" :
					 "ok") < 0)
		return -ENOMEM;
	if (r < 0) {
		if (bk_json_add_string(c, "error", err && err->code < 0 ? err->msg : strerror(-r)) <
			    0 ||
		    bk_json_add_u64(c, "exit_code", (uint64_t) bk_exit_code_from_errno(r)) < 0)
			return -ENOMEM;
		if (rep->first_r == 0) {
			rep->first_r = r;
			if (err)
				rep->first_err = *err;
		}
	}
	return 0;
}

int bankctl_image_verify(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(json_object_putp) struct json_object *out = NULL;
	_cleanup_(bk_keyring_freep) struct bk_keyring *keyring = NULL;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_free_ struct bk_payload_check *checks = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct report rep = { 0 };
	struct opts o = { 0 };
	struct bk_err err = { 0 };
	const struct bk_manifest *m = NULL;
	const char *path;
	int r;

	if (parse_opts(ctx, ctx->verb, argc, argv, &o) < 0 ||
	    want_args(ctx->verb, argc, argv, 1) < 0)
		return BK_EXIT_USAGE;
	path = argv[optind];
	r = bk_op_keyring_load(&ctx->op, o.keyring, &keyring, &err);
	if (r < 0) {
		bk_log(LOG_ERR, "%s", err.msg);
		return r == -ENOMEM ? BK_EXIT_FAILURE : BK_EXIT_USAGE;
	}
	r = open_bundle_file(path, &fd, &err);
	if (r < 0)
		return bankctl_fail(r, &err);

	out = json_object_new_object();
	rep.checks = json_object_new_array();
	if (!out || bk_json_add_string(out, "image", path) < 0 ||
	    bk_json_add(out, "checks", rep.checks) < 0)
		return bankctl_fail(-ENOMEM, NULL);

	/* header, signature, manifest, payloads: docs/bundle-format.md, "Trust and verification" */
	r = bk_bundle_open_fd(fd, &b, &err);
	if (add_check(&rep, "header", NULL, r, &err, false) < 0)
		return bankctl_fail(-ENOMEM, NULL);
	if (r >= 0) {
		bk_err_clear(&err);
		r = bk_bundle_verify_signature(b, keyring, cms_flags(ctx, &o), &err);
		if (add_check(&rep, "signature", NULL, r, &err, false) < 0)
			return bankctl_fail(-ENOMEM, NULL);
	}
	if (r >= 0) {
		bk_err_clear(&err);
		r = bk_bundle_load_manifest(b, &err);
		if (add_check(&rep, "manifest", NULL, r, &err, false) < 0)
			return bankctl_fail(-ENOMEM, NULL);
		m = r >= 0 ? bk_bundle_get_manifest(b) : NULL;
	}
	if (m) {
		checks = calloc(m->n_payloads, sizeof(*checks));
		if (!checks)
			return bankctl_fail(-ENOMEM, NULL);
		bk_err_clear(&err);
		(void) bk_bundle_verify_payloads(b, 0, checks, &err);
		for (size_t i = 0; i < m->n_payloads; i++)
			if (add_check(&rep, "payload", m->payloads[i].name, checks[i].r,
				      &checks[i].err, false) < 0)
				return bankctl_fail(-ENOMEM, NULL);
	} else {
		/*
		 * A step failed: the later ones are reported as skipped (after a bad signature the
		 * payload digests are unauthenticated, so payloads are not hashed).
		 */
		size_t done = json_object_array_length(rep.checks);
		static const char *const later[] = { "signature", "manifest", "payloads" };

		for (size_t i = done - 1; i < BK_ELEMENTSOF(later); i++)
			if (add_check(&rep, later[i], NULL, 0, NULL, true) < 0)
				return bankctl_fail(-ENOMEM, NULL);
	}

	if (rep.first_r < 0)
		(void) bk_err_prefix(&rep.first_err, "'%s'", path);
	if (ctx->json) {
		if (bk_json_add_bool(out, "ok", rep.first_r == 0) < 0 ||
		    bk_json_add_u64(out, "exit_code",
				    (uint64_t) bk_exit_code_from_errno(rep.first_r)) < 0 ||
		    (b && bk_bundle_get_signer(b) &&
		     bk_json_add_string(out, "signer", bk_bundle_get_signer(b)) < 0))
			return bankctl_fail(-ENOMEM, NULL);
		if (m) {
			struct json_object *mo = NULL;

			if (bk_manifest_to_json_object(m, &mo) < 0 ||
			    bk_json_add(out, "manifest", mo) < 0)
				return bankctl_fail(-ENOMEM, NULL);
		}
		puts(bk_json_to_string(out, true));
	}
	if (rep.first_r < 0)
		return bankctl_fail(rep.first_r, &rep.first_err);
	if (!ctx->json)
		printf("'%s': ok: %s %s (build %s), %zu payload%s, signed by %s\n", path, m->name,
		       m->version, m->build, m->n_payloads, m->n_payloads == 1 ? "" : "s",
		       bk_bundle_get_signer(b) ? bk_bundle_get_signer(b) : "?");
	return BK_EXIT_OK;
}

/* ---- info ------------------------------------------------------------------------------- */

static void print_manifest(const struct bk_manifest *m, const struct bk_bundle *b)
{
	printf("name            %s\n", m->name);
	printf("version         %s\n", m->version);
	printf("build           %s\n", m->build);
	printf("compatible      %s\n", m->compatible);
	printf("security epoch  %llu\n", (unsigned long long) m->security_epoch);
	printf("created         %s\n", m->created);
	if (m->description)
		printf("description     %s\n", m->description);
	if (m->n_live_patch_from > 0) {
		printf("live-patches   ");
		for (size_t i = 0; i < m->n_live_patch_from; i++)
			printf(" %s", m->live_patch_from[i]);
		printf("\n");
	}
	printf("size            %llu bytes\n", (unsigned long long) bk_bundle_get_size(b));
	printf("signature       not verified (bankctl image verify checks it)\n");
	printf("payloads        %zu\n", m->n_payloads);
	printf("  %-24s %-9s %-8s %12s %12s  %s\n", "NAME", "TYPE", "FS", "SIZE", "OFFSET",
	       "SHA256");
	for (size_t i = 0; i < m->n_payloads; i++) {
		const struct bk_payload *p = &m->payloads[i];
		char hex[BK_SHA256_HEX_LEN + 1];

		bk_sha256_to_hex(p->sha256, hex);
		printf("  %-24s %-9s %-8s %12llu %12llu  %.16s…%s%s\n", p->name,
		       bk_payload_type_to_string(p->type), bk_payload_fs_to_string(p->fs),
		       (unsigned long long) p->size, (unsigned long long) p->offset, hex,
		       p->live ? "  live at " : "", p->live ? p->mountpoint : "");
	}
}

int bankctl_image_info(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct opts o = { 0 };
	struct bk_err err = { 0 };
	const char *path;
	int r;

	if (parse_opts(ctx, ctx->verb, argc, argv, &o) < 0 ||
	    want_args(ctx->verb, argc, argv, 1) < 0)
		return BK_EXIT_USAGE;
	path = argv[optind];
	r = open_bundle_file(path, &fd, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = bk_bundle_open_fd(fd, &b, &err);
	if (r >= 0)
		r = bk_bundle_load_manifest(b, &err);
	if (r < 0)
		return fail_on(path, r, &err);

	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
		const struct bk_bundle_header *h = bk_bundle_get_header(b);
		struct json_object *mo = NULL, *ho = json_object_new_object();

		if (!out || bk_json_add_string(out, "image", path) < 0 ||
		    bk_json_add_u64(out, "size", bk_bundle_get_size(b)) < 0 ||
		    bk_json_add_bool(out, "signature_verified", false) < 0 ||
		    bk_json_add(out, "header", ho) < 0 ||
		    bk_json_add_u64(ho, "format_version", h->format_version) < 0 ||
		    bk_json_add_u64(ho, "manifest_offset", h->manifest_offset) < 0 ||
		    bk_json_add_u64(ho, "manifest_size", h->manifest_size) < 0 ||
		    bk_json_add_u64(ho, "signature_offset", h->signature_offset) < 0 ||
		    bk_json_add_u64(ho, "signature_size", h->signature_size) < 0 ||
		    bk_json_add_u64(ho, "payload_offset", h->payload_offset) < 0 ||
		    bk_manifest_to_json_object(bk_bundle_get_manifest(b), &mo) < 0 ||
		    bk_json_add(out, "manifest", mo) < 0)
			return bankctl_fail(-ENOMEM, NULL);
		puts(bk_json_to_string(out, true));
	} else
		print_manifest(bk_bundle_get_manifest(b), b);
	return BK_EXIT_OK;
}

/* ---- mount / umount --------------------------------------------------------------------- */

int bankctl_image_mount(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(bk_keyring_freep) struct bk_keyring *keyring = NULL;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int fd = -EBADF;
	const struct bk_payload *p;
	struct opts o = { 0 };
	struct bk_err err = { 0 };
	const char *path, *name, *dir;
	int r;

	if (parse_opts(ctx, ctx->verb, argc, argv, &o) < 0 ||
	    want_args(ctx->verb, argc, argv, 3) < 0)
		return BK_EXIT_USAGE;
	path = argv[optind];
	name = argv[optind + 1];
	dir = argv[optind + 2];

	r = bk_op_keyring_load(&ctx->op, o.keyring, &keyring, &err);
	if (r < 0) {
		bk_log(LOG_ERR, "%s", err.msg);
		return r == -ENOMEM ? BK_EXIT_FAILURE : BK_EXIT_USAGE;
	}
	r = open_bundle_file(path, &fd, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	/*
	 * The loop device reads the file long after it was hashed: only root may be able to
	 * change it in between (issue 17, item 1; docs/bundle-format.md, "Trust").
	 */
	r = bk_bundle_check_trusted(fd, path, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = bk_bundle_open_verified(fd, keyring, cms_flags(ctx, &o), &b, &err);
	if (r < 0)
		return fail_on(path, r, &err);
	p = bk_manifest_find_payload(bk_bundle_get_manifest(b), name);
	if (!p) {
		bk_log(LOG_ERR, "'%s': no payload '%s'", path, name);
		return BK_EXIT_NOT_FOUND;
	}
	if (p->fs == BK_FS_RAW) {
		bk_log(LOG_ERR, "'%s': payload '%s' is not a filesystem (type %s, fs raw)", path,
		       name, bk_payload_type_to_string(p->type));
		return BK_EXIT_FAILURE;
	}
	/*
	 * Every payload, as every verb does (issue 17, item 3), from the same open file the loop
	 * device will expose.
	 */
	r = bk_bundle_verify_payloads(b, 0, NULL, &err);
	if (r < 0)
		return fail_on(path, r, &err);
	r = bk_mount_loop_fd(bk_bundle_get_fd(b), p->offset, p->size,
			     bk_payload_fs_to_string(p->fs), dir, &err);
	if (r < 0) {
		(void) bk_err_prefix(&err, "cannot mount payload '%s' of '%s' on '%s'", name, path,
				     dir);
		return bankctl_fail(r, &err);
	}
	if (!ctx->json)
		printf("mounted payload '%s' (%s) of '%s' on '%s' read-only\n", name,
		       bk_payload_fs_to_string(p->fs), path, dir);
	return BK_EXIT_OK;
}

int bankctl_image_umount(struct bankctl *ctx, int argc, char **argv)
{
	struct opts o = { 0 };
	struct bk_err err = { 0 };
	int r;

	if (parse_opts(ctx, ctx->verb, argc, argv, &o) < 0 ||
	    want_args(ctx->verb, argc, argv, 1) < 0)
		return BK_EXIT_USAGE;
	r = bk_umount(argv[optind], BK_UMOUNT_DETACH_LOOP, &err);
	if (r < 0)
		return fail_on(argv[optind], r, &err);
	if (!ctx->json)
		printf("unmounted '%s'\n", argv[optind]);
	return BK_EXIT_OK;
}
