/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Remediation: desired state, compliance scan, pre-check, remediate (bankd/bk-op-remediate.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/reboot.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <spawn.h>
#include <time.h>
#include <unistd.h>

#include "bk-bank.h"
#include "bk-bundle.h"
#include "bk-depot.h"
#include "bk-disk.h"
#include "bk-fs.h"
#include "bk-gpt.h"
#include "bk-hooks.h"
#include "bk-json.h"
#include "bk-lock.h"
#include "bk-maint.h"
#include "bk-op-boot.h"
#include "bk-op-depot.h"
#include "bk-op-live.h"
#include "bk-op-remediate.h"
#include "bk-op-stage.h"
#include "bk-rev.h"
#include "bk-sha256.h"
#include "bk-stage.h"
#include "bk-switch.h"
#include "bk-version.h"

BK_DEFINE_CLEANUP(struct bk_keyring *, bk_keyring_free)

static const char *const lp_modes[_BK_LP_MODE_MAX] = {
	[BK_LP_MODE_DISABLE] = "disable",
	[BK_LP_MODE_AUTO] = "auto",
	[BK_LP_MODE_ENFORCE] = "enforce",
};

const char *bk_lp_mode_to_string(enum bk_lp_mode m)
{
	return m >= 0 && m < _BK_LP_MODE_MAX ? lp_modes[m] : NULL;
}

enum bk_lp_mode bk_lp_mode_from_string(const char *s)
{
	for (int i = 0; s && i < _BK_LP_MODE_MAX; i++)
		if (strcmp(lp_modes[i], s) == 0)
			return (enum bk_lp_mode) i;
	return _BK_LP_MODE_INVALID;
}

static const char *const compliance[_BK_COMPLIANCE_MAX] = {
	[BK_COMPLIANT] = "compliant",
	[BK_COMPLIANT_PENDING_REBOOT] = "compliant-pending-reboot",
	[BK_NON_COMPLIANT] = "non-compliant",
	[BK_INCOMPATIBLE] = "incompatible",
	[BK_UNKNOWN] = "unknown",
};

const char *bk_compliance_to_string(enum bk_compliance c)
{
	return c >= 0 && c < _BK_COMPLIANCE_MAX ? compliance[c] : NULL;
}

int bk_compliance_exit_code(enum bk_compliance c)
{
	switch (c) {
	case BK_COMPLIANT:
		return BK_EXIT_OK;
	case BK_COMPLIANT_PENDING_REBOOT:
		return BK_EXIT_PENDING_REBOOT;
	case BK_NON_COMPLIANT:
		return BK_EXIT_NON_COMPLIANT;
	case BK_INCOMPATIBLE:
		return BK_EXIT_INCOMPATIBLE;
	case BK_UNKNOWN:
	case _BK_COMPLIANCE_MAX:
	case _BK_COMPLIANCE_INVALID:
		break;
	}
	return BK_EXIT_UNKNOWN;
}

const char *bk_check_result_to_string(enum bk_check_result r)
{
	return r == BK_CHECK_PASS ? "pass" : r == BK_CHECK_FAIL ? "fail" : "skip";
}

/* ---- desired state ------------------------------------------------------------------------ */

static int open_state(struct bk_op_ctx *ctx, bool create, int *ret_fd, struct bk_err *err)
{
	return bk_op_open_dir(ctx, BK_OP_STATE_DIR, create, ret_fd, err);
}

static int open_depot(struct bk_op_ctx *ctx, int *ret_fd, struct bk_err *err)
{
	return bk_op_open_dir(ctx, ctx->config.depot + strspn(ctx->config.depot, "/"), false,
			      ret_fd, err);
}

/* The depot entry of name version: 0 and its index, -ENOENT when absent. */
static int depot_find(const struct bk_depot_entry *v, size_t n, const char *name,
		      const char *version, size_t *ret)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].manifest && strcmp(v[i].manifest->name, name) == 0 &&
		    strcmp(v[i].manifest->version, version) == 0) {
			*ret = i;
			return 0;
		}
	return -ENOENT;
}

int bk_op_desired_get(struct bk_op_ctx *ctx, struct bk_op_desired *ret, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	_cleanup_close_ int dfd = -EBADF;
	const char *name = NULL, *version = NULL, *mode = NULL;
	struct bk_op_desired d = { 0 };
	uint64_t format = 0;
	int r;

	r = open_state(ctx, false, &dfd, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 1;
	}
	if (r < 0)
		return r;
	r = bk_json_read_at(dfd, BK_DESIRED_FILE, BK_DESIRED_MAX_SIZE, &o, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 1;
	}
	if (r < 0)
		return bk_err_prefix(err, "desired state");
	if (bk_json_get_u64(o, "format", true, UINT64_MAX, &format, err) < 0 ||
	    bk_json_get_string(o, "name", true, &name, err) < 0 ||
	    bk_json_get_string(o, "version", true, &version, err) < 0 ||
	    bk_json_get_string(o, "live_patch_mode", true, &mode, err) < 0 ||
	    bk_json_get_u64(o, "set", false, UINT64_MAX, &d.set, err) < 0) {
		(void) bk_err_prefix(err, "corrupt desired state '%s'", BK_DESIRED_FILE);
		return -ENOEXEC;
	}
	d.mode = bk_lp_mode_from_string(mode);
	if (format != 1 || d.mode < 0 || strlen(name) >= sizeof(d.name) ||
	    strlen(version) >= sizeof(d.version))
		return bk_err_set(err, -ENOEXEC,
				  "corrupt desired state '%s': bad format, mode, name or version",
				  BK_DESIRED_FILE);
	(void) snprintf(d.name, sizeof(d.name), "%s", name);
	(void) snprintf(d.version, sizeof(d.version), "%s", version);
	*ret = d;
	return 0;
}

struct json_object *bk_op_desired_to_json(const struct bk_op_desired *d)
{
	struct json_object *o;

