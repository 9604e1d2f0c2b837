/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The stage operation: verify a bundle and write it into the alternate bank (docs/banks.md,
 * "Stage"; crash argument in docs/crash-safety.md). Also the content record of a bank for
 * status (bank.json, from the copy in the state directory or read from the bank mounted
 * read-only in the process's private mount namespace).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bk-bank.h"
#include "bk-bundle.h"
#include "bk-cms.h"
#include "bk-fetch.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-mount.h"
#include "bk-op-live.h"
#include "bk-op-stage.h"
#include "bk-op.h"
#include "bk-select.h"
#include "bk-sha256.h"
#include "bk-stage.h"

/* ---- a bank's content record -------------------------------------------------------------- */

/*
 * Mount bank read-only (private namespace) and read its record. Returns 0 and *ret; -ENOENT
 * when it has none; other -errno (could not find the disk or mount it, corrupt record).
 */
static int read_bank_record(struct bk_op_ctx *ctx, enum bk_bank_id bank,
			    struct bk_bank_record **ret, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bk_op_mount_part(ctx, bk_part_id_from_bank(bank), false, &dfd, err);
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

	dfd = openat(state_dfd, BK_OP_BANKS_CACHE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 :
					 bk_err_set(err, -errno, "cannot open '%s': %m",
						    BK_OP_BANKS_CACHE_DIR);
	cache_name(bank, name, sizeof(name));
	if (unlinkat(dfd, name, 0) < 0)
		return errno == ENOENT ? 0 :
					 bk_err_set(err, -errno, "cannot remove '%s/%s': %m",
						    BK_OP_BANKS_CACHE_DIR, name);
	r = bk_fsync_dir(dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync '%s': %s", BK_OP_BANKS_CACHE_DIR,
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

	r = bk_mkdir_p_at(state_dfd, BK_OP_BANKS_CACHE_DIR, 0755, &dfd, err);
	if (r < 0)
		return r;
	if (bk_bank_record_to_json(rec, &o) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	cache_name(bank, name, sizeof(name));
	return bk_json_write_atomic_at(dfd, name, o, 0644, 0, err);
}

/* The copy as JSON: 0 and *ret; -ENOENT when there is none or it does not parse. */
static int cache_read(struct bk_op_ctx *ctx, enum bk_bank_id bank, struct json_object **ret)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	_cleanup_close_ int dfd = -EBADF;
	_cleanup_free_ char *buf = NULL;
	char name[16];
	size_t len;

	dfd = bk_open_beneath(ctx->root_fd, BK_OP_STATE_DIR "/" BK_OP_BANKS_CACHE_DIR,
			      O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
	if (dfd < 0)
		return -ENOENT;
	cache_name(bank, name, sizeof(name));
	if (bk_read_file_at(dfd, name, BK_BANK_RECORD_MAX_SIZE, &buf, &len, NULL) < 0 ||
	    bk_bank_record_parse(buf, len, &rec, NULL) < 0 || bk_bank_record_to_json(rec, ret) < 0)
		return -ENOENT;
	return 0;
}

int bk_op_bank_content(struct bk_op_ctx *ctx, enum bk_bank_id bank, struct json_object **ret)
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
	if (!ctx->configured || bk_op_boot_load(ctx, &b, &d, NULL) < 0 ||
	    d.state.bank[bank].state == BK_BANK_EMPTY)
		return 1;
	/* The copy stage keeps spares a mount (status answers in milliseconds). */
	if (cache_read(ctx, bank, ret) == 0)
		return 0;
	r = bk_op_get_disk(ctx, &disk, &err);
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

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

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

/*
 * After a failure once the bank may have been written: leave it clean and marked empty. With
 * keep (a transfer from a URL failed), the verified chunks and the marker stay for a resume.
 */
enum undo {
	UNDO_TEMPS, /* remove the partial files (a stage from a file) */
	UNDO_CLEAR, /* remove everything written (a stage from a URL that cannot resume) */
	UNDO_KEEP,  /* keep the verified chunks and the marker (a URL's transfer failed) */
};

static void undo_partial(struct bk_op_ctx *ctx, enum bk_bank_id bank, int *bank_dfd, int state_dfd,
			 enum undo how)
{
	struct bk_err err = { 0 };
	int r = 0;

	if (how == UNDO_KEEP) {
		(void) close(TAKE_FD(*bank_dfd));
		if (bk_op_umount_part(ctx, bk_part_id_from_bank(bank), &err) < 0)
			bk_op_log(ctx, LOG_WARNING, "bank %s: %s", bk_bank_id_to_string(bank),
				  err.msg);
		return;
	}
	if (*bank_dfd >= 0 && how == UNDO_CLEAR) {
		r = bk_bank_clear_at(*bank_dfd, &err);
		(void) close(TAKE_FD(*bank_dfd));
	} else if (*bank_dfd >= 0) {
		r = bk_remove_stale_temps_at(*bank_dfd, &err);
		(void) close(TAKE_FD(*bank_dfd));
	}
	if (r < 0) {
		bk_op_log(ctx, LOG_WARNING, "bank %s: %s, leaving it to the next run",
			  bk_bank_id_to_string(bank), err.msg);
		return;
	}
	if (bk_op_umount_part(ctx, bk_part_id_from_bank(bank), &err) < 0) {
		bk_op_log(ctx, LOG_WARNING, "bank %s: %s, leaving it to the next run",
			  bk_bank_id_to_string(bank), err.msg);
		return;
	}
	/* The bank is empty in the boot state and holds no partial file: nothing to recover. */
	if (bk_stage_marker_remove_at(state_dfd, &err) < 0)
		bk_op_log(ctx, LOG_WARNING, "%s, leaving it to the next run", err.msg);
}

static void progress_cb(const struct bk_stage_progress *p, void *userdata)
{
	struct bk_op_ctx *ctx = userdata;

	ctx->obs.progress(ctx->obs.userdata, p);
}

/* A URL as the source of payload bytes (bk_stage_source). */
struct url_source {
	struct bk_fetch *fetch;
};

static int url_read(void *userdata, const struct bk_payload *p, uint64_t off, void *buf, size_t len,
		    struct bk_err *err)
{
	struct url_source *u = userdata;

	return bk_fetch_range(u->fetch, p->offset + off, buf, len, err);
}

/* The marker of a resumable stage, rewritten at each checkpoint. */
struct checkpoint {
	struct bk_stage_marker *marker;
	int state_dfd;
};

static int on_checkpoint(void *userdata, size_t payload, uint64_t chunks, struct bk_err *err)
{
	struct checkpoint *cp = userdata;

	cp->marker->payload = payload;
	cp->marker->chunks = chunks;
	return bk_stage_marker_write_at(cp->state_dfd, cp->marker, err);
}

static int stage(struct bk_op_ctx *ctx, const struct bk_op_stage_opts *o,
		 struct bk_op_stage_result *res, struct bk_err *err)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_(bk_boot_freep) struct bk_boot *boot = NULL;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *booted_rec = NULL;
	_cleanup_close_ int state_dfd = -EBADF, fd = -EBADF, bank_dfd = -EBADF;
	struct bk_stage_write_options wo = { 0 };
	_cleanup_(bk_fetch_freep) struct bk_fetch *fetch = NULL;
	_cleanup_close_ int reuse_dfd = -EBADF;
	struct url_source usrc = { NULL };
	struct bk_stage_source source = { url_read, &usrc };
	struct bk_stage_marker prev = { 0 };
	struct bk_stage_resume resume = { 0 };
	struct bk_stage_stats stats = { 0 };
	uint8_t mdigest[BK_SHA256_LEN];
	char hex[BK_SHA256_HEX_LEN + 1];
	const char *mbytes;
	struct checkpoint cp = { NULL, -EBADF };
	bool resuming = false;
	struct bk_stage_policy policy = { 0 };
	struct bk_stage_marker marker = { 0 };
	struct bk_booted booted = { 0 };
	struct bk_boot_data *d = &res->d;
	const struct bk_manifest *m;
	struct bk_disk_part part;
	struct bk_disk *disk;
	size_t mlen;
	unsigned cms_flags;
	uint64_t t0;
	int booted_r, r;

	r = bk_op_lock(ctx, err);
	if (r < 0)
		return r;
	r = bk_op_open_dir(ctx, BK_OP_STATE_DIR, true, &state_dfd, err);
	if (r < 0)
		return r;
	r = bk_maint_check(state_dfd, "stage", err);
	if (r < 0)
		return r;

	/* Verify: header, signature (chain, time), manifest. */
	if (o->url) {
		/*
		 * From a URL: the header and everything up to the first payload into a memfd
		 * (the payloads stay a hole in it), verified like a file; then the chunk table.
		 */
		if (o->check_only)
			return bk_err_set(err, -EINVAL,
					  "a check only stage takes a file, not a URL");
		r = bk_op_fetch_new(ctx, o->url, &fetch, err);
		if (r < 0)
			return r;
		r = bk_fetch_bundle_head(fetch, &fd, err);
		if (r < 0)
			return r;
		usrc.fetch = fetch;
	} else {
		fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return bk_err_set(err, -errno, "cannot open '%s': %m", o->path);
	}
	cms_flags = o->no_check_time || !ctx->config.check_time ? BK_CMS_NO_CHECK_TIME : 0;
	r = bk_bundle_open_fd(fd, &b, err);
	if (r >= 0)
		r = bk_bundle_verify_signature(b, o->keyring, cms_flags, err);
	if (r >= 0)
		r = bk_bundle_load_manifest(b, err);
	if (r >= 0 && o->url && !bk_bundle_is_chunked(b))
		r = bk_err_set(
			err, -ENOEXEC,
			"format version 1: staging from a URL needs format 2 (chunk lists "
			"verified before any byte is written); rebuild it with 'bankctl image build'");
	if (r >= 0 && o->url)
		r = bk_fetch_chunk_table(fetch, fd, bk_bundle_get_manifest(b), err);
	if (r >= 0 && o->url)
		r = bk_bundle_check_padding(b, bk_bundle_get_manifest(b), err);
	if (r < 0)
		return o->url ? r : bk_err_prefix(err, "'%s'", o->path);
	m = bk_bundle_get_manifest(b);
	mbytes = bk_bundle_get_manifest_bytes(b, &mlen);
	r = bk_sha256_buf(mbytes, mlen, mdigest);
	if (r < 0)
		return bk_err_set(err, r, "SHA-256 failed");

	/* Which bank, and may this image go there? */
	r = bk_op_boot_load(ctx, &boot, d, err);
	if (r < 0)
		return r;
	booted_r = bk_op_booted(ctx, &booted, NULL, err);
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
		r = bk_op_umount_part(ctx, bk_part_id_from_bank(booted.bank), err);
		if (r < 0)
			return r;
	}
	r = bk_stage_check_policy(m, &policy, err);
	if (r < 0)
		return r;
	if (o->check_only) {
		/* Every byte now, as image verify does: a refusal must come before any change. */
		r = bk_bundle_verify_payloads(b, 0, NULL, err);
		if (r < 0)
			return bk_err_prefix(err, "'%s'", o->path);
	}

	/* A rolled-back live patch's revision out of the target bank keeps it mounted. */
	if (!o->check_only && !o->keep_revisions) {
		r = bk_op_live_release_stale(ctx, res->bank, &res->revisions_released, err);
		if (r < 0)
			return r;
	}

	/* The bank must be ours alone, and big enough. */
	r = bk_op_get_disk(ctx, &disk, err);
	if (r < 0)
		return r;
	r = bk_disk_get_part(disk, bk_part_id_from_bank(res->bank), &part);
	if (r < 0)
		return bk_err_set(err, r, "the disk has no bank %s",
				  bk_bank_id_to_string(res->bank));
	/*
	 * Nobody may use its bytes, through any device (issue 16): a killed run's mounts are
	 * waited for, a live one refuses. A check only never writes: the bank may still be
	 * mounted read-only (revisions).
	 */
	if (!o->check_only) {
		r = bk_disk_part_wait_unused(disk, bk_part_id_from_bank(res->bank),
					     BK_DISK_TEARDOWN_TIMEOUT_MS, NULL, err);
		if (r < 0)
			return bk_err_prefix(err, "bank %s", bk_bank_id_to_string(res->bank));
	}
	r = bk_op_mount_part(ctx, bk_part_id_from_bank(res->bank), false, &bank_dfd, err);
	if (r < 0)
		return r;
	r = bk_stage_check_space(bank_dfd, res->bank, m, mlen,
				 bk_bundle_get_header(b)->signature_size, NULL, NULL, err);
	if (r < 0)
		return r;
	(void) close(TAKE_FD(bank_dfd));
	if (o->check_only)
		return bk_op_umount_part(ctx, bk_part_id_from_bank(res->bank), err);

	if (o->before_write) {
		r = o->before_write(o->userdata, res->bank, d, err);
		if (r < 0)
			return r;
	}

	/* From here on the bank changes: its record's copy goes, the marker, the boot state. */
	r = cache_remove(state_dfd, res->bank, err);
	if (r < 0)
		return r;
	/*
	 * Resume: an interrupted stage of this URL and these signed bytes into this bank, which
	 * the boot state still has empty, left verified chunks (docs/stage-url.md, "Resume").
	 */
	bk_sha256_to_hex(mdigest, hex);
	if (o->url && bk_stage_marker_read_at(state_dfd, &prev, NULL) == 0)
		resuming = bk_stage_resume_point(&prev, o->url, hex, res->bank,
						 d->state.bank[res->bank].state == BK_BANK_EMPTY,
						 m->n_payloads, &resume);
	marker.bank = res->bank;
	if (o->url) {
		(void) snprintf(marker.url, sizeof(marker.url), "%s", o->url);
		memcpy(marker.manifest_sha256, hex, sizeof(hex));
		marker.payload = resume.payload;
		marker.chunks = resume.chunks;
	}
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

	r = bk_op_mount_part(ctx, bk_part_id_from_bank(res->bank), true, &bank_dfd, err);
	if (r < 0) {
		undo_partial(ctx, res->bank, &bank_dfd, state_dfd, UNDO_TEMPS);
		return r;
	}
	wo.progress = ctx->obs.progress ? progress_cb : NULL;
	wo.userdata = ctx;
	wo.stats = &stats;
	if (o->url) {
		wo.source = &source;
		wo.resume = resuming ? &resume : NULL;
		cp.marker = &marker;
		cp.state_dfd = state_dfd;
		wo.checkpoint = on_checkpoint;
		wo.checkpoint_userdata = &cp;
		/*
		 * Delta: the booted bank, read-only in our namespace, lends the chunks it has
		 * (each one checked as it is read). Without it every chunk is fetched.
		 */
		if (booted_r == 0 && d->state.bank[booted.bank].state != BK_BANK_EMPTY &&
		    bk_op_mount_part(ctx, bk_part_id_from_bank(booted.bank), false, &reuse_dfd,
				     NULL) >= 0) {
			wo.reuse = true;
			wo.reuse_dfd = reuse_dfd;
		}
	}
	t0 = now_ns();
	r = bk_stage_write_bank(b, bank_dfd, &wo, &res->record, err);
	if (wo.reuse) {
		struct bk_err e = { 0 };

		(void) close(TAKE_FD(reuse_dfd));
		if (bk_op_umount_part(ctx, bk_part_id_from_bank(booted.bank), &e) < 0)
			bk_op_log(ctx, LOG_WARNING, "bank %s: %s",
				  bk_bank_id_to_string(booted.bank), e.msg);
	}
	res->bytes_fetched = stats.fetched;
	res->bytes_reused = stats.reused;
	res->bytes_resumed = stats.resumed;
	if (r < 0) {
		enum undo how = !fetch				       ? UNDO_TEMPS :
				bk_fetch_last_failure_transient(fetch) ? UNDO_KEEP :
									 UNDO_CLEAR;

		(void) bk_err_prefix(err, "bank %s", bk_bank_id_to_string(res->bank));
		undo_partial(ctx, res->bank, &bank_dfd, state_dfd, how);
		if (how == UNDO_KEEP) {
			/*
			 * Nothing was interrupted: this run reports the kept chunks in its own
			 * error, and the marker's pid 0 tells the next run's recovery that it
			 * was reported (it would say "recovered: an interrupted stage").
			 */
			marker.pid = 0;
			if (bk_stage_marker_write_at(state_dfd, &marker, NULL) >= 0 && err)
				(void) snprintf(err->msg + strnlen(err->msg, sizeof(err->msg)),
						sizeof(err->msg) -
							strnlen(err->msg, sizeof(err->msg)),
						"; the verified chunks stay in bank %s: staging "
						"the same URL again resumes",
						bk_bank_id_to_string(res->bank));
		}
		return r;
	}
	res->seconds = (double) (now_ns() - t0) / 1e9;
	for (size_t i = 0; i < m->n_payloads; i++)
		res->bytes += m->payloads[i].size;
	/*
	 * The booted bank's /etc layer into the new bank's (docs/initramfs.md): a failure leaves
	 * the new bank without a layer made for its image, which its first boot then carries.
	 */
	if (booted_r == 0) {
		r = bk_op_etc_carry(ctx, booted.bank, res->bank, bk_bundle_get_fd(b), m,
				    res->record, &res->etc, err);
		if (r < 0) {
			bk_op_log(ctx, LOG_WARNING,
				  "cannot carry bank %s's /etc layer forward: %s; bank %s's first "
				  "boot carries it",
				  bk_bank_id_to_string(booted.bank), err->msg,
				  bk_bank_id_to_string(res->bank));
			bk_err_clear(err);
		}
	} else {
		(void) snprintf(res->etc.skipped, sizeof(res->etc.skipped), "no bank is booted");
	}
	(void) close(TAKE_FD(bank_dfd));
	r = bk_op_umount_part(ctx, bk_part_id_from_bank(res->bank), err);
	if (r < 0)
		return r;

	/* Complete and durable: staged, then the marker goes. */
	r = bk_select_stage_done(&d->state, res->bank, m->security_epoch, &d->state, err);
	if (r >= 0)
		r = bk_boot_save(boot, d, err);
	if (r >= 0 && cache_write(state_dfd, res->bank, res->record, err) < 0) {
		bk_op_log(ctx, LOG_WARNING, "%s, ignoring", err->msg);
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

/* The carry-forward as events of the stage: a summary, and a warning for each conflict. */
static void record_etc_carry(struct bk_op_ctx *ctx, const struct bk_op_stage_result *res)
{
	const struct bk_op_etc_carry *c = &res->etc;
	struct bk_op_task t;
	uint64_t now = bk_op_realtime_ns();

	bk_op_task_init(&t, ctx, "stage", true);
	if (!c->done)
		bk_op_task_step(&t, "etc carry-forward", -EIO, NULL, now, 0,
				"bank %s's /etc layer not carried into bank %s: %s; its first boot "
				"carries it",
				bk_bank_id_to_string(c->from), bk_bank_id_to_string(res->bank),
				c->skipped);
	else
		bk_op_task_step(&t, "etc carry-forward", 0, NULL, now, 0,
				"bank %s's /etc layer carried into bank %s: %zu %s, %zu %s",
				bk_bank_id_to_string(c->from), bk_bank_id_to_string(res->bank),
				c->n_entries, c->n_entries == 1 ? "entry" : "entries",
				c->n_conflicts, c->n_conflicts == 1 ? "conflict" : "conflicts");
	for (size_t i = 0; i < c->n_conflicts; i++)
		bk_op_task_step(&t, "etc carry-forward", -EEXIST, "warning", now, 0,
				"%s: changed locally and by the new image; the local version is "
				"kept",
				c->conflicts[i]);
	bk_op_task_release(&t);
}

int bk_op_stage(struct bk_op_ctx *ctx, const struct bk_op_stage_opts *o,
		struct bk_op_stage_result *res, struct bk_err *err)
{
	int r;

	*res = (struct bk_op_stage_result){ .bank = _BK_BANK_INVALID };
	bk_boot_data_init(&res->d);
	r = stage(ctx, o, res, err);
	/*
	 * An event once the lock is ours (a refusal for "busy" has no lock: no event); a live
	 * patch (before_write) records the stage as a step of its own task.
	 */
	if (ctx->lock_fd >= 0 && !o->before_write && !o->check_only) {
		if (r < 0)
			bk_op_event(ctx, "stage", r, err, "%s", "");
		else
			bk_op_event(ctx, "stage", 0, NULL, "%s %s staged into bank %s (%s)%s%s",
				    res->record->name, res->record->version,
				    bk_bank_id_to_string(res->bank), res->why,
				    res->activated ? ", activated" : "",
				    res->revisions_released == 0 ?
					    "" :
				    res->revisions_released == 1 ?
					    "; a stale revision out of it released" :
					    "; its stale revisions released");
	}
	if (r >= 0 && ctx->lock_fd >= 0 && res->etc.tried)
		record_etc_carry(ctx, res);
	return r;
}

void bk_op_stage_result_release(struct bk_op_stage_result *res)
{
	res->record = bk_bank_record_free(res->record);
	bk_op_etc_carry_release(&res->etc);
}

struct json_object *bk_op_stage_result_to_json(const struct bk_op_stage_result *res)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *image = NULL;

	if (!o || bk_bank_record_to_json(res->record, &image) < 0)
		return NULL;
	if (bk_json_add_string(o, "bank", bk_bank_id_to_string(res->bank)) < 0 ||
	    bk_json_add_string(o, "why", res->why) < 0 || bk_json_add(o, "image", image) < 0 ||
	    bk_json_add_u64(o, "bytes", res->bytes) < 0 ||
	    bk_json_add_u64(o, "bytes_fetched", res->bytes_fetched) < 0 ||
	    bk_json_add_u64(o, "bytes_reused", res->bytes_reused) < 0 ||
	    bk_json_add_u64(o, "bytes_resumed", res->bytes_resumed) < 0 ||
	    bk_json_add(o, "seconds", json_object_new_double(res->seconds)) < 0 ||
	    bk_json_add_bool(o, "activated", res->activated) < 0 ||
	    bk_json_add_u64(o, "revisions_released", (uint64_t) res->revisions_released) < 0 ||
	    bk_json_add(o, "boot", bk_op_bootstate_json(&res->d)) < 0 ||
	    bk_json_add(o, "etc", bk_op_etc_carry_to_json(&res->etc)) < 0)
		return NULL;
	return TAKE_PTR(o);
}

int bk_op_stage_target(struct bk_op_ctx *ctx, enum bk_bank_id *ret, const char **ret_why,
		       struct bk_err *err)
{
	_cleanup_(bk_boot_freep) struct bk_boot *boot = NULL;
	struct bk_booted booted = { 0 };
	struct bk_boot_data d;
	int booted_r, r;

	r = bk_op_boot_load(ctx, &boot, &d, err);
	if (r < 0)
		return r;
	booted_r = bk_op_booted(ctx, &booted, NULL, err);
	if (booted_r < 0)
		return booted_r;
	*ret = choose_target(&d, booted_r, &booted, ret_why);
	return 0;
}
