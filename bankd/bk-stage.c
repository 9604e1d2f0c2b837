/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stage: policy, space, the staging marker and the write of a bank's content. The order of
 * the writes is the crash argument of docs/crash-safety.md ("Stage"): the record goes first
 * when a bank is cleared and comes last when it is written, payloads are written under
 * ".partial." names and renamed only when complete and fsync'ed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-stage.h"
#include "bk-version.h"

#define MARKER_FORMAT		 1
#define DEFAULT_INTERVAL_MS	 100
#define MAPPING_OVERHEAD_CHUNK	 (UINT64_C(32) << 20)
#define RECORD_BYTES_PER_PAYLOAD 256
#define RECORD_BYTES_FIXED	 2048

/* ---- the staging marker ------------------------------------------------------------------ */

int bk_stage_marker_write_at(int state_dfd, const struct bk_stage_marker *m, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();

	if (!o || bk_json_add_u64(o, "format", MARKER_FORMAT) < 0 ||
	    bk_json_add_string(o, "bank", bk_bank_id_to_string(m->bank)) < 0 ||
	    bk_json_add_string(o, "image", m->image) < 0 ||
	    bk_json_add_string(o, "version", m->version) < 0 ||
	    bk_json_add_u64(o, "pid", m->pid) < 0 || bk_json_add_u64(o, "started", m->started) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	return bk_json_write_atomic_at(state_dfd, BK_STAGE_MARKER_FILE, o, 0644, err);
}

static int copy_field(struct json_object *o, const char *key, char *buf, size_t len,
		      struct bk_err *err)
{
	const char *s;

	if (bk_json_get_string(o, key, true, &s, err) < 0)
		return bk_err_recode(err, -ENOEXEC);
	if (strlen(s) >= len)
		return bk_err_set(err, -ENOEXEC, "field '%s' is too long", key);
	memcpy(buf, s, strlen(s) + 1);
	return 0;
}

static int parse_marker(struct json_object *o, struct bk_stage_marker *m, struct bk_err *err)
{
	const char *bank;
	uint64_t format;

	if (bk_json_get_u64(o, "format", true, UINT64_MAX, &format, err) < 0)
		return bk_err_recode(err, -ENOEXEC);
	if (format != MARKER_FORMAT)
		return bk_err_set(err, -ENOEXEC, "unknown format %llu",
				  (unsigned long long) format);
	if (bk_json_get_string(o, "bank", true, &bank, err) < 0)
		return bk_err_recode(err, -ENOEXEC);
	m->bank = bk_bank_id_from_string(bank);
	if (m->bank < 0 || strlen(bank) != 1)
		return bk_err_set(err, -ENOEXEC, "field 'bank': '%s' is not A or B", bank);
	if (copy_field(o, "image", m->image, sizeof(m->image), err) < 0 ||
	    copy_field(o, "version", m->version, sizeof(m->version), err) < 0)
		return -ENOEXEC;
	if (bk_json_get_u64(o, "pid", true, UINT64_MAX, &m->pid, err) < 0 ||
	    bk_json_get_u64(o, "started", true, UINT64_MAX, &m->started, err) < 0)
		return bk_err_recode(err, -ENOEXEC);
	return 0;
}

int bk_stage_marker_read_at(int state_dfd, struct bk_stage_marker *ret, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct bk_stage_marker m = { 0 };
	int r;

	r = bk_json_read_at(state_dfd, BK_STAGE_MARKER_FILE, BK_STAGE_MARKER_MAX_SIZE, &o, err);
	if (r == -ENOENT)
		return r;
	if (r >= 0)
		r = parse_marker(o, &m, err);
	if (r < 0) {
		if (r != -ENOMEM)
			r = bk_err_recode(err, -ENOEXEC);
		return bk_err_prefix(err, "corrupt staging marker '%s'", BK_STAGE_MARKER_FILE);
	}
	*ret = m;
	return 0;
}

int bk_stage_marker_remove_at(int state_dfd, struct bk_err *err)
{
	int r;

	if (unlinkat(state_dfd, BK_STAGE_MARKER_FILE, 0) < 0) {
		if (errno == ENOENT)
			return 0;
		return bk_err_set(err, -errno, "cannot remove '%s': %m", BK_STAGE_MARKER_FILE);
	}
	r = bk_fsync_dir(state_dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the directory of '%s': %m",
				  BK_STAGE_MARKER_FILE);
	return 0;
}

/* ---- policy ------------------------------------------------------------------------------ */

int bk_stage_check_policy(const struct bk_manifest *m, const struct bk_stage_policy *p,
			  struct bk_err *err)
{
	if (!p->ignore_compatible) {
		if (!p->compatible)
			return bk_err_set(err, -EMEDIUMTYPE,
					  "image '%s %s' is for '%s', and this system's "
					  "[system] compatible is not set: set it in system.conf, "
					  "or use --ignore-compatible",
					  m->name, m->version, m->compatible);
		if (strcmp(m->compatible, p->compatible) != 0)
			return bk_err_set(err, -EMEDIUMTYPE,
					  "image '%s %s' is for '%s', this system is '%s' (use "
					  "--ignore-compatible to stage it anyway)",
					  m->name, m->version, m->compatible, p->compatible);
	}
	if (m->security_epoch < p->floor)
		return bk_err_set(err, -EKEYREVOKED,
				  "image '%s %s' has security epoch %llu, below the security "
				  "floor %llu: it would never boot",
				  m->name, m->version, (unsigned long long) m->security_epoch,
				  (unsigned long long) p->floor);
	if (p->booted_version && !p->allow_downgrade &&
	    bk_version_compare(m->version, p->booted_version) < 0)
		return bk_err_set(err, -EKEYREVOKED,
				  "image '%s %s' is older than %s in the booted bank %s (use "
				  "--allow-downgrade to stage it anyway)",
				  m->name, m->version, p->booted_version,
				  bk_bank_id_to_string(p->booted_bank) ?
					  bk_bank_id_to_string(p->booted_bank) :
					  "?");
	return bk_bank_check_manifest(m, err);
}

/* ---- space ------------------------------------------------------------------------------- */

static uint64_t blocks_of(uint64_t size, uint64_t bs)
{
	/* The file's data blocks, one for its mapping, one more per MAPPING_OVERHEAD_CHUNK. */
	return (size + bs - 1) / bs + 1 + size / MAPPING_OVERHEAD_CHUNK;
}

uint64_t bk_stage_space_needed(const struct bk_manifest *m, size_t manifest_len, size_t sig_len,
			       uint64_t block_size)
{
	uint64_t bs = block_size ? block_size : 4096, n = 0;

	for (size_t i = 0; i < m->n_payloads; i++)
		n += blocks_of(m->payloads[i].size, bs);
	n += blocks_of(manifest_len, bs);
	n += blocks_of(sig_len, bs);
	n += blocks_of(RECORD_BYTES_FIXED + RECORD_BYTES_PER_PAYLOAD * (uint64_t) m->n_payloads,
		       bs);
	return n * bs;
}

int bk_stage_check_space(int bank_dfd, enum bk_bank_id bank, const struct bk_manifest *m,
			 size_t manifest_len, size_t sig_len, uint64_t *ret_needed,
			 uint64_t *ret_has, struct bk_err *err)
{
	struct statvfs sv;
	uint64_t needed, has, usage;
	int r;

	if (fstatvfs(bank_dfd, &sv) < 0)
		return bk_err_set(err, -errno, "cannot measure bank %s: %m",
				  bk_bank_id_to_string(bank));
	r = bk_bank_usage_at(bank_dfd, &usage, err);
	if (r < 0)
		return bk_err_prefix(err, "bank %s", bk_bank_id_to_string(bank));
	needed = bk_stage_space_needed(m, manifest_len, sig_len, sv.f_bsize);
	has = (uint64_t) sv.f_bavail * sv.f_frsize + usage;
	if (ret_needed)
		*ret_needed = needed;
	if (ret_has)
		*ret_has = has;
	BK_DBG(BANK, "bank %s: needs %llu bytes, has %llu", bk_bank_id_to_string(bank),
	       (unsigned long long) needed, (unsigned long long) has);
	if (needed > has)
		return bk_err_set(err, -ENOSPC, "bank %s too small: needs %.1f MiB, has %.1f MiB",
				  bk_bank_id_to_string(bank), (double) needed / (1 << 20),
				  (double) has / (1 << 20));
	return 0;
}

/* ---- progress ---------------------------------------------------------------------------- */

/*
 * The helper thread that reports progress while bk_bundle_copy_payload() writes: it reads
 * the size of the file being written (pwrite grows it as it goes). The mutex serialises every
 * callback and guards stop.
 */
struct watch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	bool running;
	pthread_t thread;
	int fd;
	struct bk_stage_progress p;
	const struct bk_stage_write_options *o;
};