	if (!d)
		return NULL;
	o = json_object_new_object();
	if (!o || bk_json_add_string(o, "name", d->name) < 0 ||
	    bk_json_add_string(o, "version", d->version) < 0 ||
	    bk_json_add_string(o, "live_patch_mode", bk_lp_mode_to_string(d->mode)) < 0 ||
	    bk_json_add_u64(o, "set", d->set) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

int bk_op_desired_set(struct bk_op_ctx *ctx, const char *name, const char *version,
		      enum bk_lp_mode mode, struct bk_op_desired *ret, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct bk_depot_entry *v = NULL;
	_cleanup_close_ int dfd = -EBADF;
	struct bk_op_desired d = { 0 };
	size_t n = 0, i;
	int r;

	if (!ctx->configured)
		return bk_err_set(err, -EINVAL, "nothing is configured: no '%s'", ctx->config_path);
	if (mode < 0)
		mode = bk_lp_mode_from_string(ctx->config.live_patch_mode);
	if (mode < 0)
		mode = BK_LP_MODE_AUTO;
	if (strlen(name) >= sizeof(d.name) || strlen(version) >= sizeof(d.version))
		return bk_err_set(err, -EINVAL, "name or version too long");
	r = bk_op_lock(ctx, err);
	if (r < 0)
		return r;
	r = bk_op_depot_list(ctx, &v, &n, err);
	if (r >= 0 && depot_find(v, n, name, version, &i) < 0)
		r = bk_err_set(err, -ENOENT,
			       "no image '%s %s' in the depot (bankctl depot import IMAGE.bbi)",
			       name, version);
	bk_depot_entries_free(v, n);
	if (r < 0)
		goto out;
	(void) snprintf(d.name, sizeof(d.name), "%s", name);
	(void) snprintf(d.version, sizeof(d.version), "%s", version);
	d.mode = mode;
	d.set = (uint64_t) time(NULL);
	o = bk_op_desired_to_json(&d);
	if (!o || bk_json_add_u64(o, "format", 1) < 0) {
		r = bk_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	r = open_state(ctx, true, &dfd, err);
	if (r >= 0)
		r = bk_json_write_atomic_at(dfd, BK_DESIRED_FILE, o, 0644, 0, err);
out:
	if (r < 0)
		bk_op_event(ctx, "desired", r, err, "%s", "");
	else
		bk_op_event(ctx, "desired", 0, NULL, "desired image %s %s, live-patch mode %s",
			    name, version, bk_lp_mode_to_string(mode));
	if (r >= 0 && ret)
		*ret = d;
	return r < 0 ? r : 0;
}

int bk_op_desired_clear(struct bk_op_ctx *ctx, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bk_op_lock(ctx, err);
	if (r < 0)
		return r;
	r = open_state(ctx, false, &dfd, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 1;
	}
	if (r < 0)
		return r;
	if (unlinkat(dfd, BK_DESIRED_FILE, 0) < 0) {
		if (errno == ENOENT)
			return 1;
		return bk_err_set(err, -errno, "cannot remove '%s': %m", BK_DESIRED_FILE);
	}
	if (fsync(dfd) < 0)
		return bk_err_set(err, -errno, "cannot sync '%s': %m",
				  bk_op_path(ctx, BK_OP_STATE_DIR));
	bk_op_event(ctx, "desired", 0, NULL, "desired image cleared");
	return 0;
}

/* ---- compliance scan ---------------------------------------------------------------------- */

/* Add v (present: v must not be NULL, else -ENOMEM), or JSON null when not present. */
static int add_opt(struct json_object *o, const char *key, bool present, struct json_object *v)
{
	if (!present) {
		json_object_put(v);
		return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
	}
	return bk_json_add(o, key, v);
}

_printf_(2, 3) static void set_reason(struct bk_op_scan_result *res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void) vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
}

/* "name version (build b)" of a content record (JSON) into sb, and its name. */
static bool content_image(struct json_object *c, struct bk_op_scan_bank *sb, const char **ret_name)
{
	const char *name = NULL, *version = NULL, *build = NULL;

	if (!c || bk_json_get_string(c, "name", true, &name, NULL) < 0 ||
	    bk_json_get_string(c, "version", true, &version, NULL) < 0)
		return false;
	(void) bk_json_get_string(c, "build", false, &build, NULL);
	(void) snprintf(sb->image, sizeof(sb->image), "%s %s (build %s)", name, version,
			build ? build : "-");
	(void) snprintf(sb->version, sizeof(sb->version), "%s", version);
	(void) snprintf(sb->build, sizeof(sb->build), "%s", build ? build : "-");
	*ret_name = name;
	return true;
}

/*
 * Is the content record c the image the depot entry e holds? The same manifest digest (name,
 * version, build, payloads and their digests all in it); name and version alone when the
 * depot does not hold the desired image (e NULL).
 */
static bool content_is(struct json_object *c, const struct bk_op_desired *des,
		       const struct bk_depot_entry *e)
{
	const char *name = NULL, *version = NULL, *hex = NULL;
	uint8_t sha[BK_SHA256_LEN];

	if (bk_json_get_string(c, "name", true, &name, NULL) < 0 ||
	    bk_json_get_string(c, "version", true, &version, NULL) < 0 ||
	    strcmp(name, des->name) != 0 || strcmp(version, des->version) != 0)
		return false;
	if (!e)
		return true;
	return bk_json_get_string(c, "manifest_sha256", true, &hex, NULL) >= 0 &&
	       bk_sha256_from_hex(hex, sha) >= 0 &&
	       memcmp(sha, e->manifest_sha256, sizeof(sha)) == 0;
}

/*
 * Is the live-patched revision rev the desired image's? Its image name and version, and its
 * payload's digest is the one the depot bundle's manifest gives that payload (e NULL: name
 * and version alone).
 */
static bool rev_is(const struct bk_rev *rev, const struct bk_op_desired *des,
		   const struct bk_depot_entry *e)
{
	const struct bk_payload *p;
	char hex[BK_SHA256_HEX_LEN + 1];

	if (strcmp(rev->image, des->name) != 0 || strcmp(rev->version, des->version) != 0)
		return false;
	if (!e)
		return true;
	p = rev->payload ? bk_manifest_find_payload(e->manifest, rev->payload) : NULL;
	if (!p || !rev->digest)
		return false;
	bk_sha256_to_hex(p->sha256, hex);
	return strcmp(hex, rev->digest) == 0;
}

/* The revision in service (live-patched), when there is one: 0 and *ret, 1 none. */
static int current_rev(struct bk_op_ctx *ctx, struct bk_rev *ret)
{
	_cleanup_close_ int run_dfd = -EBADF, state_dfd = -EBADF, revs_dfd = -EBADF;
	_cleanup_free_ char *cur = NULL;

	if (open_state(ctx, false, &state_dfd, NULL) < 0 ||
	    bk_op_open_dir(ctx, BK_OP_RUN_DIR, false, &run_dfd, NULL) < 0)
		return 1;
	if (bk_rev_pointer_get(run_dfd, BK_REV_CURRENT, &cur, NULL) < 0)
		return 1;
	revs_dfd = openat(state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (revs_dfd < 0 || bk_rev_load(revs_dfd, cur, ret, NULL) < 0)
		return 1;
	return 0;
}

/* The image cannot be applied: why into buf (0 when it can). */
static int incompatible(struct bk_op_ctx *ctx, const struct bk_op_desired *des,
			const struct bk_boot_data *d, const char *booted_version,
			enum bk_bank_id target, char *buf, size_t len)
{
	struct bk_depot_entry *v = NULL;
	const struct bk_manifest *m;
	struct bk_disk *disk = NULL;
	struct bk_disk_part part;
	size_t n = 0, i;
	int r = 0;

	if (bk_op_depot_list(ctx, &v, &n, NULL) < 0 ||
	    depot_find(v, n, des->name, des->version, &i) < 0) {
		(void) snprintf(buf, len, "%s %s is not in the depot", des->name, des->version);
		bk_depot_entries_free(v, n);
		return 1;
	}
	m = v[i].manifest;
	if (!ctx->config.compatible)
		r = snprintf(buf, len, "this host has no [system] compatible in '%s'",
			     ctx->config_path);
	else if (strcmp(m->compatible, ctx->config.compatible) != 0)
		r = snprintf(buf, len, "%s %s is for '%s', this host is '%s'", m->name, m->version,
			     m->compatible, ctx->config.compatible);
	else if (m->security_epoch < d->state.floor)
		r = snprintf(buf, len,
			     "%s %s has security epoch %llu, below the floor %llu: it would never "
			     "boot",
			     m->name, m->version, (unsigned long long) m->security_epoch,
			     (unsigned long long) d->state.floor);
	else if (booted_version && bk_version_compare(m->version, booted_version) < 0)
		r = snprintf(buf, len, "%s %s is older than %s, booted: a downgrade", m->name,
			     m->version, booted_version);
	else if (target >= 0 && bk_op_get_disk(ctx, &disk, NULL) >= 0 &&
		 bk_disk_get_part(disk, bk_part_id_from_bank(target), &part) >= 0 &&
		 part.size != 0) {
		/* The manifest and signature files are small: a few blocks beside the payloads. */
		uint64_t need = bk_stage_space_needed(m, 64 * 1024, 16 * 1024, 4096);

		if (need > part.size)
			r = snprintf(buf, len, "%s %s needs %.1f MiB, bank %s has %.1f MiB",
				     m->name, m->version, (double) need / 1048576.0,
				     bk_bank_id_to_string(target), (double) part.size / 1048576.0);
	}
	bk_depot_entries_free(v, n);
	return r > 0 ? 1 : 0;
}

void bk_op_scan(struct bk_op_ctx *ctx, struct bk_op_scan_result *res)
{
	_cleanup_(bk_boot_freep) struct bk_boot *boot = NULL;
	struct bk_boot_decision dec;
	struct bk_booted booted;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	struct bk_rev rev = { 0 };
	const char *bv = NULL, *in_name = NULL, *in_version = NULL, *in_build = NULL;
	char in_name_buf[128] = "";
	struct bk_op_scan_bank *nb = NULL;
	struct bk_depot_entry *dv = NULL;
	const struct bk_depot_entry *de = NULL; /* the desired image in the depot */
	const char *twhy = NULL, *what;
	enum bk_bank_id target;
	char why[512];
	size_t dn = 0, di;
	uint64_t m0 = bk_now_ns();
	bool live = false, in_match;
	int r;

	*res = (struct bk_op_scan_result){ .state = BK_UNKNOWN,
					   .booted = _BK_BANK_INVALID,
					   .next = _BK_BANK_INVALID };
	res->start_ns = bk_op_realtime_ns();
	if (!ctx->configured) {
		set_reason(res, "nothing is configured: no '%s'", ctx->config_path);
		goto out;
	}
	r = bk_op_desired_get(ctx, &res->desired, &err);
	if (r < 0) {
		set_reason(res, "%s", err.msg);
		goto out;
	}
	if (r > 0) {
		set_reason(res, "no desired image is set (bankctl desired set NAME VERSION)");
		goto out;
	}
	res->has_desired = true;
	if (bk_op_depot_list(ctx, &dv, &dn, NULL) >= 0 &&
	    depot_find(dv, dn, res->desired.name, res->desired.version, &di) == 0)
		de = &dv[di];
	r = bk_op_boot_load(ctx, &boot, &d, &err);
	if (r < 0) {
		set_reason(res, "cannot read the boot state: %s", err.msg);
		goto out;
	}
	r = bk_op_booted(ctx, &booted, NULL, &err);
	if (r < 0) {
		set_reason(res, "cannot tell the booted bank: %s", err.msg);
		goto out;
	}
	if (r > 0) {
		set_reason(res, "the booted bank is unknown (no bootbank.bank= on the kernel "
				"command line, no run/bootbank/booted.json)");
		goto out;
	}
	res->has_booted = true;
	res->booted = booted.bank;
	if (bk_select_decide(&d.state, false, &dec, NULL) >= 0 && dec.reason != BK_REASON_NONE)
		res->next = dec.bank;
	for (enum bk_bank_id b = 0; b < _BK_BANK_MAX; b++) {
		_cleanup_(json_object_putp) struct json_object *c = NULL;
		struct bk_op_scan_bank *sb = &res->banks[b];
		const char *name;

		sb->state = d.state.bank[b].state;
		sb->booted = b == res->booted;
		sb->next = b == res->next;
		if (sb->state == BK_BANK_EMPTY || bk_op_bank_content(ctx, b, &c) != 0)
			continue;
		sb->known = content_image(c, sb, &name);
		if (!sb->known)
			continue;
		sb->desired = content_is(c, &res->desired, de);
		if (b == res->booted) {
			(void) snprintf(in_name_buf, sizeof(in_name_buf), "%s", name);
			in_name = in_name_buf;
			in_version = bv = sb->version;
			in_build = sb->build;
		}
	}
	if (!res->banks[res->booted].known) {
		set_reason(res, "the content of the booted bank %s cannot be read",
			   bk_bank_id_to_string(res->booted));
		goto out;
	}
	(void) snprintf(res->in_service, sizeof(res->in_service), "%s",
			res->banks[res->booted].image);
	(void) snprintf(res->in_service_how, sizeof(res->in_service_how), "booted from bank %s",
			bk_bank_id_to_string(res->booted));
	/* A live patch puts another image's live payload in service than the booted bank's. */
	if (current_rev(ctx, &rev) == 0 && rev.image && rev.version &&
	    (strcmp(rev.version, bv) != 0 || !rev.bank ||
	     strcmp(rev.bank, bk_bank_id_to_string(res->booted)) != 0)) {
		enum bk_bank_id rb = rev.bank ? bk_bank_id_from_string(rev.bank) : _BK_BANK_INVALID;

		live = true;
		in_name = rev.image;
		in_version = rev.version;
		in_build = NULL;
		if (rb >= 0 && res->banks[rb].known &&
		    strcmp(res->banks[rb].version, rev.version) == 0) {
			(void) snprintf(res->in_service, sizeof(res->in_service), "%s",
					res->banks[rb].image);
			in_build = res->banks[rb].build;
		} else
			(void) snprintf(res->in_service, sizeof(res->in_service), "%s %s",
					rev.image, rev.version);
		(void) snprintf(res->in_service_how, sizeof(res->in_service_how),
				"live-patched: revision '%s'%s%s, booted bank %s", rev.id,
				rev.bank ? " from bank " : "", rev.bank ? rev.bank : "",
				bk_bank_id_to_string(res->booted));
	}
	nb = res->next >= 0 ? &res->banks[res->next] : NULL;
	in_match = live ? rev_is(&rev, &res->desired, de) : res->banks[res->booted].desired;
	if (in_match) {
		if (nb && nb->desired) {
			res->state = BK_COMPLIANT;
			set_reason(res,
				   "%s is in service (%s); bank %s, which boots next, holds it%s",
				   res->in_service, res->in_service_how,
				   bk_bank_id_to_string(res->next),
				   !live && res->banks[res->booted].state == BK_BANK_TRYING ?
					   " (on trial: mark-good confirms it)" :
					   "");
		} else {
			res->state = BK_NON_COMPLIANT;
			set_reason(res,
				   "%s is in service (%s), but the next boot would boot %s%s%s%s%s",
				   res->in_service, res->in_service_how, nb ? "bank " : "nothing",
				   nb ? bk_bank_id_to_string(res->next) : "",
				   nb && nb->known ? " (" : "", nb && nb->known ? nb->image : "",
				   nb && nb->known ? ")" : "");
		}
		goto out;
	}
	if (nb && nb->desired && res->next != res->booted && nb->state == BK_BANK_STAGED) {
		res->state = BK_COMPLIANT_PENDING_REBOOT;
		set_reason(
			res,
			"%s is staged and activated in bank %s, which boots next; in service: %s "
			"(%s): a reboot brings it",
			nb->image, bk_bank_id_to_string(res->next), res->in_service,
			res->in_service_how);
		goto out;
	}
	if (bk_op_stage_target(ctx, &target, &twhy, NULL) < 0)
		target = _BK_BANK_INVALID;
	if (incompatible(ctx, &res->desired, &d, bv, target, why, sizeof(why)) > 0) {
		res->state = BK_INCOMPATIBLE;
		set_reason(res, "%s", why);
		goto out;
	}
	res->state = BK_NON_COMPLIANT;
	/* Same name and version, another image: the build says which, else the manifest. */
	what = strcmp(in_name, res->desired.name) != 0	     ? "name" :
	       strcmp(in_version, res->desired.version) != 0 ? "version" :
	       in_build && de &&
			       strcmp(in_build, de->manifest->build ? de->manifest->build : "-") !=
				       0 ?
							       "build" :
							       "manifest";
	{
		const char *other = res->booted == BK_BANK_A ? "B" : "A";
		const struct bk_op_scan_bank *ob = &res->banks[res->booted == BK_BANK_A];

		set_reason(
			res,
			"%s differs: in service %s (%s), desired %s %s%s%s%s; bank %s holds %s%s%s",
			what, res->in_service, res->in_service_how, res->desired.name,
			res->desired.version, de ? " (build " : "",
			de ? (de->manifest->build ? de->manifest->build : "-") : "", de ? ")" : "",
			other,
			ob->state == BK_BANK_EMPTY ? "nothing" :
			ob->known		   ? ob->image :
						     "an unreadable image",
			ob->state == BK_BANK_EMPTY ? "" : ", ",
			ob->state == BK_BANK_EMPTY ? "" : bk_bank_state_to_string(ob->state));
	}
out:
	bk_depot_entries_free(dv, dn);
	bk_rev_release(&rev);
	res->duration_ns = bk_now_ns() - m0;
}

struct json_object *bk_op_scan_to_json(const struct bk_op_scan_result *res)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *banks = json_object_new_object();

	if (!o || !banks || bk_json_add(o, "banks", banks) < 0)
		return json_object_put(banks), NULL;
	if (bk_json_add_string(o, "state", bk_compliance_to_string(res->state)) < 0 ||
	    bk_json_add_u64(o, "exit_code", (uint64_t) bk_compliance_exit_code(res->state)) < 0 ||
	    bk_json_add_string(o, "reason", res->reason) < 0 ||
	    add_opt(o, "desired", res->has_desired,
		    res->has_desired ? bk_op_desired_to_json(&res->desired) : NULL) < 0 ||
	    bk_op_json_add_nullable(o, "in_service", res->in_service[0] ? res->in_service : NULL) <
		    0 ||
	    bk_op_json_add_nullable(o, "in_service_how",
				    res->in_service_how[0] ? res->in_service_how : NULL) < 0 ||
	    bk_op_json_add_nullable(
		    o, "booted", res->has_booted ? bk_bank_id_to_string(res->booted) : NULL) < 0 ||
	    bk_op_json_add_nullable(o, "next", bk_bank_id_to_string(res->next)) < 0)
		return NULL;
	for (enum bk_bank_id b = 0; res->has_booted && b < _BK_BANK_MAX; b++) {
		const struct bk_op_scan_bank *sb = &res->banks[b];
		struct json_object *x = json_object_new_object();

		if (!x || bk_json_add(banks, bk_bank_id_to_string(b), x) < 0)
			return json_object_put(x), NULL;
		if (bk_json_add_string(x, "state", bk_bank_state_to_string(sb->state)) < 0 ||
		    bk_op_json_add_nullable(x, "image", sb->known ? sb->image : NULL) < 0 ||
		    bk_json_add_bool(x, "desired", sb->desired) < 0 ||
		    bk_json_add_bool(x, "booted", sb->booted) < 0 ||
		    bk_json_add_bool(x, "next", sb->next) < 0)
			return NULL;
	}
	return TAKE_PTR(o);
}

/* ---- pre-check ---------------------------------------------------------------------------- */

_printf_(5, 6) static void add_check(struct bk_op_precheck_result *res, const char *name,
				     bool live_only, enum bk_check_result result, const char *fmt,
				     ...)
{
	struct bk_op_check *c;
	va_list ap;

	if (res->n_checks >= BK_OP_CHECKS_MAX)
		return;
	c = &res->checks[res->n_checks++];
	(void) snprintf(c->name, sizeof(c->name), "%s", name);
	c->live_only = live_only;
	c->result = result;
	va_start(ap, fmt);
	(void) vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
}

/* Is the directory of the boot state store writable (a read-only store bricks a rollout)? */
static void check_store(struct bk_op_ctx *ctx, struct bk_op_precheck_result *res)
{
	_cleanup_(bk_boot_freep) struct bk_boot *boot = NULL;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	char dir[4096], *slash;
	struct statvfs sv;
	const char *loc;

	if (bk_op_boot_load(ctx, &boot, &d, &err) < 0) {
		add_check(res, "boot state store", false, BK_CHECK_FAIL, "%s", err.msg);
		return;
	}
	loc = bk_boot_location(boot);
	if (!loc || loc[0] != '/') {
		add_check(res, "boot state store", false, BK_CHECK_SKIP,
			  "backend '%s' keeps its store where bootbank cannot look",
			  bk_boot_name(boot));
		return;
	}
	(void) snprintf(dir, sizeof(dir), "%s", loc);
	slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = '\0';
	if (statvfs(dir, &sv) < 0)
		add_check(res, "boot state store", false, BK_CHECK_FAIL, "cannot look at '%s': %m",
			  dir);
	else if (sv.f_flag & ST_RDONLY)
		add_check(res, "boot state store", false, BK_CHECK_FAIL,
			  "'%s' is on a read-only filesystem: the boot choice could not be saved",
			  dir);
	else if (access(dir, W_OK) < 0)
		add_check(res, "boot state store", false, BK_CHECK_FAIL, "'%s' is not writable: %m",
			  dir);
	else
		add_check(res, "boot state store", false, BK_CHECK_PASS, "'%s' (%s) is writable",
			  loc, bk_boot_name(boot));
}

/* Is the lock free (or ours)? */
static void check_lock(struct bk_op_ctx *ctx, struct bk_op_precheck_result *res)
{
	_cleanup_close_ int dfd = -EBADF, fd = -EBADF;

	if (ctx->lock_fd >= 0) {
		add_check(res, "lock", false, BK_CHECK_PASS, "held by this remediation");
		return;
	}
	if (bk_op_open_dir(ctx, BK_OP_RUN_DIR, false, &dfd, NULL) < 0 ||
	    (fd = openat(dfd, BK_LOCK_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		add_check(res, "lock", false, BK_CHECK_PASS, "free");
		return;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);

		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		add_check(res, "lock", false, BK_CHECK_FAIL,
			  "another bootbank operation%s%s%s holds '%s'", pid[0] ? " (pid " : "",
			  pid, pid[0] ? ")" : "", bk_op_path(ctx, BK_OP_RUN_DIR "/" BK_LOCK_FILE));
		return;
	}
	(void) flock(fd, LOCK_UN);
	add_check(res, "lock", false, BK_CHECK_PASS, "free");
}

/* The checks of the live path (the bundle b is open and verified, or NULL). */
static void check_live(struct bk_op_ctx *ctx, const struct bk_manifest *m, bool bundle_ok,
		       enum bk_bank_id target, struct bk_op_precheck_result *res)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_free_ char *cur = NULL, *id = NULL;
	_cleanup_close_ int revs_dfd = -EBADF;
	struct bk_rev rev = { 0 }, old = { 0 };
	struct bk_lp_dry_run dry = { 0 };
	struct bk_err err = { 0 };
	bool has_live = false, base = false;
	int r;

	for (size_t i = 0; m && i < m->n_payloads; i++)
		has_live = has_live || m->payloads[i].live;
	r = bk_op_live_open(ctx, &live, &err);
	if (r < 0) {
		add_check(res, "live-patch base", true, BK_CHECK_FAIL, "%s", err.msg);
		goto out;
	}
	revs_dfd = openat(live.state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!m)
		add_check(res, "live-patch base", true, BK_CHECK_SKIP, "no manifest");
	else if (!has_live)
		add_check(res, "live-patch base", true, BK_CHECK_FAIL, "%s %s has no live payload",
			  m->name, m->version);
	else if (bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &cur, NULL) < 0 || revs_dfd < 0 ||
		 bk_rev_load(revs_dfd, cur, &rev, NULL) < 0 || !rev.version)
		add_check(res, "live-patch base", true, BK_CHECK_FAIL,
			  "no revision in service to live-patch (bankctl rev restore mounts the "
			  "booted bank's)");
	else {
		for (size_t i = 0; i < m->n_live_patch_from; i++)
			base = base || strcmp(m->live_patch_from[i], rev.version) == 0;
		if (base)
			add_check(res, "live-patch base", true, BK_CHECK_PASS,
				  "%s %s live-patches revision '%s' (version %s)", m->name,
				  m->version, cur, rev.version);
		else
			add_check(res, "live-patch base", true, BK_CHECK_FAIL,
				  "%s %s cannot live-patch revision '%s' (version %s): not one of "
				  "its live-patch base versions",
				  m->name, m->version, cur, rev.version);
	}

	/*
	 * The workloads and the scan hooks: the dry run of the live patch, its scan hooks given
	 * what the real one gives them (the --no-fsr workloads too), their claims checked.
	 */
	if (m && base && bk_op_live_default_id(m, &id) < 0)
		id = NULL;
	r = bk_livepatch_dry_run(&live.lp, id, m ? m->version : NULL, &dry, &err);
	if (r < 0) {
		add_check(res, "workloads", true, BK_CHECK_FAIL, "%s", err.msg);
		add_check(res, "scan hooks", true, BK_CHECK_SKIP, "no dry run");
		goto room;
	}
	if (dry.workloads_r < 0)
		add_check(res, "workloads", true, BK_CHECK_FAIL, "%s", dry.workloads_err.msg);
	else if (dry.n_nofsr == 0)
		add_check(res, "workloads", true, BK_CHECK_PASS, "%zu running %s can be suspended",
			  dry.n_running, dry.n_running == 1 ? "workload" : "workloads");
	else
		add_check(res, "workloads", true, BK_CHECK_PASS,
			  "%zu running %s can be suspended; --no-fsr %s: %s", dry.n_running,
			  dry.n_running == 1 ? "workload" : "workloads", dry.nofsr,
			  dry.scanned ? "claimed by the scan hooks (dry run)" :
					"left to the scan hooks, not asked");

	if (dry.n_hooks < 0)
		add_check(res, "scan hooks", true, BK_CHECK_FAIL, "%s", dry.scan_err.msg);
	else if (dry.n_hooks == 0)
		add_check(res, "scan hooks", true, BK_CHECK_PASS, "no hooks installed");
	else if (dry.workloads_r < 0 && !dry.scanned && id)
		add_check(res, "scan hooks", true, BK_CHECK_SKIP,
			  "not asked: the workloads do not resolve");
	else if (!dry.scanned)
		add_check(res, "scan hooks", true, BK_CHECK_SKIP,
			  "no live patch to ask them about");
	else if (dry.scan_r < 0)
		add_check(res, "scan hooks", true, BK_CHECK_FAIL, "%s (dry run)", dry.scan_err.msg);
	else
		add_check(res, "scan hooks", true, BK_CHECK_PASS,
			  "%d %s let the live patch go on (dry run)", dry.n_hooks,
			  dry.n_hooks == 1 ? "hook" : "hooks");

room:
	if (m && !id && bk_op_live_default_id(m, &id) < 0)
		id = NULL;
	if (!m || target < 0)
		add_check(res, "revision room", true, BK_CHECK_SKIP, "no image or no target bank");
	if (m && target >= 0 && id) {
		if (revs_dfd >= 0 && bk_rev_load(revs_dfd, id, &old, NULL) == 0 &&
		    (!old.bank || strcmp(old.bank, bk_bank_id_to_string(target)) != 0))
			add_check(res, "revision room", true, BK_CHECK_FAIL,
				  "revision '%s' exists and does not come from bank %s", id,
				  bk_bank_id_to_string(target));
		else
			add_check(res, "revision room", true, BK_CHECK_PASS,
				  "revision '%s' from bank %s", id, bk_bank_id_to_string(target));
	}
	(void) bundle_ok;
out:
	bk_lp_dry_run_release(&dry);
	bk_rev_release(&rev);
	bk_rev_release(&old);
	bk_op_live_close(&live);
}

/* Staged intact: the bank's record is the bundle's image and every file matches it. */
static bool staged_intact(int bank_dfd, const struct bk_boot_data *d, enum bk_bank_id bank,
			  struct bk_bundle *b)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	uint8_t sha[BK_SHA256_LEN];
	const char *mbytes;
	size_t mlen = 0;

