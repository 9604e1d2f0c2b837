/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "bk-fs.h"
#include "bk-log.h"
#include "bk-sha256.h"

int bk_sha256_init(struct bk_sha256 *h)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	h->ctx = NULL;
	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		ERR_clear_error();
		return -EIO;
	}
	h->ctx = ctx;
	return 0;
}

int bk_sha256_update(struct bk_sha256 *h, const void *buf, size_t len)
{
	if (!h->ctx)
		return -EINVAL;
	if (EVP_DigestUpdate(h->ctx, buf, len) != 1) {
		ERR_clear_error();
		return -EIO;
	}
	return 0;
}

int bk_sha256_final(struct bk_sha256 *h, uint8_t ret[BK_SHA256_LEN])
{
	unsigned len = 0;
	int r = 0;

	if (!h->ctx)
		return -EINVAL;
	if (EVP_DigestFinal_ex(h->ctx, ret, &len) != 1 || len != BK_SHA256_LEN) {
		ERR_clear_error();
		r = -EIO;
	}
	bk_sha256_release(h);
	return r;
}

void bk_sha256_release(struct bk_sha256 *h)
{
	if (h && h->ctx) {
		EVP_MD_CTX_free(h->ctx);
		h->ctx = NULL;
	}
}

int bk_sha256_buf(const void *buf, size_t len, uint8_t ret[BK_SHA256_LEN])
{
	struct bk_sha256 h;
	int r;

	r = bk_sha256_init(&h);
	if (r < 0)
		return r;
	r = bk_sha256_update(&h, buf, len);
	if (r < 0) {
		bk_sha256_release(&h);
		return r;
	}
	return bk_sha256_final(&h, ret);
}

static int truncated(struct bk_err *err, uint64_t offset, uint64_t size, uint64_t got)
{
	return bk_err_set(err, -ENOEXEC,
			  "truncated: %llu bytes expected at offset %llu, file ends after %llu",
			  (unsigned long long) size, (unsigned long long) offset,
			  (unsigned long long) got);
}

/* Hash [offset, offset+size) of fd through buf (buf_size bytes). */
static int hash_range(int fd, uint64_t offset, uint64_t size, uint8_t *buf, size_t buf_size,
		      uint8_t ret[BK_SHA256_LEN], struct bk_err *err)
{
	struct bk_sha256 h = { NULL };
	uint64_t done = 0;
	int r;

	if (offset > UINT64_MAX - size)
		return bk_err_set(err, -EOVERFLOW, "range %llu+%llu overflows",
				  (unsigned long long) offset, (unsigned long long) size);
	(void) posix_fadvise(fd, (off_t) offset, (off_t) size, POSIX_FADV_SEQUENTIAL);

	r = bk_sha256_init(&h);
	if (r < 0)
		return bk_err_set(err, r, "cannot start SHA-256");

	while (done < size) {
		size_t want = size - done > buf_size ? buf_size : (size_t) (size - done);
		ssize_t n = bk_pread_full(fd, buf, want, offset + done);

		if (n < 0) {
			bk_sha256_release(&h);
			return bk_err_set(err, (int) n, "read error at offset %llu: %m",
					  (unsigned long long) (offset + done));
		}
		r = bk_sha256_update(&h, buf, (size_t) n);
		if (r < 0) {
			bk_sha256_release(&h);
			return bk_err_set(err, r, "SHA-256 update failed");
		}
		done += (uint64_t) n;
		if ((size_t) n < want) {
			bk_sha256_release(&h);
			return truncated(err, offset, size, done);
		}
	}
	r = bk_sha256_final(&h, ret);
	if (r < 0)
		return bk_err_set(err, r, "SHA-256 final failed");
	BK_DBG(CRYPTO, "hashed %llu bytes at %llu", (unsigned long long) size,
	       (unsigned long long) offset);
	return 0;
}

static size_t buffer_size(uint64_t size)
{
	/* Small ranges get small buffers (10,000 tiny payloads need not touch 1 MiB each). */
	return size < BK_SHA256_CHUNK ? (size_t) (size > 0 ? size : 1) : BK_SHA256_CHUNK;
}

int bk_sha256_fd_range(int fd, uint64_t offset, uint64_t size, uint8_t ret[BK_SHA256_LEN],
		       struct bk_err *err)
{
	_cleanup_free_ uint8_t *buf = bk_alloc_pages(buffer_size(size));