static void report(struct watch *w)
{
	w->o->progress(&w->p, w->o->userdata);
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	unsigned ms = w->o->interval_ms ? w->o->interval_ms : DEFAULT_INTERVAL_MS;
	uint64_t base = w->p.done;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct timespec ts;
		struct stat st;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += ms / 1000;
		ts.tv_nsec += (long) (ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &ts) == 0)
			;
		if (w->stop)
			break;
		if (fstat(w->fd, &st) < 0)
			continue;
		w->p.payload_done = (uint64_t) st.st_size < w->p.payload_size ?
					    (uint64_t) st.st_size :
					    w->p.payload_size;
		w->p.done = base + w->p.payload_done;
		report(w);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void watch_start(struct watch *w)
{
	pthread_condattr_t ca;

	if (!w->o->progress)
		return;
	w->stop = false;
	pthread_mutex_lock(&w->lock);
	report(w);
	pthread_mutex_unlock(&w->lock);
	if (pthread_condattr_init(&ca) != 0)
		return;
	(void) pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&w->cond, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		return;
	}
	pthread_condattr_destroy(&ca);
	/* No thread, no progress in between: not a reason to fail the stage. */
	w->running = pthread_create(&w->thread, NULL, watch_main, w) == 0;
	if (!w->running)
		pthread_cond_destroy(&w->cond);
}