	if (d->state.bank[bank].state != BK_BANK_STAGED || !b)
		return false;
	mbytes = bk_bundle_get_manifest_bytes(b, &mlen);
	if (!mbytes || bk_sha256_buf(mbytes, mlen, sha) < 0)
		return false;
	if (bk_bank_record_read_at(bank_dfd, &rec, NULL) < 0 ||
	    memcmp(rec->manifest_sha256, sha, sizeof(sha)) != 0)
		return false;
	return bk_bank_check(bank_dfd, rec, BK_BANK_CHECK_DIGESTS, NULL) == 0;
}

static void verdicts(struct bk_op_precheck_result *res)
{
	const char *mode = bk_lp_mode_to_string(res->mode);
	size_t live_pos = 0, reboot_pos = 0;

	res->live_possible = res->reboot_possible = true;
	res->live_why[0] = res->reboot_why[0] = '\0';
	/* Every failing check of a path, in order: the reasons a refusal gives. */
	for (size_t i = 0; i < res->n_checks; i++) {
		const struct bk_op_check *c = &res->checks[i];

		if (c->result != BK_CHECK_FAIL)
			continue;
		bk_op_listf(res->live_why, sizeof(res->live_why), &live_pos, "%s: %s", c->name,
			    c->reason);
		res->live_possible = false;
		if (!c->live_only) {
			bk_op_listf(res->reboot_why, sizeof(res->reboot_why), &reboot_pos, "%s: %s",
				    c->name, c->reason);
			res->reboot_possible = false;
		}
	}
	switch (res->mode) {
	case BK_LP_MODE_ENFORCE:
		res->chosen = res->live_possible ? 1 : -1;
		(void) snprintf(res->chosen_why, sizeof(res->chosen_why), "live-patch mode %s: %s",
				mode,
				res->live_possible ? "the live path" :
						     "the live path is impossible, refused");
		break;
	case BK_LP_MODE_DISABLE:
		res->chosen = res->reboot_possible ? 0 : -1;
		(void) snprintf(res->chosen_why, sizeof(res->chosen_why), "live-patch mode %s: %s",
				mode,
				res->reboot_possible ? "the reboot path" :
						       "the reboot path is impossible, refused");
		break;
	case BK_LP_MODE_AUTO:
	case _BK_LP_MODE_MAX:
	case _BK_LP_MODE_INVALID:
		res->chosen = res->live_possible ? 1 : res->reboot_possible ? 0 : -1;
		(void) snprintf(
			res->chosen_why, sizeof(res->chosen_why), "live-patch mode %s: %s", mode,
			res->live_possible   ? "the live path (possible)" :
			res->reboot_possible ? "the reboot path (the live path is impossible)" :
					       "neither path is possible, refused");
		break;
	}
}