	if (!buf)
		return bk_err_set(err, -ENOMEM, "out of memory");
	return hash_range(fd, offset, size, buf, buffer_size(size), ret, err);
}

unsigned bk_sha256_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > BK_SHA256_MAX_THREADS ? BK_SHA256_MAX_THREADS : (unsigned) n;
}

/* ---- read-ahead ring: one reader thread, the calling thread consumes -------------------- */

struct ring {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t *buf[BK_SHA256_RING];
	size_t len[BK_SHA256_RING];
	uint64_t produced, consumed; /* chunks */
	bool done;		     /* the reader has stopped (end, error or stop) */
	bool stop;		     /* the consumer gave up */
	int r;			     /* reader error (-errno), 0 */
	uint64_t err_offset;
	int fd;
	uint64_t offset, size;
	size_t chunk;
};

static void *ring_reader(void *userdata)
{
	struct ring *g = userdata;
	uint64_t pos = 0;

	while (pos < g->size) {
		size_t want = g->size - pos > g->chunk ? g->chunk : (size_t) (g->size - pos);
		unsigned slot;
		ssize_t n;

		pthread_mutex_lock(&g->lock);
		while (g->produced - g->consumed == BK_SHA256_RING && !g->stop)
			pthread_cond_wait(&g->cond, &g->lock);
		slot = (unsigned) (g->produced % BK_SHA256_RING);
		if (g->stop) {
			pthread_mutex_unlock(&g->lock);
			break;
		}
		pthread_mutex_unlock(&g->lock);

		n = bk_pread_full(g->fd, g->buf[slot], want, g->offset + pos);

		pthread_mutex_lock(&g->lock);
		if (n < 0) {
			g->r = (int) n;
			g->err_offset = g->offset + pos;
			pthread_mutex_unlock(&g->lock);
			break;
		}
		g->len[slot] = (size_t) n;
		g->produced++;
		pthread_cond_broadcast(&g->cond);
		pthread_mutex_unlock(&g->lock);
		pos += (uint64_t) n;
		if ((size_t) n < want)
			break; /* end of file: the consumer sees the short total */
	}
	pthread_mutex_lock(&g->lock);
	g->done = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

/* Wait for the next chunk: 0 with *ret_slot, 1 when the reader is done, <0 reader error. */
static int ring_next(struct ring *g, unsigned *ret_slot)
{
	int r = 1;

	pthread_mutex_lock(&g->lock);
	while (g->consumed == g->produced && !g->done)
		pthread_cond_wait(&g->cond, &g->lock);
	if (g->consumed < g->produced) {
		*ret_slot = (unsigned) (g->consumed % BK_SHA256_RING);
		r = 0;
	} else if (g->r < 0)
		r = g->r;
	pthread_mutex_unlock(&g->lock);
	return r;
}

static void ring_release(struct ring *g)
{
	pthread_mutex_lock(&g->lock);
	g->consumed++;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

static void ring_stop(struct ring *g)
{
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

static void ring_free_buffers(struct ring *g)
{
	for (unsigned i = 0; i < BK_SHA256_RING; i++)
		free(g->buf[i]);
}

static bool is_zero(const uint8_t *buf, size_t len)
{
	/* First byte zero and the buffer equal to itself shifted by one: all zero. */
	return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}

static int pwrite_full(int fd, const uint8_t *buf, size_t len, uint64_t offset)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, (off_t) offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		buf += n;
		len -= (size_t) n;
		offset += (uint64_t) n;
	}
	return 0;
}

/* Sequential read, hash and (out_fd >= 0) write through one buffer. */
static int seq_run(int fd, uint64_t offset, uint64_t size, int out_fd, uint64_t out_offset,
		   unsigned flags, uint8_t *buf, size_t buf_size, uint8_t ret[BK_SHA256_LEN],
		   struct bk_err *err)
{
	struct bk_sha256 h = { NULL };
	uint64_t done = 0;
	int r;

	if (out_fd < 0)
		return hash_range(fd, offset, size, buf, buf_size, ret, err);
	r = bk_sha256_init(&h);
	if (r < 0)
		return bk_err_set(err, r, "cannot start SHA-256");
	while (done < size) {
		size_t want = size - done > buf_size ? buf_size : (size_t) (size - done);
		ssize_t n = bk_pread_full(fd, buf, want, offset + done);

		if (n < 0) {
			bk_sha256_release(&h);
			return bk_err_set(err, (int) n, "read error at offset %llu: %m",
					  (unsigned long long) (offset + done));
		}
		r = bk_sha256_update(&h, buf, (size_t) n);
		if (r >= 0 && !((flags & BK_SHA256_COPY_SPARSE) && is_zero(buf, (size_t) n)))
			r = pwrite_full(out_fd, buf, (size_t) n, out_offset + done);
		if (r < 0) {
			bk_sha256_release(&h);
			return bk_err_set(err, r, "write error at output offset %llu: %m",
					  (unsigned long long) (out_offset + done));
		}
		done += (uint64_t) n;
		if ((size_t) n < want) {
			bk_sha256_release(&h);
			return truncated(err, offset, size, done);
		}
	}
	r = bk_sha256_final(&h, ret);
	if (r < 0)
		return bk_err_set(err, r, "SHA-256 final failed");
	return 0;
}

/*
 * Stream [offset, offset+size) of fd through the ring; for every chunk, hash it and, when
 * out_fd >= 0, pwrite it at out_offset + position. Falls back to reading in the calling
 * thread when no thread can be started.
 */
static int ring_run(int fd, uint64_t offset, uint64_t size, int out_fd, uint64_t out_offset,
		    unsigned flags, uint8_t ret[BK_SHA256_LEN], struct bk_err *err)
{
	struct ring g = { .fd = fd, .offset = offset, .size = size, .chunk = BK_SHA256_CHUNK };
	struct bk_sha256 h = { NULL };
	uint64_t done = 0;
	pthread_t thread;
	int r;

	if (offset > UINT64_MAX - size || (out_fd >= 0 && out_offset > UINT64_MAX - size))
		return bk_err_set(err, -EOVERFLOW, "range %llu+%llu overflows",
				  (unsigned long long) offset, (unsigned long long) size);
	for (unsigned i = 0; i < BK_SHA256_RING; i++) {
		g.buf[i] = bk_alloc_pages(g.chunk);
		if (!g.buf[i]) {
			ring_free_buffers(&g);
			return bk_err_set(err, -ENOMEM, "out of memory");
		}
	}
	r = bk_sha256_init(&h);
	if (r < 0) {
		ring_free_buffers(&g);
		return bk_err_set(err, r, "cannot start SHA-256");
	}
	(void) posix_fadvise(fd, (off_t) offset, (off_t) size, POSIX_FADV_SEQUENTIAL);
	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.cond, NULL);

	if (pthread_create(&thread, NULL, ring_reader, &g) != 0) {
		/* No thread: the same work, sequentially, through the first buffer. */
		pthread_cond_destroy(&g.cond);
		pthread_mutex_destroy(&g.lock);
		bk_sha256_release(&h);
		r = seq_run(fd, offset, size, out_fd, out_offset, flags, g.buf[0], g.chunk, ret,
			    err);
		ring_free_buffers(&g);
		return r;
	}

	for (;;) {
		unsigned slot = 0;

		r = ring_next(&g, &slot);
		if (r != 0)
			break;
		r = bk_sha256_update(&h, g.buf[slot], g.len[slot]);
		if (r < 0) {
			(void) bk_err_set(err, r, "SHA-256 update failed");
			break;
		}
		if (out_fd >= 0 &&
		    !((flags & BK_SHA256_COPY_SPARSE) && is_zero(g.buf[slot], g.len[slot]))) {
			r = pwrite_full(out_fd, g.buf[slot], g.len[slot], out_offset + done);
			if (r < 0) {
				(void) bk_err_set(err, r, "write error at output offset %llu: %m",
						  (unsigned long long) (out_offset + done));
				break;
			}
		}
		done += g.len[slot];
		ring_release(&g);
	}
	ring_stop(&g);
	pthread_join(thread, NULL);
	pthread_cond_destroy(&g.cond);
	pthread_mutex_destroy(&g.lock);
	ring_free_buffers(&g);

	if (r < 0 && !bk_err_is_set(err))
		(void) bk_err_set(err, r, "read error at offset %llu: %m",
				  (unsigned long long) g.err_offset);
	if (r >= 0 && done < size)
		r = truncated(err, offset, size, done);
	if (r < 0) {
		bk_sha256_release(&h);
		return r;
	}
	r = bk_sha256_final(&h, ret);
	if (r < 0)
		return bk_err_set(err, r, "SHA-256 final failed");
	BK_DBG(CRYPTO, "%s %llu bytes at %llu", out_fd >= 0 ? "copied and hashed" : "hashed",
	       (unsigned long long) size, (unsigned long long) offset);
	return 0;
}

