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
#include <stdarg.h>
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
	if (m->url[0] && (bk_json_add_string(o, "url", m->url) < 0 ||
			  bk_json_add_string(o, "manifest_sha256", m->manifest_sha256) < 0 ||
			  bk_json_add_u64(o, "payload", m->payload) < 0 ||
			  bk_json_add_u64(o, "chunks", m->chunks) < 0))
		return bk_err_set(err, -ENOMEM, "out of memory");
	return bk_json_write_atomic_at(state_dfd, BK_STAGE_MARKER_FILE, o, 0644, 0, err);
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
	if (!json_object_object_get_ex(o, "url", NULL))
		return 0;
	if (copy_field(o, "url", m->url, sizeof(m->url), err) < 0 ||
	    copy_field(o, "manifest_sha256", m->manifest_sha256, sizeof(m->manifest_sha256), err) <
		    0)
		return -ENOEXEC;
	if (bk_json_get_u64(o, "payload", true, UINT64_MAX, &m->payload, err) < 0 ||
	    bk_json_get_u64(o, "chunks", true, UINT64_MAX, &m->chunks, err) < 0)
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

bool bk_stage_resume_point(const struct bk_stage_marker *prev, const char *url,
			   const char *manifest_hex, enum bk_bank_id bank, bool bank_empty,
			   size_t n_payloads, struct bk_stage_resume *ret)
{
	if (!prev->url[0] || !url || strcmp(prev->url, url) != 0 ||
	    strcmp(prev->manifest_sha256, manifest_hex) != 0 || prev->bank != bank || !bank_empty ||
	    prev->payload > n_payloads)
		return false;
	ret->payload = (size_t) prev->payload;
	ret->chunks = prev->chunks;
	return true;
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
	if (m->format >= 2) {
		/* manifest.chunks: the chunk lists, 32 bytes per chunk. */
		uint64_t lists = 0, len;

		for (size_t i = 0; i < m->n_payloads; i++)
			if (bk_chunks_list_size(m->payloads[i].size, &len) == 0)
				lists += len;
		n += blocks_of(lists, bs);
	}
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

/* ---- copying a payload ------------------------------------------------------------------ */

/*
 * One payload, read once from the bundle and hashed while it is written, on three threads so
 * hashing (the bottleneck: SHA-256 runs at ~1.7 GiB/s with SHA-NI) overlaps the reads and the
 * writes on another core: a reader fills a ring of private buffers with pread, the calling
 * thread hashes each chunk, a writer pwrites it once it is hashed; a slot is reused only once
 * it is both hashed and written, so the bytes written are the bytes hashed (never a second
 * read of the bundle, never a mapping of a file someone else may change). Format 2: the
 * calling thread checks each chunk against the payload's chunk list and the writer never
 * writes a chunk before it verified (issue 15: no unverified byte reaches the bank); format 1
 * (one digest per payload) can only be checked at the end, and the caller discards the file. The
 * output is written with O_DIRECT where the filesystem allows it (write_payload()): no second copy
 * in the page cache, nothing to write back at fsync or to evict at unmount; otherwise the writer
 * starts the writeback of what it wrote every COPY_FLUSH_CHUNKS chunks (sync_file_range), so the
 * final fsync finds little left to do. On any failure every thread stops at once; the caller
 * discards the output. Measured on a 2-core VM: a 1 GiB payload copies in about the time of SHA-256
 * alone.
 */
#define COPY_CHUNK	  BK_CHUNK_SIZE /* one format-2 chunk per buffer */
#define COPY_SLOTS	  8
#define COPY_FLUSH_CHUNKS 16
#define COPY_DIRECT_ALIGN 4096 /* buffers, offsets and lengths of direct writes */

static uint64_t now_ms(void);

/*
 * Delta staging (docs/stage-url.md, "Delta"): what the booted bank can lend. With its chunk
 * lists (manifest.chunks, staged by this version) a chunk is looked up by its digest among
 * every chunk of every payload of the booted bank, and only a chunk found there is read from
 * it; without them (a bank staged by an older bootbank, or from a format-1 bundle) the chunk
 * at the same place of the file of the same name is read and checked, found or not.
 */
struct reuse {
	int dfd;		       /* the booted bank's root, read-only */
	struct bk_bank_chunks *chunks; /* its lists; NULL: the same place only */
	struct bk_chunk_index *index;  /* digest -> (payload, chunk) of chunks */
};

/* Chunks ahead of the one read whose readahead is asked for in the booted bank's file. */
#define REUSE_READAHEAD_CHUNKS 16

/* Where the chunks of one payload come from. */
struct chunk_src {
	int in_fd; /* the bundle, when source is NULL */
	uint64_t in_offset;
	const struct bk_payload *p;
	const struct bk_stage_source *source;
	const struct bk_chunks *list; /* format 2 */
	const struct reuse *reuse;    /* delta staging, or NULL */
	/*
	 * An open file of the booted bank, or -1: with reuse->index, its payload reuse_payload
	 * (reuse_failed: it could not be opened); without, the file of the same name.
	 */
	int reuse_fd;
	size_t reuse_payload;
	bool reuse_failed;
	uint64_t advised; /* with reuse->index: chunks before it had their readahead asked */
	uint64_t fetched, reused;
};

struct copy {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct chunk_src *src;
	int out_fd;
	uint64_t size, n_chunks, start;
	uint8_t *buf[COPY_SLOTS];
	size_t len[COPY_SLOTS];
	bool verified[COPY_SLOTS];	      /* checked against the list by the reader */
	uint64_t n_read, n_hashed, n_written; /* chunks done by each stage */
	int r;				      /* the first error; every thread stops */
	struct bk_err err;
	const struct bk_stage_write_options *o;
	size_t index;		/* of the payload, for checkpoints */
	uint64_t checkpointed;	/* chunks at the last checkpoint */
	uint64_t checkpoint_ms; /* its time, 0: none yet */
};

static size_t chunk_len(const struct copy *c, uint64_t i)
{
	uint64_t left = c->size - i * COPY_CHUNK;

	return (size_t) (left < COPY_CHUNK ? left : COPY_CHUNK);
}

/* Record the first error (the caller holds the lock) and wake everyone. */
static void copy_fail(struct copy *c, int r, const char *fmt, ...) _printf_(3, 4);
static void copy_fail(struct copy *c, int r, const char *fmt, ...)
{
	va_list ap;

	if (c->r == 0) {
		c->r = r;
		c->err.code = r;
		errno = -r;
		va_start(ap, fmt);
		(void) vsnprintf(c->err.msg, sizeof(c->err.msg), fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&c->cond);
}

/* Make s->reuse_fd the booted bank's payload k (with reuse->index). False when it cannot be. */
static bool reuse_open(struct chunk_src *s, size_t k)
{
	struct stat st;
	int fd;

	if (s->reuse_payload == k && (s->reuse_fd >= 0 || s->reuse_failed))
		return s->reuse_fd >= 0;
	if (s->reuse_fd >= 0)
		(void) close(s->reuse_fd);
	s->reuse_fd = -EBADF;
	s->reuse_payload = k;
	s->reuse_failed = true;
	s->advised = 0;
	fd = openat(s->reuse->dfd, s->reuse->chunks->manifest->payloads[k].name,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		(void) close(fd);
		return false;
	}
	s->reuse_fd = fd;
	s->reuse_failed = false;
	return true;
}

/*
 * Where chunk i of the payload is in the booted bank, by its digest: *ret_payload,
 * *ret_offset (in that payload's file). False when the booted bank does not have it, or has it
 * with another length (a lookup never trusted: what is read is checked all the same).
 */
static bool reuse_find(const struct chunk_src *s, uint64_t i, size_t *ret_payload,
		       uint64_t *ret_offset)
{
	uint64_t j, off, want_off;
	size_t len, want;

	if (!bk_chunk_index_find(s->reuse->index, s->list->digests[i], ret_payload, &j) ||
	    bk_chunks_range(s->reuse->chunks->lists[*ret_payload], j, &off, &len) < 0 ||
	    bk_chunks_range(s->list, i, &want_off, &want) < 0 || len != want)
		return false;
	*ret_offset = off;
	return true;
}

/*
 * Chunk i from the booted bank, decided by digest before anything is read: a chunk the booted
 * bank's lists do not have is not read at all (it is fetched); one they have is read from
 * where they say and checked against the new payload's list, so a list that lies (or a booted
 * file damaged since) costs a read and the chunk is fetched instead. The readahead of the
 * next chunks the booted bank lends (from the same file) is asked for as it goes.
 */
static bool reuse_indexed(struct chunk_src *s, uint64_t i, uint8_t *buf, size_t len)
{
	size_t k, k2;
	uint64_t off, off2;

	if (!reuse_find(s, i, &k, &off) || !reuse_open(s, k))
		return false;
	if (s->advised < i + 1)
		s->advised = i + 1;
	for (; s->advised < s->list->n_chunks && s->advised <= i + REUSE_READAHEAD_CHUNKS;
	     s->advised++)
		if (reuse_find(s, s->advised, &k2, &off2) && k2 == k)
			(void) posix_fadvise(s->reuse_fd, (off_t) off2, (off_t) COPY_CHUNK,
					     POSIX_FADV_WILLNEED);
	return bk_pread_full(s->reuse_fd, buf, len, off) == (ssize_t) len &&
	       bk_chunks_check(s->list, i, buf, len, NULL) == 0;
}

/*
 * Chunk i (len bytes) into buf: from the booted bank when it holds it (checked as read:
 * *ret_verified), else from the source or the bundle. -ENOEXEC truncated, -EIO, the source's.
 */
static int read_chunk(struct chunk_src *s, uint64_t i, uint8_t *buf, size_t len, bool *ret_verified,
		      struct bk_err *err)
{
	ssize_t n;
	int r;

	*ret_verified = false;
	if (s->list && s->reuse && s->reuse->index) {
		if (reuse_indexed(s, i, buf, len)) {
			*ret_verified = true;
			s->reused += len;
			return 0;
		}
	} else if (s->reuse_fd >= 0 && s->list) {
		n = bk_pread_full(s->reuse_fd, buf, len, i * COPY_CHUNK);
		if (n == (ssize_t) len && bk_chunks_check(s->list, i, buf, len, NULL) == 0) {
			*ret_verified = true;
			s->reused += len;
			return 0;
		}
	}
	if (s->source) {
		r = s->source->read(s->source->userdata, s->p, i * COPY_CHUNK, buf, len, err);
		if (r < 0)
			return r;
		s->fetched += len;
		return 0;
	}
	n = bk_pread_full(s->in_fd, buf, len, s->in_offset + i * COPY_CHUNK);
	/*
	 * The bundle's own filesystem may report a checksum error (EBADMSG) or corruption
	 * (EUCLEAN): an I/O error reading the bundle, not a bad signature or payload.
	 */
	if (n == -EBADMSG || n == -EUCLEAN)
		n = -EIO;
	if (n < 0)
		return bk_err_set(err, (int) n, "read error at offset %llu: %m",
				  (unsigned long long) (s->in_offset + i * COPY_CHUNK));
	if ((size_t) n < len)
		return bk_err_set(
			err, -ENOEXEC,
			"truncated: the bundle ends at offset %llu, inside the payload",
			(unsigned long long) (s->in_offset + i * COPY_CHUNK + (uint64_t) n));
	s->fetched += len;
	return 0;
}

static void *copy_reader(void *arg)
{
	struct copy *c = arg;

	for (uint64_t i = c->start; i < c->n_chunks; i++) {
		unsigned slot = (unsigned) (i % COPY_SLOTS);
		size_t len = chunk_len(c, i);
		struct bk_err e = { 0 };
		bool verified;
		int r;

		pthread_mutex_lock(&c->lock);
		while (c->r == 0 &&
		       (i - c->n_hashed >= COPY_SLOTS || i - c->n_written >= COPY_SLOTS))
			pthread_cond_wait(&c->cond, &c->lock);
		pthread_mutex_unlock(&c->lock);
		if (c->r != 0)
			break;

		r = read_chunk(c->src, i, c->buf[slot], len, &verified, &e);
		pthread_mutex_lock(&c->lock);
		if (r < 0)
			copy_fail(c, r, "%s", e.msg);
		else {
			c->len[slot] = len;
			c->verified[slot] = verified;
			c->n_read = i + 1;
			pthread_cond_broadcast(&c->cond);
		}
		pthread_mutex_unlock(&c->lock);
		if (c->r != 0)
			break;
	}
	return NULL;
}

static int pwrite_full(int fd, const uint8_t *p, size_t len, uint64_t offset)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t) offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t) n;
		offset += (uint64_t) n;
	}
	return 0;
}