int bk_op_precheck(struct bk_op_ctx *ctx, enum bk_lp_mode mode, const struct bk_keyring *keyring,
		   struct bk_op_precheck_result *res, struct bk_err *err)
{
	_cleanup_(bk_keyring_freep) struct bk_keyring *own_keyring = NULL;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_(bk_boot_freep) struct bk_boot *boot = NULL;
	_cleanup_(json_object_putp) struct json_object *booted_content = NULL;
	_cleanup_close_ int depot_dfd = -EBADF, fd = -EBADF, state_dfd = -EBADF;
	struct bk_depot_entry *v = NULL;
	const struct bk_manifest *m = NULL;
	const char *booted_version = NULL, *target_why = NULL;
	struct bk_op_desired des;
	struct bk_booted booted;
	struct bk_boot_data d;
	struct bk_err e = { 0 };
	size_t n = 0, i = 0;
	uint64_t m0 = bk_now_ns();
	bool have_boot = false, have_booted = false, bundle_ok = false;
	int r;

	*res = (struct bk_op_precheck_result){ .chosen = -1, .target = _BK_BANK_INVALID };
	res->start_ns = bk_op_realtime_ns();
	if (!ctx->configured)
		return bk_err_set(err, -EINVAL, "nothing is configured: no '%s'", ctx->config_path);