static void watch_stop(struct watch *w)
{
	if (!w->running)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cond);
	w->running = false;
}

/* ---- writing ----------------------------------------------------------------------------- */

static int write_payload(struct bk_bundle *b, const struct bk_payload *p, int bank_dfd,
			 struct watch *w, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	char partial[NAME_MAX + 1];
	int r;

	(void) snprintf(partial, sizeof(partial), "%s%s", BK_PARTIAL_PREFIX, p->name);
	fd = openat(bank_dfd, partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot create '%s': %m", partial);

	w->fd = fd;
	w->p.payload = p->name;
	w->p.payload_done = 0;
	w->p.payload_size = p->size;
	w->p.end = false;
	watch_start(w);
	r = bk_bundle_copy_payload(b, p, fd, 0, err);
	watch_stop(w);

	if (r >= 0 && fsync(fd) < 0)
		r = bk_err_set(err, -errno, "cannot sync '%s': %m", partial);
	if (r >= 0 && close(TAKE_FD(fd)) < 0 && errno != EINTR)
		r = bk_err_set(err, -errno, "cannot close '%s': %m", partial);
	if (r >= 0 && renameat(bank_dfd, partial, bank_dfd, p->name) < 0)
		r = bk_err_set(err, -errno, "cannot rename '%s' to '%s': %m", partial, p->name);
	if (r < 0) {
		/* Whatever was written is not the payload: discard it. */
		(void) unlinkat(bank_dfd, partial, 0);
		return r;
	}

	if (w->o->progress) {
		pthread_mutex_lock(&w->lock);
		w->p.payload_done = p->size;
		w->p.done += p->size;
		w->p.end = true;
		report(w);
		pthread_mutex_unlock(&w->lock);
	} else {
		w->p.done += p->size;
	}
	return 0;
}

/*
 * The signature to keep beside the manifest: read from the bundle's own fd (the bytes the
 * header names) and verified again, so manifest.sig is one that verifies the manifest even if
 * the file changed since it was opened.
 */
static int read_signature(struct bk_bundle *b, const struct bk_stage_write_options *o,
			  uint8_t **ret, size_t *ret_len, struct bk_err *err)
{
	const struct bk_bundle_header *h = bk_bundle_get_header(b);
	_cleanup_free_ uint8_t *der = NULL;
	const char *manifest;
	size_t mlen;
	ssize_t n;
	int r;

	if (!o->keyring)
		return bk_err_set(err, -EINVAL, "no keyring to check the signature with");
	if (h->signature_size == 0 || h->signature_size > BK_CMS_MAX_DER)
		return bk_err_set(err, -ENOEXEC, "signature size %llu out of range",
				  (unsigned long long) h->signature_size);
	der = malloc(h->signature_size);
	if (!der)
		return bk_err_set(err, -ENOMEM, "out of memory");
	n = bk_pread_full(bk_bundle_get_fd(b), der, h->signature_size, h->signature_offset);
	if (n < 0)
		return bk_err_set(err, (int) n, "cannot read the signature: %m");
	if ((uint64_t) n != h->signature_size)
		return bk_err_set(err, -ENOEXEC, "signature: truncated");
	manifest = bk_bundle_get_manifest_bytes(b, &mlen);
	r = bk_cms_verify(manifest, mlen, der, h->signature_size, o->keyring, o->cms_flags, NULL,
			  err);
	if (r < 0)
		return bk_err_prefix(err, "signature");
	*ret_len = h->signature_size;
	*ret = TAKE_PTR(der);
	return 0;
}

int bk_stage_write_bank(struct bk_bundle *b, int bank_dfd, const struct bk_stage_write_options *o,
			struct bk_bank_record **ret_record, struct bk_err *err)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	const struct bk_manifest *m = bk_bundle_get_manifest(b);
	_cleanup_free_ uint8_t *sig = NULL;
	struct watch w = { .lock = PTHREAD_MUTEX_INITIALIZER, .o = o };
	const char *manifest;
	size_t mlen, slen = 0;
	int r;

	if (!m)
		return bk_err_set(err, -EINVAL, "manifest not loaded");
	if (!bk_bundle_is_signature_verified(b))
		return bk_err_set(err, -EPERM,
				  "refusing to stage a bundle whose signature was not verified");
	manifest = bk_bundle_get_manifest_bytes(b, &mlen);
	r = bk_bank_record_new(m, manifest, mlen, bk_bundle_get_signer(b),
			       o->staged_time ? o->staged_time : (uint64_t) time(NULL), &rec, err);
	if (r < 0)
		return r;
	/* Read and check the signature before anything is removed. */
	r = read_signature(b, o, &sig, &slen, err);
	if (r < 0)
		return r;

	r = bk_bank_clear_at(bank_dfd, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot clear the bank");

	w.p.n_payloads = m->n_payloads;
	for (size_t i = 0; i < m->n_payloads; i++)
		w.p.total += m->payloads[i].size;
	for (size_t i = 0; i < m->n_payloads; i++) {
		w.p.index = i;
		r = write_payload(b, &m->payloads[i], bank_dfd, &w, err);
		if (r < 0)
			return r;
	}
	/* Every payload's name is durable before the files that make the bank complete. */
	r = bk_fsync_dir(bank_dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the bank directory: %m");

	r = bk_write_atomic_at(bank_dfd, BK_BANK_MANIFEST_FILE, manifest, mlen, 0644, 0, err);
	if (r < 0)
		return r;
	r = bk_write_atomic_at(bank_dfd, BK_BANK_SIGNATURE_FILE, sig, slen, 0644, 0, err);
	if (r < 0)
		return r;
	r = bk_bank_record_write_at(bank_dfd, rec, err);
	if (r < 0)
		return r;
	if (syncfs(bank_dfd) < 0)
		return bk_err_set(err, -errno, "cannot sync the bank's filesystem: %m");
	BK_DBG(BANK, "wrote %s %s: %zu payloads, %llu bytes", m->name, m->version, m->n_payloads,
	       (unsigned long long) w.p.total);
	if (ret_record)
		*ret_record = TAKE_PTR(rec);
	return 0;
}