int bk_sha256_fd_copy(int in_fd, uint64_t in_offset, uint64_t size, int out_fd, uint64_t out_offset,
		      unsigned flags, uint8_t ret[BK_SHA256_LEN], struct bk_err *err)
{
	if (out_fd < 0)
		return bk_err_set(err, -EBADF, "no output file");
	return ring_run(in_fd, in_offset, size, out_fd, out_offset, flags, ret, err);
}

/* ---- a pool of workers over many ranges ------------------------------------------------- */

struct pool {
	int fd;
	struct bk_sha256_job *jobs;
	size_t n_jobs;
	size_t next; /* atomic: the next job to take */
	uint64_t max_size;
};

static void *pool_worker(void *userdata)
{
	struct pool *p = userdata;
	size_t bufsize = buffer_size(p->max_size);
	uint8_t *buf = bk_alloc_pages(bufsize);

	for (;;) {
		size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
		struct bk_sha256_job *j;

		if (i >= p->n_jobs)
			break;
		j = &p->jobs[i];
		bk_err_clear(&j->err);
		if (!buf)
			j->r = bk_err_set(&j->err, -ENOMEM, "out of memory");
		else
			j->r = hash_range(p->fd, j->offset, j->size, buf, bufsize, j->digest,
					  &j->err);
	}
	free(buf);
	return NULL;
}