	r = bk_op_desired_get(ctx, &des, &e);
	if (r != 0) {
		add_check(res, "desired image", false, BK_CHECK_FAIL, "%s",
			  r < 0 ? e.msg : "no desired image is set (bankctl desired set)");
		res->mode = mode >= 0 ? mode : BK_LP_MODE_AUTO;
		goto done;
	}
	res->mode = mode >= 0 ? mode : des.mode;
	add_check(res, "desired image", false, BK_CHECK_PASS, "%s %s, live-patch mode %s", des.name,
		  des.version, bk_lp_mode_to_string(res->mode));

	/* The bundle, from the depot, verified completely. */
	r = bk_op_depot_list(ctx, &v, &n, &e);
	if (r < 0 || depot_find(v, n, des.name, des.version, &i) < 0) {
		add_check(res, "depot", false, BK_CHECK_FAIL, "%s",
			  r < 0 ? e.msg : "the desired image is not in the depot");
		add_check(res, "signature", false, BK_CHECK_SKIP, "no bundle");
	} else {
		m = v[i].manifest;
		add_check(res, "depot", false, BK_CHECK_PASS, "%s, %.1f MiB", v[i].file,
			  (double) v[i].size / 1048576.0);
		if (!keyring) {
			r = bk_op_keyring_load(ctx, NULL, &own_keyring, &e);
			keyring = own_keyring;
		}
		if (r >= 0)
			r = open_depot(ctx, &depot_dfd, &e);
		if (r >= 0) {
			fd = openat(depot_dfd, v[i].file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
			if (fd < 0)
				r = bk_err_set(&e, -errno, "cannot open '%s': %m", v[i].file);
		}
		if (r >= 0)
			r = bk_bundle_open_verified(
				fd, keyring, ctx->config.check_time ? 0 : BK_CMS_NO_CHECK_TIME, &b,
				&e);
		if (r >= 0)
			r = bk_bundle_verify_payloads(b, 0, NULL, &e);
		if (r < 0)
			add_check(res, "signature", false, BK_CHECK_FAIL, "%s", e.msg);
		else {
			bundle_ok = true;
			m = bk_bundle_get_manifest(b);
			add_check(res, "signature", false, BK_CHECK_PASS,
				  "signed by '%s', %zu %s intact", bk_bundle_get_signer(b),
				  m->n_payloads, m->n_payloads == 1 ? "payload" : "payloads");
		}
	}

	if (!m)
		add_check(res, "compatible", false, BK_CHECK_SKIP, "no manifest");
	else if (!ctx->config.compatible)
		add_check(res, "compatible", false, BK_CHECK_FAIL,
			  "this host has no [system] compatible");
	else if (strcmp(m->compatible, ctx->config.compatible) != 0)
		add_check(res, "compatible", false, BK_CHECK_FAIL,
			  "the image is for '%s', this host is '%s'", m->compatible,
			  ctx->config.compatible);
	else
		add_check(res, "compatible", false, BK_CHECK_PASS, "'%s'", m->compatible);

	bk_err_clear(&e);
	have_boot = bk_op_boot_load(ctx, &boot, &d, &e) >= 0;
	r = bk_op_booted(ctx, &booted, NULL, &e);
	have_booted = r == 0;
	if (have_boot && have_booted && bk_op_bank_content(ctx, booted.bank, &booted_content) == 0)
		(void) bk_json_get_string(booted_content, "version", false, &booted_version, NULL);

	if (!m || !have_boot)
		add_check(res, "security floor", false, have_boot ? BK_CHECK_SKIP : BK_CHECK_FAIL,
			  "%s", have_boot ? "no manifest" : e.msg);
	else if (m->security_epoch < d.state.floor)
		add_check(res, "security floor", false, BK_CHECK_FAIL,
			  "security epoch %llu is below the floor %llu",
			  (unsigned long long) m->security_epoch,
			  (unsigned long long) d.state.floor);
	else
		add_check(res, "security floor", false, BK_CHECK_PASS, "epoch %llu, floor %llu",
			  (unsigned long long) m->security_epoch,
			  (unsigned long long) d.state.floor);

	if (!m || !booted_version)
		add_check(res, "downgrade", false, BK_CHECK_SKIP, "%s",
			  m ? "the booted version is unknown" : "no manifest");
	else if (bk_version_compare(m->version, booted_version) < 0)
		add_check(res, "downgrade", false, BK_CHECK_FAIL,
			  "%s is older than %s, booted: a downgrade", m->version, booted_version);
	else
		add_check(res, "downgrade", false, BK_CHECK_PASS, "%s after %s, booted", m->version,
			  booted_version);

	/* The alternate bank: not holding the revision in service, big enough. */
	if (have_boot && bk_op_stage_target(ctx, &res->target, &target_why, NULL) >= 0) {
		struct bk_rev cur = { 0 };

		if (current_rev(ctx, &cur) == 0 && cur.bank &&
		    strcmp(cur.bank, bk_bank_id_to_string(res->target)) == 0)
			add_check(res, "alternate bank", false, BK_CHECK_FAIL,
				  "bank %s holds the revision in service ('%s'): reboot into it or "
				  "roll the live patch back first",
				  cur.bank, cur.id);
		else
			add_check(res, "alternate bank", false, BK_CHECK_PASS, "bank %s (%s)",
				  bk_bank_id_to_string(res->target), target_why);
		bk_rev_release(&cur);
	}

	r = have_boot ? bk_op_stage_target(ctx, &res->target, &target_why, &e) : -ENODATA;
	if (r < 0)
		add_check(res, "bank size", false, BK_CHECK_FAIL, "no target bank: %s",
			  have_boot ? e.msg : "no boot state");
	else if (!bundle_ok)
		add_check(res, "bank size", false, BK_CHECK_SKIP, "no verified bundle");
	else {
		enum bk_part_id part = bk_part_id_from_bank(res->target);
		_cleanup_close_ int bank_dfd = -EBADF;
		uint64_t need = 0, has = 0;
		size_t mlen = 0;

		r = bk_op_mount_part(ctx, part, false, &bank_dfd, &e);
		if (r == -ENOENT)
			add_check(res, "bank size", false, BK_CHECK_SKIP, "no bootbank disk");
		else if (r < 0)
			add_check(res, "bank size", false, BK_CHECK_FAIL, "%s", e.msg);
		else if ((res->staged_intact = staged_intact(bank_dfd, &d, res->target, b)))
			add_check(res, "bank size", false, BK_CHECK_PASS,
				  "bank %s holds %s %s already, staged and intact",
				  bk_bank_id_to_string(res->target), m->name, m->version);
		else {
			(void) bk_bundle_get_manifest_bytes(b, &mlen);
			r = bk_stage_check_space(bank_dfd, res->target, m, mlen,
						 (size_t) bk_bundle_get_header(b)->signature_size,
						 &need, &has, &e);
			if (r < 0)
				add_check(res, "bank size", false, BK_CHECK_FAIL, "%s", e.msg);
			else
				add_check(res, "bank size", false, BK_CHECK_PASS,
					  "bank %s (%s): needs %.1f MiB, has %.1f MiB",
					  bk_bank_id_to_string(res->target), target_why,
					  (double) need / 1048576.0, (double) has / 1048576.0);
		}
		if (bank_dfd >= 0)
			(void) close(TAKE_FD(bank_dfd));
		if (r != -ENOENT)
			(void) bk_op_umount_part(ctx, part, NULL);
	}

	check_store(ctx, res);

	r = open_state(ctx, false, &state_dfd, &e);
	if (r >= 0)
		r = bk_maint_check(state_dfd, "remediation", &e);
	else if (r == -ENOENT)
		r = 0;
	if (r < 0)
		add_check(res, "maintenance mode", false, BK_CHECK_FAIL, "%s", e.msg);
	else
		add_check(res, "maintenance mode", false, BK_CHECK_PASS, "off");

	check_lock(ctx, res);

	if (!have_boot || !have_booted)
		add_check(res, "booted bank", false, BK_CHECK_FAIL, "the booted bank is unknown");
	else if (d.state.bank[booted.bank].state != BK_BANK_GOOD)
		add_check(res, "booted bank", false, BK_CHECK_FAIL,
			  "bank %s is %s, not good: never remediate from a trial boot (mark-good "
			  "or roll back first)",
			  bk_bank_id_to_string(booted.bank),
			  bk_bank_state_to_string(d.state.bank[booted.bank].state));
	else
		add_check(res, "booted bank", false, BK_CHECK_PASS, "bank %s is good",
			  bk_bank_id_to_string(booted.bank));

	check_live(ctx, m, bundle_ok, res->target, res);
done:
	bk_depot_entries_free(v, n);
	verdicts(res);
	res->duration_ns = bk_now_ns() - m0;
	return 0;
}

struct json_object *bk_op_precheck_to_json(const struct bk_op_precheck_result *res)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *a = json_object_new_array(), *live, *reboot;

