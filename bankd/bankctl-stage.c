/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl stage IMAGE.bbi: verify a bundle and write it into the alternate bank
 * (docs/banks.md, "Stage"; crash argument in docs/crash-safety.md). Also the content record
 * of a bank for `bankctl status` (bank.json, read from the bank mounted read-only in
 * bankctl's private mount namespace).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bankctl-events.h"
#include "bankctl-stage.h"
#include "bankctl.h"
#include "bk-bank.h"
#include "bk-bundle.h"
#include "bk-cms.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-mount.h"
#include "bk-select.h"
#include "bk-stage.h"

BK_DEFINE_CLEANUP(struct bk_keyring *, bk_keyring_free)

static const struct bankctl_verb verb = {
	"stage", NULL,
	"stage IMAGE.bbi [--activate] [--allow-downgrade] [--ignore-compatible] [--keyring PATH] "
	"[--no-check-time] [--json]",
	""
};

/* ---- a bank's content record -------------------------------------------------------------- */

/*
 * Mount bank read-only (private namespace) and read its record. Returns 0 and *ret; -ENOENT
 * when it has none; other -errno (could not find the disk or mount it, corrupt record).
 */
static int read_bank_record(struct bankctl *ctx, enum bk_bank_id bank, struct bk_bank_record **ret,
			    struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bankctl_mount_part(ctx, bk_part_id_from_bank(bank), false, &dfd, err);
	if (r < 0)
		return r;
	r = bk_bank_record_read_at(dfd, ret, err);
	if (r < 0 && r != -ENOENT)
		(void) bk_err_prefix(err, "bank %s", bk_bank_id_to_string(bank));
	return r;
}

/* ---- the copy of each bank's record in the state directory ------------------------------- */

static void cache_name(enum bk_bank_id bank, char *buf, size_t len)
{
	(void) snprintf(buf, len, "%s.json", bk_bank_id_to_string(bank));
}

/*
 * Remove ROOT/var/lib/bootbank/banks/<X>.json before the bank is touched (the copy is
 * informational: it must never describe content that is gone). 0 when there is none.
 */
static int cache_remove(int state_dfd, enum bk_bank_id bank, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	char name[16];
	int r;

	dfd = openat(state_dfd, BANKCTL_BANKS_CACHE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 :
					 bk_err_set(err, -errno, "cannot open '%s': %m",
						    BANKCTL_BANKS_CACHE_DIR);
	cache_name(bank, name, sizeof(name));
	if (unlinkat(dfd, name, 0) < 0)
		return errno == ENOENT ? 0 :
					 bk_err_set(err, -errno, "cannot remove '%s/%s': %m",
						    BANKCTL_BANKS_CACHE_DIR, name);
	r = bk_fsync_dir(dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync '%s': %s", BANKCTL_BANKS_CACHE_DIR,
				  strerror(-r));
	return 0;
}

/* Write the copy (atomic), once the bank's content is complete and durable. */
static int cache_write(int state_dfd, enum bk_bank_id bank, const struct bk_bank_record *rec,
		       struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	_cleanup_close_ int dfd = -EBADF;
	char name[16];
	int r;

	r = bk_mkdir_p_at(state_dfd, BANKCTL_BANKS_CACHE_DIR, 0755, &dfd, err);
	if (r < 0)
		return r;
	if (bk_bank_record_to_json(rec, &o) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	cache_name(bank, name, sizeof(name));
	return bk_json_write_atomic_at(dfd, name, o, 0644, 0, err);
}

/* The copy as JSON: 0 and *ret; -ENOENT when there is none or it does not parse. */
static int cache_read(struct bankctl *ctx, enum bk_bank_id bank, struct json_object **ret)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	_cleanup_close_ int dfd = -EBADF;
	_cleanup_free_ char *buf = NULL;
	char name[16];
	size_t len;

	dfd = bk_open_beneath(ctx->root_fd, BANKCTL_STATE_DIR "/" BANKCTL_BANKS_CACHE_DIR,
			      O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
	if (dfd < 0)
		return -ENOENT;
	cache_name(bank, name, sizeof(name));
	if (bk_read_file_at(dfd, name, BK_BANK_RECORD_MAX_SIZE, &buf, &len, NULL) < 0 ||
	    bk_bank_record_parse(buf, len, &rec, NULL) < 0 || bk_bank_record_to_json(rec, ret) < 0)
		return -ENOENT;
	return 0;
}

int bankctl_bank_content(struct bankctl *ctx, enum bk_bank_id bank, struct json_object **ret)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	struct bk_disk *disk;
	struct json_object *o;
	int r;

	/*
	 * Only a non-empty bank has content worth showing (stage empties the boot state before
	 * it touches the bank); this also keeps status on an empty sandbox from mounting.
	 */
	if (!ctx->configured || bankctl_boot_load(ctx, &b, &d, NULL) < 0 ||
	    d.state.bank[bank].state == BK_BANK_EMPTY)
		return 1;
	/* The copy stage keeps spares a mount (status answers in milliseconds). */
	if (cache_read(ctx, bank, ret) == 0)
		return 0;
	r = bankctl_get_disk(ctx, &disk, &err);
	if (r == -ENOENT)
		return 1; /* a sandbox without a disk: a boot state alone */
	if (r >= 0)
		r = read_bank_record(ctx, bank, &rec, &err);
	if (r == -ENOENT)
		return 1;
	if (r < 0) {
		o = json_object_new_object();
		if (!o || bk_json_add_string(o, "error", err.msg) < 0) {
			json_object_put(o);
			return 1;
		}
		*ret = o;
		return 0;
	}
	if (bk_bank_record_to_json(rec, &o) < 0)
		return 1;
	*ret = o;
	return 0;
}

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

static void progress_cb(const struct bk_stage_progress *p, void *userdata)
{
	struct progress *pr = userdata;
	uint64_t now = now_ns();
	bool last = p->end && p->index + 1 == p->n_payloads;
	double secs = (double) (now - pr->start_ns) / 1e9;
	double rate = secs > 0 ? (double) p->done / secs : 0;

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

/*
 * The bank to write: the alternate of the booted bank; with no booted bank known (a fresh
 * install), the alternate of the bank the store says booted last; failing that an empty bank
 * (A first), or else the bank the loader would not boot.
 */
static enum bk_bank_id choose_target(const struct bk_boot_data *d, int booted_r,
				     const struct bk_booted *booted, const char **ret_why)
{
	struct bk_boot_decision next;

	if (booted_r == 0) {
		*ret_why = "the alternate of the booted bank";
		return bk_bank_other(booted->bank);
	}
	if (d->has_last) {
		*ret_why = "the alternate of the bank booted last";
		return bk_bank_other(d->last.bank);
	}
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (d->state.bank[i].state == BK_BANK_EMPTY) {
			*ret_why = "empty, and no bank is booted";
			return (enum bk_bank_id) i;
		}
	*ret_why = "the bank the loader would not boot";
	if (bk_select_decide(&d->state, false, &next, NULL) < 0 || next.intended < 0)
		return BK_BANK_B;
	return bk_bank_other(next.intended);
}

/* After a failure once the bank may have been written: leave it clean and marked empty. */
static void undo_partial(struct bankctl *ctx, enum bk_bank_id bank, int *bank_dfd, int state_dfd)
{
	struct bk_err err = { 0 };
	int r = 0;

	if (*bank_dfd >= 0) {
		r = bk_remove_stale_temps_at(*bank_dfd, &err);
		(void) close(TAKE_FD(*bank_dfd));
	}
	if (r < 0) {
		bk_log(LOG_WARNING, "bank %s: %s, leaving it to the next run",
		       bk_bank_id_to_string(bank), err.msg);
		return;
	}
	if (bankctl_umount_part(ctx, bk_part_id_from_bank(bank), &err) < 0) {
		bk_log(LOG_WARNING, "bank %s: %s, leaving it to the next run",
		       bk_bank_id_to_string(bank), err.msg);
		return;
	}
	/* The bank is empty in the boot state and holds no partial file: nothing to recover. */
	if (bk_stage_marker_remove_at(state_dfd, &err) < 0)
		bk_log(LOG_WARNING, "%s, leaving it to the next run", err.msg);
}

static int stage(struct bankctl *ctx, const struct bankctl_stage_opts *o,
		 const struct bk_keyring *keyring, struct progress *pr,
		 struct bankctl_stage_result *res, struct bk_err *err)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_(bk_boot_freep) struct bk_boot *boot = NULL;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *booted_rec = NULL;
	_cleanup_close_ int state_dfd = -EBADF, fd = -EBADF, bank_dfd = -EBADF;
	struct bk_stage_write_options wo = { 0 };
	struct bk_stage_policy policy = { 0 };
	struct bk_stage_marker marker = { 0 };
	struct bk_booted booted = { 0 };
	struct bk_boot_data *d = &res->d;
	const struct bk_manifest *m;
	struct bk_disk_part part;
	struct bk_disk *disk;
	size_t mlen;
	uint64_t t0;
	int booted_r, r;

	r = bankctl_lock(ctx, err);
	if (r < 0)
		return r;
	r = bankctl_open_dir(ctx, BANKCTL_STATE_DIR, true, &state_dfd, err);
	if (r < 0)
		return r;
	r = bk_maint_check(state_dfd, "stage", err);
	if (r < 0)
		return r;

	/* Verify: header, signature (chain, time), manifest. */
	fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", o->path);
	wo.keyring = keyring;
	wo.cms_flags = o->no_check_time || !ctx->config.check_time ? BK_CMS_NO_CHECK_TIME : 0;
	r = bk_bundle_open_fd(fd, &b, err);
	if (r >= 0)
		r = bk_bundle_verify_signature(b, keyring, wo.cms_flags, err);
	if (r >= 0)
		r = bk_bundle_load_manifest(b, err);
	if (r < 0)
		return bk_err_prefix(err, "'%s'", o->path);
	m = bk_bundle_get_manifest(b);

	/* Which bank, and may this image go there? */
	r = bankctl_boot_load(ctx, &boot, d, err);
	if (r < 0)
		return r;
	booted_r = bankctl_booted(ctx, &booted, NULL, err);
	if (booted_r < 0)
		return booted_r;
	res->bank = choose_target(d, booted_r, &booted, &res->why);
	if (booted_r == 0 && booted.bank == res->bank)
		return bk_err_set(err, -EBUSY, "bank %s is booted: refusing to write it",
				  bk_bank_id_to_string(res->bank));

	policy.compatible = ctx->config.compatible;
	policy.ignore_compatible = o->ignore_compatible;
	policy.floor = d->state.floor;
	policy.allow_downgrade = o->allow_downgrade;
	if (booted_r == 0 && !o->allow_downgrade &&
	    d->state.bank[booted.bank].state != BK_BANK_EMPTY) {
		r = read_bank_record(ctx, booted.bank, &booted_rec, err);
		if (r < 0 && r != -ENOENT)
			return r;
		if (r >= 0) {
			policy.booted_version = booted_rec->version;
			policy.booted_bank = booted.bank;
		}
		/* Read only: the booted bank is never kept mounted, and never read-write. */
		r = bankctl_umount_part(ctx, bk_part_id_from_bank(booted.bank), err);
		if (r < 0)
			return r;
	}
	r = bk_stage_check_policy(m, &policy, err);
	if (r < 0)
		return r;

	/* The bank must be ours alone, and big enough. */
	r = bankctl_get_disk(ctx, &disk, err);
	if (r < 0)
		return r;
	r = bk_disk_get_part(disk, bk_part_id_from_bank(res->bank), &part);
	if (r < 0)
		return bk_err_set(err, r, "the disk has no bank %s",
				  bk_bank_id_to_string(res->bank));
	r = bk_disk_part_wait_unused(disk, bk_part_id_from_bank(res->bank),
				     BK_DISK_TEARDOWN_TIMEOUT_MS, NULL, err);
	if (r < 0)
		return bk_err_prefix(err, "bank %s", bk_bank_id_to_string(res->bank));
	r = bankctl_mount_part(ctx, bk_part_id_from_bank(res->bank), false, &bank_dfd, err);
	if (r < 0)
		return r;
	(void) bk_bundle_get_manifest_bytes(b, &mlen);
	r = bk_stage_check_space(bank_dfd, res->bank, m, mlen,
				 bk_bundle_get_header(b)->signature_size, NULL, NULL, err);
	if (r < 0)
		return r;
	(void) close(TAKE_FD(bank_dfd));

	if (o->before_write) {
		r = o->before_write(o->userdata, res->bank, d, err);
		if (r < 0)
			return r;
	}

	/* From here on the bank changes: its record's copy goes, the marker, the boot state. */
	r = cache_remove(state_dfd, res->bank, err);
	if (r < 0)
		return r;
	marker.bank = res->bank;
	(void) snprintf(marker.image, sizeof(marker.image), "%s", m->name);
	(void) snprintf(marker.version, sizeof(marker.version), "%s", m->version);
	marker.pid = (uint64_t) getpid();
	marker.started = (uint64_t) time(NULL);
	r = bk_stage_marker_write_at(state_dfd, &marker, err);
	if (r < 0)
		return r;
	r = bk_select_stage_begin(&d->state, res->bank, &d->state, err);
	if (r >= 0)
		r = bk_boot_data_set_bad_reason(d, res->bank, NULL, err);
	if (r >= 0)
		r = bk_boot_save(boot, d, err);
	if (r < 0) {
		/* Nothing changed: the old boot state and content stand. */
		(void) bk_stage_marker_remove_at(state_dfd, NULL);
		return r;
	}

	r = bankctl_mount_part(ctx, bk_part_id_from_bank(res->bank), true, &bank_dfd, err);
	if (r < 0) {
		undo_partial(ctx, res->bank, &bank_dfd, state_dfd);
		return r;
	}
	wo.progress = pr->json || pr->bar ? progress_cb : NULL;
	wo.userdata = pr;
	t0 = now_ns();
	pr->start_ns = t0;
	r = bk_stage_write_bank(b, bank_dfd, &wo, &res->record, err);
	progress_clear(pr);
	if (r < 0) {
		(void) bk_err_prefix(err, "bank %s", bk_bank_id_to_string(res->bank));
		undo_partial(ctx, res->bank, &bank_dfd, state_dfd);
		return r;
	}
	res->seconds = (double) (now_ns() - t0) / 1e9;
	for (size_t i = 0; i < m->n_payloads; i++)
		res->bytes += m->payloads[i].size;
	(void) close(TAKE_FD(bank_dfd));
	r = bankctl_umount_part(ctx, bk_part_id_from_bank(res->bank), err);
	if (r < 0)
		return r;

	/* Complete and durable: staged, then the marker goes. */
	r = bk_select_stage_done(&d->state, res->bank, m->security_epoch, &d->state, err);
	if (r >= 0)
		r = bk_boot_save(boot, d, err);
	if (r >= 0 && cache_write(state_dfd, res->bank, res->record, err) < 0) {
		bk_log(LOG_WARNING, "%s, ignoring", err->msg);
		bk_err_clear(err);
	}
	if (r >= 0)
		r = bk_stage_marker_remove_at(state_dfd, err);
	if (r < 0 || !o->activate)
		return r;

	r = bk_select_activate(&d->state, res->bank, ctx->config.tries, &d->state, err);
	if (r >= 0)
		r = bk_boot_save(boot, d, err);
	if (r < 0)
		return r;
	res->activated = true;
	return 0;
}

static void print_next(const struct bk_bootstate *s)
{
	struct bk_boot_decision next;

	if (bk_select_decide(s, false, &next, NULL) < 0)
		return;
	if (next.reason == BK_REASON_NONE)
		printf("  next boot: nothing (both banks are empty)\n");
	else
		printf("  next boot: bank %s (%s)\n", bk_bank_id_to_string(next.bank),
		       bk_boot_reason_to_string(next.reason));
}

static void print_text(const struct bankctl_stage_result *res)
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
	print_next(&res->d.state);
}

static int print_json(const struct bankctl_stage_result *res)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *image = NULL;

	if (!o || bk_bank_record_to_json(res->record, &image) < 0)
		return -ENOMEM;
	if (bk_json_add_string(o, "event", "result") < 0 || bk_json_add_bool(o, "ok", true) < 0 ||
	    bk_json_add_string(o, "bank", bk_bank_id_to_string(res->bank)) < 0 ||
	    bk_json_add_string(o, "why", res->why) < 0 || bk_json_add(o, "image", image) < 0 ||
	    bk_json_add_u64(o, "bytes", res->bytes) < 0 ||
	    bk_json_add(o, "seconds", json_object_new_double(res->seconds)) < 0 ||
	    bk_json_add_bool(o, "activated", res->activated) < 0 ||
	    bk_json_add(o, "boot", bankctl_bootstate_json(&res->d)) < 0)
		return -ENOMEM;
	puts(bk_json_to_string(o, false));
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

int bankctl_stage_run(struct bankctl *ctx, const struct bankctl_stage_opts *o,
		      const struct bk_keyring *keyring, struct bankctl_stage_result *res,
		      struct bk_err *err)
{
	struct progress pr = { .bar = !o->quiet && isatty(STDERR_FILENO) };

	bk_boot_data_init(&res->d);
	res->bank = _BK_BANK_INVALID;
	return stage(ctx, o, keyring, &pr, res, err);
}

int bankctl_stage_target(struct bankctl *ctx, enum bk_bank_id *ret, const char **ret_why,
			 struct bk_err *err)
{
	_cleanup_(bk_boot_freep) struct bk_boot *boot = NULL;
	struct bk_booted booted = { 0 };
	struct bk_boot_data d;
	int booted_r, r;

	r = bankctl_boot_load(ctx, &boot, &d, err);
	if (r < 0)
		return r;
	booted_r = bankctl_booted(ctx, &booted, NULL, err);
	if (booted_r < 0)
		return booted_r;
	*ret = choose_target(&d, booted_r, &booted, ret_why);
	return 0;
}

int bankctl_stage(struct bankctl *ctx, int argc, char **argv)
{
	enum {
		OPT_ACTIVATE = 0x100,
		OPT_ALLOW_DOWNGRADE,
		OPT_IGNORE_COMPATIBLE,
		OPT_KEYRING,
		OPT_NO_CHECK_TIME,
	};
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "activate", no_argument, NULL, OPT_ACTIVATE },
		{ "allow-downgrade", no_argument, NULL, OPT_ALLOW_DOWNGRADE },
		{ "ignore-compatible", no_argument, NULL, OPT_IGNORE_COMPATIBLE },
		{ "keyring", required_argument, NULL, OPT_KEYRING },
		{ "no-check-time", no_argument, NULL, OPT_NO_CHECK_TIME },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_(bk_keyring_freep) struct bk_keyring *keyring = NULL;
	struct bankctl_stage_opts o = { 0 };
	struct bankctl_stage_result res = { .bank = _BK_BANK_INVALID };
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
		default:
			if (bankctl_common_option(ctx, c, &verb) <= 0)
				return BK_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return bankctl_usage(&verb, "missing IMAGE.bbi");
	o.path = argv[optind++];
	if (optind < argc)
		return bankctl_usage(&verb, "unexpected argument '%s'", argv[optind]);
	if (!ctx->configured)
		return bankctl_usage(&verb, "nothing is configured: no '%s'", ctx->config_path);

	/* A keyring that cannot be loaded is a configuration error (exit 2), as for verify. */
	r = bankctl_keyring_load(ctx, keyring_arg, &keyring, &err);
	if (r < 0) {
		code = r == -ENOMEM ? BK_EXIT_FAILURE : BK_EXIT_USAGE;
		bk_log(LOG_ERR, "%s", err.msg);
		if (ctx->json)
			print_json_failure(code, &err, r);
		return code;
	}

	pr.json = ctx->json;
	pr.bar = !ctx->json && isatty(STDERR_FILENO);
	bk_boot_data_init(&res.d);
	fd = open(o.path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		r = bk_err_set(&err, -errno, "cannot open '%s': %m", o.path);
	else {
		o.fd = fd;
		r = stage(ctx, &o, keyring, &pr, &res, &err);
	}
	/* An event once the lock is ours (a refusal for "busy" has no lock: no event). */
	if (ctx->lock_fd >= 0) {
		if (r < 0)
			bankctl_event(ctx, "stage", r, &err, "%s", "");
		else
			bankctl_event(ctx, "stage", 0, NULL, "%s %s staged into bank %s (%s)%s",
				      res.record->name, res.record->version,
				      bk_bank_id_to_string(res.bank), res.why,
				      res.activated ? ", activated" : "");
	}
	if (r < 0) {
		code = bankctl_fail(r, &err);
		if (ctx->json)
			print_json_failure(code, &err, r);
		res.record = bk_bank_record_free(res.record);
		return code;
	}
	if (ctx->json)
		r = print_json(&res);
	else
		print_text(&res);
	res.record = bk_bank_record_free(res.record);
	return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
}