int bk_sha256_fd_jobs(int fd, struct bk_sha256_job *jobs, size_t n_jobs, unsigned n_threads,
		      struct bk_err *err)
{
	struct pool p = { .fd = fd, .jobs = jobs, .n_jobs = n_jobs };
	pthread_t threads[BK_SHA256_MAX_THREADS];
	unsigned n_started = 0;

	if (n_threads == 0)
		n_threads = bk_sha256_threads();
	if (n_threads > BK_SHA256_MAX_THREADS)
		n_threads = BK_SHA256_MAX_THREADS;
	if (n_jobs == 0)
		return 0;

	if (n_jobs == 1 && n_threads >= 2) {
		bk_err_clear(&jobs[0].err);
		jobs[0].r = ring_run(fd, jobs[0].offset, jobs[0].size, -EBADF, 0, 0, jobs[0].digest,
				     &jobs[0].err);
	} else {
		for (size_t i = 0; i < n_jobs; i++)
			if (jobs[i].size > p.max_size)
				p.max_size = jobs[i].size;
		if (n_threads > n_jobs)
			n_threads = (unsigned) n_jobs;
		/* The calling thread is worker 0. */
		for (unsigned i = 1; i < n_threads; i++) {
			if (pthread_create(&threads[n_started], NULL, pool_worker, &p) != 0)
				break;
			n_started++;
		}
		pool_worker(&p);
		for (unsigned i = 0; i < n_started; i++)
			pthread_join(threads[i], NULL);
	}
	BK_DBG(CRYPTO, "hashed %zu ranges with %u threads", n_jobs,
	       n_jobs == 1 ? (n_threads >= 2 ? 2 : 1) : n_started + 1);

	for (size_t i = 0; i < n_jobs; i++)
		if (jobs[i].r < 0) {
			if (err && err->code >= 0)
				*err = jobs[i].err;
			return jobs[i].r;
		}
	return 0;
}

void bk_sha256_to_hex(const uint8_t d[BK_SHA256_LEN], char hex[BK_SHA256_HEX_LEN + 1])
{
	for (size_t i = 0; i < BK_SHA256_LEN; i++) {
		hex[2 * i] = "0123456789abcdef"[d[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[d[i] & 0xf];
	}
	hex[BK_SHA256_HEX_LEN] = '\0';
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int bk_sha256_from_hex(const char *hex, uint8_t ret[BK_SHA256_LEN])
{
	uint8_t d[BK_SHA256_LEN];

	if (!hex || strlen(hex) != BK_SHA256_HEX_LEN)
		return -EINVAL;
	for (size_t i = 0; i < BK_SHA256_LEN; i++) {
		int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		d[i] = (uint8_t) (hi << 4 | lo);
	}
	memcpy(ret, d, sizeof(d));
	return 0;
}