	if (!o || !a || bk_json_add(o, "checks", a) < 0)
		return json_object_put(a), NULL;
	for (size_t i = 0; i < res->n_checks; i++) {
		const struct bk_op_check *c = &res->checks[i];
		struct json_object *x = json_object_new_object();

		if (!x || json_object_array_add(a, x) < 0)
			return json_object_put(x), NULL;
		if (bk_json_add_string(x, "name", c->name) < 0 ||
		    bk_json_add_string(x, "path", c->live_only ? "live" : "both") < 0 ||
		    bk_json_add_string(x, "result", bk_check_result_to_string(c->result)) < 0 ||
		    bk_json_add_string(x, "reason", c->reason) < 0)
			return NULL;
	}
	live = json_object_new_object();
	if (!live || bk_json_add(o, "live", live) < 0)
		return json_object_put(live), NULL;
	reboot = json_object_new_object();
	if (!reboot || bk_json_add(o, "reboot", reboot) < 0)
		return json_object_put(reboot), NULL;
	if (bk_json_add_bool(live, "possible", res->live_possible) < 0 ||
	    bk_op_json_add_nullable(live, "why", res->live_possible ? NULL : res->live_why) < 0 ||
	    bk_json_add_bool(reboot, "possible", res->reboot_possible) < 0 ||
	    bk_op_json_add_nullable(reboot, "why", res->reboot_possible ? NULL : res->reboot_why) <
		    0 ||
	    bk_json_add_bool(reboot, "staged_intact", res->staged_intact) < 0 ||
	    bk_op_json_add_nullable(reboot, "target", bk_bank_id_to_string(res->target)) < 0 ||
	    bk_json_add_string(o, "mode", bk_lp_mode_to_string(res->mode)) < 0 ||
	    bk_op_json_add_nullable(o, "chosen",
				    res->chosen == 1 ? "live" :
				    res->chosen == 0 ? "reboot" :
						       NULL) < 0 ||
	    bk_json_add_string(o, "chosen_why", res->chosen_why) < 0)
		return NULL;
	return TAKE_PTR(o);
}

/* ---- remediate ---------------------------------------------------------------------------- */

/* What a child sends back: plain data. */
struct child_msg {
	int r;
	struct bk_err err;
	struct bk_op_scan_result scan;
	struct bk_op_precheck_result pre;
};

/*
 * Run the scan (precheck=false) or the pre-check in a child process: both may mount a bank in
 * a private mount namespace, which the live patch that follows must not be in (bk-op.h). The
 * child inherits the lock and reports nothing through the observer.
 */
static int in_child(struct bk_op_ctx *ctx, bool precheck, enum bk_lp_mode mode,
		    const struct bk_keyring *keyring, struct child_msg *ret, struct bk_err *err)
{
	int p[2], status = 0;
	size_t got = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return bk_err_set(err, -errno, "cannot make a pipe: %m");
	pid = fork();
	if (pid < 0) {
		int r = -errno;

		(void) close(p[0]);
		(void) close(p[1]);
		return bk_err_set(err, r, "cannot fork: %m");
	}
	if (pid == 0) {
		static struct child_msg msg;
		const char *buf = (const char *) &msg;
		size_t done = 0;

		(void) close(p[0]);
		ctx->obs = (struct bk_op_observer){ 0 };
		if (precheck)
			msg.r = bk_op_precheck(ctx, mode, keyring, &msg.pre, &msg.err);
		else
			bk_op_scan(ctx, &msg.scan);
		while (done < sizeof(msg)) {
			ssize_t w = write(p[1], buf + done, sizeof(msg) - done);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				_exit(1);
			done += (size_t) w;
		}
		_exit(0);
	}
	(void) close(p[1]);
	while (got < sizeof(*ret)) {
		ssize_t n = read(p[0], (char *) ret + got, sizeof(*ret) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t) n;
	}
	(void) close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != sizeof(*ret) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return bk_err_set(err, -EPROTO, "the %s process failed (status 0x%x)",
				  precheck ? "pre-check" : "scan", (unsigned) status);
	if (ret->r < 0)
		*err = ret->err;
	return ret->r;
}