/* Turn off O_DIRECT on fd; true when it was on. */
static bool buffered(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || !(flags & O_DIRECT))
		return false;
	return fcntl(fd, F_SETFL, flags & ~O_DIRECT) == 0;
}

static void *copy_writer(void *arg)
{
	struct copy *c = arg;
	uint64_t flushed = c->start;

	for (uint64_t i = c->start; i < c->n_chunks; i++) {
		unsigned slot = (unsigned) (i % COPY_SLOTS);
		struct bk_err e = { 0 };
		int r;

		/* Only what was hashed (format 2: verified) is ever written. */
		pthread_mutex_lock(&c->lock);
		while (c->r == 0 && c->n_hashed <= i)
			pthread_cond_wait(&c->cond, &c->lock);
		pthread_mutex_unlock(&c->lock);
		if (c->r != 0)
			break;

		/* Direct I/O wants whole blocks: the last, short chunk goes through the cache. */
		if (c->len[slot] % COPY_DIRECT_ALIGN != 0)
			buffered(c->out_fd);
		r = pwrite_full(c->out_fd, c->buf[slot], c->len[slot], i * COPY_CHUNK);
		if (r == -EINVAL && buffered(c->out_fd))
			r = pwrite_full(c->out_fd, c->buf[slot], c->len[slot], i * COPY_CHUNK);
		if (r >= 0 && i + 1 - flushed >= COPY_FLUSH_CHUNKS) {
			/* Start the writeback now; fsync later waits for it (errors surface there).
			 */
			(void) sync_file_range(c->out_fd, (off_t) (flushed * COPY_CHUNK),
					       (off_t) ((i + 1 - flushed) * COPY_CHUNK),
					       SYNC_FILE_RANGE_WRITE);
			flushed = i + 1;
		}
		/* A resumable stage: these chunks are durable, the marker may say so. */
		if (r >= 0 && c->o->checkpoint &&
		    i + 1 - c->checkpointed >= BK_STAGE_CHECKPOINT_CHUNKS && i + 1 < c->n_chunks &&
		    (c->checkpoint_ms == 0 ||
		     now_ms() - c->checkpoint_ms >= BK_STAGE_CHECKPOINT_MS)) {
			c->checkpointed = i + 1;
			c->checkpoint_ms = now_ms();
			if (fdatasync(c->out_fd) < 0)
				r = -errno;
			else if (c->o->checkpoint(c->o->checkpoint_userdata, c->index, i + 1, &e) <
				 0)
				r = e.code < 0 ? e.code : -EIO;
		}
		pthread_mutex_lock(&c->lock);
		if (r < 0 && e.msg[0]) {
			copy_fail(c, r, "%s", e.msg);
		} else if (r < 0) {
			bool first = c->r == 0;

			copy_fail(c, r, "write error at offset %llu: %m",
				  (unsigned long long) (i * COPY_CHUNK));
			if (first)
				c->r = bk_bank_fs_error(c->r, &c->err);
		} else {
			c->n_written = i + 1;
			pthread_cond_broadcast(&c->cond);
		}
		pthread_mutex_unlock(&c->lock);
		if (r < 0)
			break;
	}
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void report(const struct bk_stage_write_options *o, struct bk_stage_progress *p)
{
	if (o->progress)
		o->progress(p, o->userdata);
}

/*
 * A payload of at most one chunk: read once into one private buffer, hashed, written, on the
 * calling thread. Two threads and eight 1 MiB buffers per payload cost more than the copy
 * itself when there are thousands of tiny payloads (issue 17, item 8).
 */
static int copy_small(struct chunk_src *src, int out_fd, const struct bk_stage_write_options *o,
		      struct bk_stage_progress *pr, struct bk_err *err)
{
	const struct bk_payload *p = src->p;
	_cleanup_free_ uint8_t *buf = NULL;
	uint8_t d[BK_SHA256_LEN];
	size_t len = (size_t) p->size;
	uint64_t base = pr->done;
	bool verified;
	int r;

	if (posix_memalign((void **) &buf, COPY_DIRECT_ALIGN,
			   (len + COPY_DIRECT_ALIGN - 1) & ~(size_t) (COPY_DIRECT_ALIGN - 1)) != 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = read_chunk(src, 0, buf, len, &verified, err);
	if (r < 0)
		return bk_err_prefix(err, "payload '%s'", p->name);
	if (src->list && !verified) {
		r = bk_chunks_check(src->list, 0, buf, len, err);
		if (r < 0)
			return bk_err_prefix(err, "payload '%s'", p->name);
	} else if (!src->list) {
		r = bk_sha256_buf(buf, len, d);
		if (r < 0)
			return bk_err_set(err, r, "payload '%s': SHA-256 failed", p->name);
	}
	if (len % COPY_DIRECT_ALIGN != 0)
		buffered(out_fd);
	r = pwrite_full(out_fd, buf, len, 0);
	if (r == -EINVAL && buffered(out_fd))
		r = pwrite_full(out_fd, buf, len, 0);
	if (r < 0)
		return bk_err_set(err, r, "payload '%s': write error at offset 0: %m", p->name);
	pr->payload_done = p->size;
	pr->done = base + p->size;
	report(o, pr);
	return src->list ? 0 : bk_bundle_check_digest(p, d, err);
}

/*
 * Copy src->p into out_fd from chunk start on (the chunks before it are in out_fd already,
 * verified), checking every chunk; -EUCLEAN when one does not match.
 */
static int copy_payload(struct chunk_src *src, uint64_t start, int out_fd, size_t index,
			const struct bk_stage_write_options *o, struct bk_stage_progress *pr,
			struct bk_err *err)
{
	const struct bk_payload *p = src->p;
	const struct bk_chunks *list = src->list;
	struct copy c = {
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
		.src = src,
		.size = p->size,
		.out_fd = out_fd,
		.start = start,
		.n_read = start,
		.n_hashed = start,
		.n_written = start,
		.o = o,
		.index = index,
		.checkpointed = start,
	};
	struct bk_sha256 h = { NULL };
	uint8_t d[BK_SHA256_LEN];
	void *(*const helpers[])(void *) = { copy_reader, copy_writer };
	pthread_t threads[BK_ELEMENTSOF(helpers)];
	size_t n_threads = 0;
	uint64_t base = pr->done - start * COPY_CHUNK;
	int r = 0;

	c.n_chunks = (p->size + COPY_CHUNK - 1) / COPY_CHUNK;
	if (c.n_chunks <= 1 && start == 0)
		return copy_small(src, out_fd, o, pr, err);
	if (start >= c.n_chunks)
		return 0;
	/* Only as many buffers as chunks (slot i % COPY_SLOTS of chunk i < n_chunks). */
	for (unsigned i = 0; i < COPY_SLOTS && i < c.n_chunks; i++) {
		if (posix_memalign((void **) &c.buf[i], COPY_DIRECT_ALIGN, COPY_CHUNK) != 0)
			c.buf[i] = NULL;
		if (!c.buf[i]) {
			r = bk_err_set(err, -ENOMEM, "out of memory");
			goto out;
		}
	}
	r = bk_sha256_init(&h);
	if (r < 0) {
		(void) bk_err_set(err, r, "cannot start SHA-256");
		goto out;
	}
	if (!src->source)
		(void) posix_fadvise(src->in_fd, (off_t) p->offset, (off_t) p->size,
				     POSIX_FADV_SEQUENTIAL);
	for (size_t i = 0; i < BK_ELEMENTSOF(helpers); i++) {
		if (pthread_create(&threads[n_threads], NULL, helpers[i], &c) != 0) {
			r = bk_err_set(err, -EAGAIN, "cannot start a copy thread");
			goto out;
		}
		n_threads++;
	}

	for (uint64_t i = start; i < c.n_chunks; i++) {
		unsigned slot = (unsigned) (i % COPY_SLOTS);
		uint64_t done;

		pthread_mutex_lock(&c.lock);
		while (c.r == 0 && c.n_read <= i)
			pthread_cond_wait(&c.cond, &c.lock);
		pthread_mutex_unlock(&c.lock);
		if (c.r != 0)
			break;
		if (c.verified[slot])
			r = 0; /* read from the booted bank and checked there */
		else if (list)
			r = bk_chunks_check(list, i, c.buf[slot], c.len[slot], err);
		else
			r = bk_sha256_update(&h, c.buf[slot], c.len[slot]);
		pthread_mutex_lock(&c.lock);
		if (r < 0 && list)
			copy_fail(&c, r, "%s", err->msg);
		else if (r < 0)
			copy_fail(&c, r, "SHA-256 update failed");
		else {
			c.n_hashed = i + 1;
			pthread_cond_broadcast(&c.cond);
		}
		done = (c.n_written < c.n_hashed ? c.n_written : c.n_hashed) * COPY_CHUNK;
		pthread_mutex_unlock(&c.lock);
		if (r < 0)
			break;
		pr->payload_done = done < p->size ? done : p->size;
		pr->done = base + pr->payload_done;
		report(o, pr);
	}

out:
	if (r < 0) {
		/* Stop the helpers when we failed on our own. */
		pthread_mutex_lock(&c.lock);
		copy_fail(&c, r, "%s", err->msg);
		pthread_mutex_unlock(&c.lock);
	}
	for (size_t i = 0; i < n_threads; i++)
		pthread_join(threads[i], NULL);
	for (unsigned i = 0; i < COPY_SLOTS; i++)
		free(c.buf[i]);
	if (r >= 0 && c.r < 0) {
		*err = c.err;
		r = c.r;
	}
	if (r < 0) {
		bk_sha256_release(&h);
		return bk_err_prefix(err, "payload '%s'", p->name);
	}
	if (list) {
		bk_sha256_release(&h);
		return 0; /* every chunk verified before it was written */
	}
	r = bk_sha256_final(&h, d);
	if (r < 0)
		return bk_err_set(err, r, "payload '%s': SHA-256 final failed", p->name);
	/* The one digest check every verb shares (issue 17, item 3). */
	return bk_bundle_check_digest(p, d, err);
}

/*
 * How many of the first max chunks of the payload file fd are the list's chunks (read through
 * the page cache and checked one by one; the first that is missing or differs ends the count).
 */
static uint64_t verified_prefix(int fd, const struct bk_chunks *list, uint64_t max)
{
	_cleanup_free_ uint8_t *buf = bk_alloc_pages(COPY_CHUNK);
	uint64_t i;

	if (!buf)
		return 0;
	for (i = 0; i < max && i < list->n_chunks; i++) {
		uint64_t off;
		size_t len;

		if (bk_chunks_range(list, i, &off, &len) < 0 ||
		    bk_pread_full(fd, buf, len, off) != (ssize_t) len ||
		    bk_chunks_check(list, i, buf, len, NULL) < 0)
			break;
	}
	return i;
}

/* ---- writing ----------------------------------------------------------------------------- */

/*
 * Delta staging without the booted bank's chunk lists: its file of p's name, an fd, or -1 when
 * there is none.
 */
static int open_reusable(const struct reuse *u, const struct bk_payload *p)
{
	struct stat st;
	int fd;

	if (!u || u->index)
		return -EBADF;
	fd = openat(u->dfd, p->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -EBADF;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		(void) close(fd);
		return -EBADF;
	}
	/* Read ahead now, while the first chunks are fetched: most of it is likely reused. */
	(void) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	(void) posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
	return fd;
}

/* The payload of src into the bank, from chunk 0 or where an interrupted stage stopped. */
static int write_payload_from(struct chunk_src *src, size_t index, int bank_dfd,
			      const struct bk_stage_write_options *o, struct bk_stage_progress *pr,
			      struct bk_err *err)
{
	const struct bk_payload *p = src->p;
	const struct bk_chunks *list = src->list;
	_cleanup_close_ int fd = -EBADF;
	char partial[NAME_MAX + 1];
	uint64_t t0, base, start = 0;
	int r;

	(void) snprintf(partial, sizeof(partial), "%s%s", BK_PARTIAL_PREFIX, p->name);
	base = pr->done;
	pr->payload = p->name;
	pr->payload_done = 0;
	pr->payload_size = p->size;
	pr->end = false;

	if (o->resume && index <= o->resume->payload) {
		/* Complete in an earlier run: kept when every chunk of it still checks. */
		fd = openat(bank_dfd, p->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0 && verified_prefix(fd, list, list->n_chunks) == list->n_chunks) {
			if (o->stats)
				o->stats->resumed += p->size;
			pr->payload_done = p->size;
			pr->done = base + p->size;
			pr->end = true;
			report(o, pr);
			return 0;
		}
		if (fd >= 0)
			(void) close(TAKE_FD(fd));
	}
	if (o->resume && index == o->resume->payload) {
		fd = openat(bank_dfd, partial, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0)
			start = verified_prefix(fd, list, o->resume->chunks);
	}
	if (o->resume && fd < 0) {
		/* Whatever an interrupted run left under these names is not trusted. */
		(void) unlinkat(bank_dfd, partial, 0);
		(void) unlinkat(bank_dfd, p->name, 0);
	}
	if (fd < 0)
		fd = openat(bank_dfd, partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0644);
	if (fd < 0)
		return bk_bank_fs_error(bk_err_set(err, -errno, "cannot create '%s': %m", partial),
					err);
	/*
	 * Direct I/O where the filesystem has it, for payloads of whole chunks: the payload skips
	 * the page cache (no second copy in memory, nothing left to write back at the sync,
	 * nothing to evict at unmount). A payload smaller than a chunk goes through the cache.
	 */
	if (p->size >= COPY_CHUNK)
		(void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT);

	pr->payload_done = start * COPY_CHUNK < p->size ? start * COPY_CHUNK : p->size;
	pr->done = base + pr->payload_done;
	report(o, pr);
	t0 = now_ms();
	r = copy_payload(src, start, fd, index, o, pr, err);
	if (o->stats) {
		o->stats->fetched += src->fetched;
		o->stats->reused += src->reused;
		o->stats->resumed += start * COPY_CHUNK < p->size ? start * COPY_CHUNK : p->size;
	}
	/*
	 * No fsync here: one syncfs() after the last payload makes every payload durable before
	 * the files that make the bank complete are written (bk_stage_write_bank()). An fsync
	 * per file made stage time follow the payload count (issue 17, item 8: 3,000 one-byte
	 * payloads took 26 s). A file renamed but not yet durable is harmless: until bank.json
	 * exists the bank is incomplete, whatever its files hold.
	 */
	BK_DBG(BANK, "payload '%s': %llu bytes copied in %llu ms", p->name,
	       (unsigned long long) p->size, (unsigned long long) (now_ms() - t0));
	if (r >= 0 && close(TAKE_FD(fd)) < 0 && errno != EINTR)
		r = bk_bank_fs_error(bk_err_set(err, -errno, "cannot close '%s': %m", partial),
				     err);
	if (r >= 0 && renameat(bank_dfd, partial, bank_dfd, p->name) < 0)
		r = bk_bank_fs_error(
			bk_err_set(err, -errno, "cannot rename '%s' to '%s': %m", partial, p->name),
			err);
	if (r < 0) {
		/*
		 * Whatever was written is not the payload: discard it, unless a resumable stage
		 * recorded verified chunks of it (its caller decides what stays).
		 */
		if (!o->checkpoint)
			(void) unlinkat(bank_dfd, partial, 0);
		return r;
	}
	pr->payload_done = p->size;
	pr->done = base + p->size;
	pr->end = true;
	report(o, pr);
	return 0;
}

/*
 * Delta staging: the chunk lists of the booted bank at u->dfd and their index into u, when it
 * has them; otherwise u stays without (each chunk is then looked for at the same place of the
 * file of the same name).
 */
static void reuse_load(struct reuse *u)
{
	struct bk_err e = { 0 };
	int r;

	r = bk_bank_chunks_read_at(u->dfd, &u->chunks, &e);
	if (r >= 0)
		r = bk_chunk_index_new((const struct bk_chunks *const *) u->chunks->lists,
				       u->chunks->manifest->n_payloads, &u->index);
	if (r < 0) {
		BK_DBG(BANK,
		       "delta: no chunk lists of the booted bank (%s): each chunk is looked for "
		       "at the same place of the payload of the same name",
		       e.msg[0] ? e.msg : strerror(-r));
		u->chunks = bk_bank_chunks_free(u->chunks);
		return;
	}
	BK_DBG(BANK, "delta: the booted bank's chunk lists: %llu distinct chunks in %zu payloads",
	       (unsigned long long) bk_chunk_index_size(u->index), u->chunks->manifest->n_payloads);
}

static void reuse_release(struct reuse *u)
{
	u->index = bk_chunk_index_free(u->index);
	u->chunks = bk_bank_chunks_free(u->chunks);
}

/*
 * Write payload index of b into the bank, lending chunks from reuse (delta staging, or NULL).
 * Format 2: its chunk list (as checked against the manifest) is copied to table (its place in
 * manifest.chunks; NULL: not kept).
 */
static int write_payload(struct bk_bundle *b, size_t index, int bank_dfd,
			 const struct bk_stage_write_options *o, const struct reuse *reuse,
			 uint8_t *table, struct bk_stage_progress *pr, struct bk_err *err)
{
	const struct bk_payload *p = &bk_bundle_get_manifest(b)->payloads[index];
	_cleanup_(bk_chunks_freep) struct bk_chunks *list = NULL;
	struct chunk_src src = {
		.in_fd = bk_bundle_get_fd(b),
		.in_offset = p->offset,
		.p = p,
		.source = o->source,
		.reuse_fd = -EBADF,
	};
	int r;

	if (!bk_bundle_is_signature_verified(b))
		return bk_err_set(err, -EPERM,
				  "payload '%s': refusing to copy from a bundle whose signature "
				  "was not verified",
				  p->name);
	/* Format 2: the list first (checked against the signed manifest); -EUCLEAN if not. */
	if (bk_bundle_is_chunked(b)) {
		r = bk_bundle_load_chunks(b, p, &list, err);
		if (r < 0)
			return r;
	} else if (o->source || o->resume) {
		return bk_err_set(err, -ENOEXEC,
				  "payload '%s': format version 1 has no chunk lists", p->name);
	}
	src.list = list;
	if (list) {
		if (table)
			memcpy(table, list->digests, list->n_chunks * BK_SHA256_LEN);
		src.reuse = reuse;
		src.reuse_fd = open_reusable(reuse, p);
	}
	r = write_payload_from(&src, index, bank_dfd, o, pr, err);
	if (src.reuse_fd >= 0)
		(void) close(src.reuse_fd);
	return r;
}

int bk_stage_write_bank(struct bk_bundle *b, int bank_dfd, const struct bk_stage_write_options *o,
			struct bk_bank_record **ret_record, struct bk_err *err)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	_cleanup_(reuse_release) struct reuse reuse = { .dfd = -EBADF };
	const struct bk_manifest *m = bk_bundle_get_manifest(b);
	_cleanup_free_ uint8_t *table = NULL;
	const uint8_t *sig;
	struct bk_stage_progress pr = { 0 };
	uint64_t before = 0, table_len = 0, table_off = 0;
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
	/*
	 * The signature that verified, from memory (issue 17): the file may have changed since
	 * it was read, and nothing can refuse between the caller's checks and the first write.
	 */
	sig = bk_bundle_get_signature_bytes(b, &slen);

	/* A resumed stage keeps what the interrupted one wrote (checked again, payload by payload).
	 */
	r = o->resume ? 0 : bk_bank_clear_at(bank_dfd, err);
	if (r < 0) {
		(void) bk_err_prefix(err, "cannot clear the bank");
		return bk_bank_fs_error(r, err);
	}

	/* Format 2: the chunk lists, collected as each payload's is checked (manifest.chunks). */
	reuse.dfd = o->reuse ? o->reuse_dfd : -EBADF;
	if (bk_bundle_is_chunked(b)) {
		for (size_t i = 0; i < m->n_payloads; i++) {
			uint64_t n;

			if (bk_chunks_list_size(m->payloads[i].size, &n) < 0 ||
			    n > UINT64_MAX - table_len)
				return bk_err_set(err, -EOVERFLOW, "too many chunks");
			table_len += n;
		}
		/* Lists longer than a delta would read are not kept (a 2 TiB image). */
		table = table_len <= BK_BANK_CHUNKS_MAX_SIZE ? malloc((size_t) table_len) : NULL;
		if (!table && table_len <= BK_BANK_CHUNKS_MAX_SIZE)
			return bk_err_set(err, -ENOMEM, "out of memory");
		if (o->reuse)
			reuse_load(&reuse);
	}

	pr.n_payloads = m->n_payloads;
	for (size_t i = 0; i < m->n_payloads; i++)
		pr.total += m->payloads[i].size;
	for (size_t i = 0; i < m->n_payloads; i++) {
		uint64_t n = 0;

		pr.index = i;
		pr.done = before;
		r = write_payload(b, i, bank_dfd, o, o->reuse ? &reuse : NULL,
				  table ? table + table_off : NULL, &pr, err);
		if (r < 0)
			return r;
		if (bk_bundle_is_chunked(b))
			(void) bk_chunks_list_size(m->payloads[i].size, &n);
		table_off += n;
		/* A resumable stage: this payload is complete (checked again on a resume). */
		if (o->checkpoint &&
		    m->payloads[i].size >= BK_STAGE_CHECKPOINT_CHUNKS * COPY_CHUNK) {
			r = o->checkpoint(o->checkpoint_userdata, i + 1, 0, err);
			if (r < 0)
				return r;
		}
		before += m->payloads[i].size;
	}
	/*
	 * Every payload's bytes and name are durable before the files that make the bank
	 * complete: one syncfs() of the bank's filesystem instead of an fsync per payload (it
	 * reports writeback errors of files already closed, Linux >= 5.8).
	 */
	if (syncfs(bank_dfd) < 0)
		return bk_bank_fs_error(
			bk_err_set(err, -errno, "cannot sync the bank's filesystem: %m"), err);

	/* Every error from here on is the bank's filesystem's (issue 16: EBADMSG is ext4's). */
	r = bk_write_atomic_at(bank_dfd, BK_BANK_MANIFEST_FILE, manifest, mlen, 0644, 0, err);
	if (r < 0)
		return bk_bank_fs_error(r, err);
	r = bk_write_atomic_at(bank_dfd, BK_BANK_SIGNATURE_FILE, sig, slen, 0644, 0, err);
	if (r < 0)
		return bk_bank_fs_error(r, err);
	if (table) {
		r = bk_write_atomic_at(bank_dfd, BK_BANK_CHUNKS_FILE, table, (size_t) table_len,
				       0644, 0, err);
		if (r < 0)
			return bk_bank_fs_error(r, err);
	}
	r = bk_bank_record_write_at(bank_dfd, rec, err);
	if (r < 0)
		return bk_bank_fs_error(r, err);
	if (syncfs(bank_dfd) < 0)
		return bk_bank_fs_error(
			bk_err_set(err, -errno, "cannot sync the bank's filesystem: %m"), err);
	BK_DBG(BANK, "wrote %s %s: %zu payloads, %llu bytes", m->name, m->version, m->n_payloads,
	       (unsigned long long) pr.total);
	if (ret_record)
		*ret_record = TAKE_PTR(rec);
	return 0;
}