static int scan_step(struct bk_op_ctx *ctx, struct bk_op_task *task, const char *step,
		     struct bk_op_scan_result *ret, bool record, struct bk_err *err)
{
	static struct child_msg msg;
	int r;

	memset(&msg, 0, sizeof(msg));
	r = in_child(ctx, false, _BK_LP_MODE_INVALID, NULL, &msg, err);
	if (r < 0) {
		if (record)
			bk_op_task_step(task, step, r, NULL, bk_op_realtime_ns(), 0, "%s",
					err->msg);
		return r;
	}
	*ret = msg.scan;
	if (record)
		bk_op_task_step(
			task, step, 0,
			ret->state == BK_INCOMPATIBLE || ret->state == BK_UNKNOWN ? "failed" : NULL,
			ret->start_ns, ret->duration_ns, "%s: %s",
			bk_compliance_to_string(ret->state), ret->reason);
	return 0;
}

static int noop_before_write(void *userdata, enum bk_bank_id bank, const struct bk_boot_data *d,
			     struct bk_err *err)
{
	return 0;
}

/* Open the desired image's bundle in the depot. */
static int open_desired_bundle(struct bk_op_ctx *ctx, const struct bk_op_desired *des, int *ret_fd,
			       char **ret_file, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	_cleanup_free_ char *file = NULL;
	int fd, r;

	r = bk_depot_file_name(des->name, des->version, &file);
	if (r < 0)
		return bk_err_set(err, r, "invalid desired image '%s %s'", des->name, des->version);
	r = open_depot(ctx, &dfd, err);
	if (r < 0)
		return r;
	fd = openat(dfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s' in the depot: %m", file);
	*ret_fd = fd;
	if (ret_file)
		*ret_file = TAKE_PTR(file);
	return 0;
}

/* Sync, then reboot through systemd when it runs, else reboot(2). Returns only on failure. */
static int do_reboot(struct bk_err *err)
{
	sync();
	if (access("/run/systemd/system", F_OK) == 0) {
		char a0[] = "systemctl", a1[] = "reboot";
		char *argv[] = { a0, a1, NULL };
		int status = 0;
		pid_t pid;
		int r;

		r = posix_spawnp(&pid, "systemctl", NULL, NULL, argv, environ);
		if (r != 0)
			return bk_err_set(err, -r, "cannot run systemctl reboot: %s", strerror(r));
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return bk_err_set(err, -EIO, "systemctl reboot failed (status 0x%x)",
					  (unsigned) status);
		return 0;
	}
	if (reboot(RB_AUTOBOOT) < 0)
		return bk_err_set(err, -errno, "cannot reboot: %m");
	return 0;
}

void bk_op_remediate_result_release(struct bk_op_remediate_result *res)
{
	json_object_put(res->steps);
	res->steps = NULL;
	res->rep = bk_lp_report_free(res->rep);
}

int bk_op_remediate_exit_code(const struct bk_op_remediate_result *res, int r,
			      const struct bk_err *err)
{
	switch (res->outcome) {
	case BK_REMEDIATE_NOTHING:
	case BK_REMEDIATE_DONE:
	case BK_REMEDIATE_REBOOTING:
		return r < 0 ? bk_exit_code_from_errno(err && err->code < 0 ? err->code : r) :
			       BK_EXIT_OK;
	case BK_REMEDIATE_REBOOT_REQUIRED:
		return BK_EXIT_PENDING_REBOOT;
	case BK_REMEDIATE_REFUSED:
		if (r == -EMEDIUMTYPE)
			return BK_EXIT_INCOMPATIBLE;
		if (r == -ENODATA)
			return BK_EXIT_UNKNOWN;
		return BK_EXIT_PRECHECK_FAILED;
	case BK_REMEDIATE_FAILED:
		break;
	}
	return bk_exit_code_from_errno(err && err->code < 0 ? err->code : r);
}

static const char *const outcomes[] = {
	[BK_REMEDIATE_NOTHING] = "nothing to do",
	[BK_REMEDIATE_DONE] = "compliant",
	[BK_REMEDIATE_REBOOT_REQUIRED] = "reboot required",
	[BK_REMEDIATE_REBOOTING] = "rebooting",
	[BK_REMEDIATE_REFUSED] = "refused",
	[BK_REMEDIATE_FAILED] = "failed",
};

struct json_object *bk_op_remediate_result_to_json(const struct bk_op_remediate_result *res,
						   int exit_code, const struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *sw = NULL;

	if (!o || bk_op_json_add_nullable(o, "task", res->task[0] ? res->task : NULL) < 0 ||
	    bk_json_add_bool(o, "ok", exit_code == 0 || exit_code == BK_EXIT_PENDING_REBOOT) < 0 ||
	    bk_json_add_u64(o, "exit_code", (uint64_t) exit_code) < 0 ||
	    bk_op_json_add_nullable(o, "error", err && err->code < 0 ? err->msg : NULL) < 0 ||
	    bk_json_add_string(o, "outcome", outcomes[res->outcome]) < 0 ||
	    bk_op_json_add_nullable(o, "path", res->path) < 0 ||
	    bk_json_add(o, "before", bk_op_scan_to_json(&res->before)) < 0 ||
	    add_opt(o, "precheck", res->has_pre,
		    res->has_pre ? bk_op_precheck_to_json(&res->pre) : NULL) < 0 ||
	    add_opt(o, "after", res->has_after,
		    res->has_after ? bk_op_scan_to_json(&res->after) : NULL) < 0 ||
	    bk_json_add(o, "steps",
			res->steps ? json_object_get(res->steps) : json_object_new_array()) < 0)
		return NULL;
	if (res->rep && bk_op_live_report_json(res->rep, &sw) < 0)
		return NULL;
	if (add_opt(o, "switch", sw != NULL, sw) < 0)
		return NULL;
	return TAKE_PTR(o);
}

static void detail_checks(struct bk_op_task *t, const struct bk_op_precheck_result *pre)
{
	for (size_t i = 0; i < pre->n_checks; i++) {
		const struct bk_op_check *c = &pre->checks[i];

		bk_op_task_detail(t, "%-4s  %-17s %s%s", bk_check_result_to_string(c->result),
				  c->name, c->live_only ? "(live) " : "", c->reason);
	}
	bk_op_task_detail(t, "live path: %s%s%s%s", pre->live_possible ? "possible" : "impossible",
			  pre->live_possible ? "" : " (", pre->live_possible ? "" : pre->live_why,
			  pre->live_possible ? "" : ")");
	bk_op_task_detail(
		t, "reboot path: %s%s%s%s", pre->reboot_possible ? "possible" : "impossible",
		pre->reboot_possible ? "" : " (", pre->reboot_possible ? "" : pre->reboot_why,
		pre->reboot_possible ? "" : ")");
}

static int reboot_path(struct bk_op_ctx *ctx, struct bk_op_task *task,
		       const struct bk_op_desired *des, const struct bk_op_remediate_opts *o,
		       const struct bk_keyring *keyring, struct bk_op_remediate_result *res,
		       struct bk_err *err)
{
	struct bk_op_boot_result bres = { 0 };
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *file = NULL;
	uint64_t t0 = bk_op_realtime_ns(), m0 = bk_now_ns();
	int r;

	bk_op_task_begin_step(task, "stage");
	if (res->pre.staged_intact) {
		bk_op_task_step(task, "stage", 0, "skipped", t0, 0,
				"%s %s is staged in bank %s already, intact", des->name,
				des->version, bk_bank_id_to_string(res->pre.target));
	} else {
		struct bk_op_stage_result sres;
		struct bk_op_stage_opts so;

		/* The stage releases a rolled-back live patch's revision out of the bank. */
		r = open_desired_bundle(ctx, des, &fd, &file, err);
		if (r >= 0) {
			so = (struct bk_op_stage_opts){ .fd = fd,
							.path = file,
							.keyring = keyring,
							.no_check_time = o->no_check_time,
							.before_write = noop_before_write };
			r = bk_op_stage(ctx, &so, &sres, err);
		}
		if (r < 0) {
			bk_op_task_step(task, "stage", r, NULL, t0, bk_now_ns() - m0, "%s",
					err->msg);
			return r;
		}
		bk_op_task_step(
			task, "stage", 0, NULL, t0, bk_now_ns() - m0,
			"%s %s staged into bank %s (%s), %.1f MiB in %.2f s%s", des->name,
			des->version, bk_bank_id_to_string(sres.bank), sres.why,
			(double) sres.bytes / 1048576.0, sres.seconds,
			sres.revisions_released == 0 ? "" :
			sres.revisions_released == 1 ? ", a stale revision out of it released" :
						       ", its stale revisions released");
		res->pre.target = sres.bank;
		bk_op_stage_result_release(&sres);
	}
	bk_op_task_begin_step(task, "activate");
	t0 = bk_op_realtime_ns();
	m0 = bk_now_ns();
	ctx->events_in_task = true; /* one task: this step is the activation's event */
	r = bk_op_activate(ctx, res->pre.target, 0, &bres, err);
	ctx->events_in_task = false;
	if (r < 0)
		bk_op_task_step(task, "activate", r, NULL, t0, bk_now_ns() - m0, "%s", err->msg);
	else
		bk_op_task_step(task, "activate", 0, NULL, t0, bk_now_ns() - m0,
				"bank %s boots next: generation %llu, %llu tries",
				bk_bank_id_to_string(res->pre.target),
				(unsigned long long) bres.d.state.bank[res->pre.target].generation,
				(unsigned long long) bres.tries);
	return r;
}

int bk_op_remediate(struct bk_op_ctx *ctx, const struct bk_op_remediate_opts *o,
		    struct bk_op_remediate_result *res, struct bk_err *err)
{
	_cleanup_(bk_keyring_freep) struct bk_keyring *own_keyring = NULL;
	const struct bk_keyring *keyring = o->keyring;
	static struct child_msg msg;
	struct bk_op_desired *des = &res->before.desired;
	struct bk_op_task task;
	char subject[256];
	bool begun = false;
	int r;

	*res = (struct bk_op_remediate_result){ .outcome = BK_REMEDIATE_FAILED };
	if (!ctx->configured)
		return bk_err_set(err, -EINVAL, "nothing is configured: no '%s'", ctx->config_path);
	if (o->reboot && !bk_op_root_is_host(ctx))
		return bk_err_set(err, -EPERM,
				  "--reboot refused: the root '%s' is a sandbox, not the host's /",
				  ctx->root);
	if (!keyring) {
		r = bk_op_keyring_load(ctx, NULL, &own_keyring, err);
		if (r < 0)
			return r;
		keyring = own_keyring;
	}
	/* The lock first: its recovery finishes what an interrupted remediation left. */
	r = bk_op_lock(ctx, err);
	if (r < 0)
		return r;
	bk_op_task_init(&task, ctx, "remediate", false);
	(void) snprintf(res->task, sizeof(res->task), "%s", task.id);

	/* 1. Compliance scan; compliant: nothing to do and nothing recorded. */
	r = scan_step(ctx, &task, "compliance scan", &res->before, false, err);
	if (r < 0)
		goto out;
	if (res->before.state == BK_COMPLIANT) {
		res->outcome = BK_REMEDIATE_NOTHING;
		res->task[0] = '\0';
		goto out;
	}
	(void) snprintf(subject, sizeof(subject), "%s %s", des->name, des->version);
	bk_op_task_begin(&task, res->before.has_desired ? subject : "(no desired image)");
	begun = true;
	bk_op_task_step(&task, "compliance scan", 0,
			res->before.state == BK_INCOMPATIBLE || res->before.state == BK_UNKNOWN ?
				"failed" :
				NULL,
			res->before.start_ns, res->before.duration_ns, "%s: %s",
			bk_compliance_to_string(res->before.state), res->before.reason);
	switch (res->before.state) {
	case BK_INCOMPATIBLE:
		res->outcome = BK_REMEDIATE_REFUSED;
		r = bk_err_set(err, -EMEDIUMTYPE, "incompatible: %s", res->before.reason);
		goto out;
	case BK_UNKNOWN:
		res->outcome = BK_REMEDIATE_REFUSED;
		r = bk_err_set(err, -ENODATA, "unknown: %s", res->before.reason);
		goto out;
	case BK_COMPLIANT_PENDING_REBOOT:
		/* Staged and activated by an earlier run: only the reboot is left. */
		res->path = "reboot";
		goto reboot;
	case BK_COMPLIANT:
	case BK_NON_COMPLIANT:
	case _BK_COMPLIANCE_MAX:
	case _BK_COMPLIANCE_INVALID:
		break;
	}

	/* 2. Pre-check, and the path the mode picks. */
	bk_op_task_begin_step(&task, "pre-check");
	memset(&msg, 0, sizeof(msg));
	r = in_child(ctx, true, o->mode, keyring, &msg, err);
	if (r < 0) {
		bk_op_task_step(&task, "pre-check", r, NULL, bk_op_realtime_ns(), 0, "%s",
				err->msg);
		goto out;
	}
	res->pre = msg.pre;
	res->has_pre = true;
	bk_op_task_step(&task, "pre-check", res->pre.chosen < 0 ? -ECANCELED : 0, NULL,
			res->pre.start_ns, res->pre.duration_ns, "%s; live path %s, reboot path %s",
			res->pre.chosen_why, res->pre.live_possible ? "possible" : "impossible",
			res->pre.reboot_possible ? "possible" : "impossible");
	detail_checks(&task, &res->pre);
	if (res->pre.chosen < 0) {
		res->outcome = BK_REMEDIATE_REFUSED;
		r = bk_err_set(err, -ECANCELED, "remediation refused: %s: %s", res->pre.chosen_why,
			       res->pre.mode == BK_LP_MODE_DISABLE ? res->pre.reboot_why :
								     res->pre.live_why);
		goto out;
	}

	if (res->pre.chosen == 1) {
		/* 3a. The live path: the live patch's steps join this task. */
		struct bk_op_livepatch_result lres = { 0 };
		struct bk_op_livepatch_opts lo = { 0 };
		_cleanup_close_ int fd = -EBADF;
		_cleanup_free_ char *file = NULL;

		res->path = "live";
		r = open_desired_bundle(ctx, des, &fd, &file, err);
		if (r < 0) {
			bk_op_task_step(&task, "live patch", r, NULL, bk_op_realtime_ns(), 0, "%s",
					err->msg);
			goto out;
		}
		lo = (struct bk_op_livepatch_opts){ .fd = fd,
						    .path = file,
						    .keyring = keyring,
						    .no_check_time = o->no_check_time,
						    .task = &task };
		r = bk_op_livepatch_apply(ctx, &lo, &lres, err);
		res->rep = TAKE_PTR(lres.rep);
		bk_op_livepatch_result_release(&lres);
		if (r < 0)
			goto out;
	} else {
		/* 3b. The reboot path. */
		res->path = "reboot";
		r = reboot_path(ctx, &task, des, o, keyring, res, err);
		if (r < 0)
			goto out;
	}

reboot:
	/* 4. Compliance check. */
	r = scan_step(ctx, &task, "compliance check", &res->after, true, err);
	if (r < 0)
		goto out;
	res->has_after = true;
	if (res->after.state == BK_COMPLIANT) {
		res->outcome = BK_REMEDIATE_DONE;
		goto out;
	}
	if (res->after.state != BK_COMPLIANT_PENDING_REBOOT) {
		r = bk_err_set(err, -EPROTO, "still %s after remediation: %s",
			       bk_compliance_to_string(res->after.state), res->after.reason);
		goto out;
	}
	res->outcome = BK_REMEDIATE_REBOOT_REQUIRED;
	if (!o->reboot) {
		bk_op_task_step(&task, "reboot required", 0, "ok", bk_op_realtime_ns(), 0,
				"bank %s boots %s %s next: reboot to finish (bankctl remediate "
				"--reboot)",
				bk_bank_id_to_string(res->after.next), des->name, des->version);
		goto out;
	}
	bk_op_task_step(&task, "reboot", 0, NULL, bk_op_realtime_ns(), 0,
			"syncing and rebooting into bank %s",
			bk_bank_id_to_string(res->after.next));
	r = do_reboot(err);
	if (r >= 0)
		res->outcome = BK_REMEDIATE_REBOOTING;
out:
	if (r < 0 && res->outcome == BK_REMEDIATE_FAILED && begun)
		bk_op_task_step(&task, "remediate", r, NULL, bk_op_realtime_ns(), 0, "%s",
				err->msg);
	res->steps = TAKE_PTR(task.steps);
	bk_op_task_release(&task);
	return r;
}

int bk_op_desired_open(struct bk_op_ctx *ctx, int *ret_fd, char **ret_file,
		       struct bk_op_desired *ret_desired, struct bk_err *err)
{
	struct bk_op_desired des;
	int r;

	r = bk_op_desired_get(ctx, &des, err);
	if (r > 0)
		return bk_err_set(err, -ENOENT, "no desired image is set (bankctl desired set)");
	if (r < 0)
		return r;
	r = open_desired_bundle(ctx, &des, ret_fd, ret_file, err);
	if (r >= 0 && ret_desired)
		*ret_desired = des;
	return r;
}
