/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Streaming SHA-256 over libcrypto EVP (uses SHA-NI / AVX2 where the CPU has them).
 * Memory is bounded: files are hashed through a fixed buffer, never mapped whole.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk-err.h"

#define BK_SHA256_LEN	  32
#define BK_SHA256_HEX_LEN 64
/* Buffer used by the fd helpers: large enough to amortise syscalls, small for RSS. */
#define BK_SHA256_CHUNK (1024 * 1024)

struct bk_sha256 {
	void *ctx; /* EVP_MD_CTX */
};

/* Start a digest. Returns 0 or -ENOMEM / -EIO (libcrypto failure). */
int bk_sha256_init(struct bk_sha256 *h);
int bk_sha256_update(struct bk_sha256 *h, const void *buf, size_t len);
/* Finish: ret gets the 32-byte digest. The context is released either way. */
int bk_sha256_final(struct bk_sha256 *h, uint8_t ret[BK_SHA256_LEN]);
/* Release without finishing (accepts a released or zeroed struct). */
void bk_sha256_release(struct bk_sha256 *h);

/* One-shot digest of a buffer. */
int bk_sha256_buf(const void *buf, size_t len, uint8_t ret[BK_SHA256_LEN]);

/*
 * Digest size bytes of fd starting at offset (pread, fixed buffer, no seek of the fd).
 * Fewer bytes than size in the file: -ENOEXEC ("truncated"). Read errors: -errno.
 * Advises the kernel of sequential access.
 */
int bk_sha256_fd_range(int fd, uint64_t offset, uint64_t size, uint8_t ret[BK_SHA256_LEN],
		       struct bk_err *err);

/* Most threads the parallel helpers use, whatever the core count (bounds memory: 1 MiB each). */
#define BK_SHA256_MAX_THREADS 16
/* Ring of read-ahead buffers of the pipelined helpers (BK_SHA256_CHUNK each). */
#define BK_SHA256_RING 4

/* Threads worth using for hashing: the online CPUs, 1..BK_SHA256_MAX_THREADS. */
unsigned bk_sha256_threads(void);

/* One range of a parallel hash (bk_sha256_fd_jobs). */
struct bk_sha256_job {
	uint64_t offset;	       /* in: where the range starts in the fd */
	uint64_t size;		       /* in: its length */
	uint8_t digest[BK_SHA256_LEN]; /* out: valid when r == 0 */
	int r;			       /* out: 0, or -errno as bk_sha256_fd_range() returns */
	struct bk_err err;	       /* out: the message when r < 0 */
};

/*
 * Digest several ranges of one fd with up to n_threads threads (0: bk_sha256_threads()),
 * the calling thread being one of them. Each thread reads its own range with pread through
 * one BK_SHA256_CHUNK buffer (memory: n_threads MiB, never a whole range), so ranges are
 * hashed in parallel on all cores. A single range with n_threads >= 2 is hashed by the calling
 * thread while a helper thread reads ahead into a ring of BK_SHA256_RING buffers, overlapping
 * the copy out of the page cache (or the disk read) with the hashing.
 * Every job is attempted; each gets its own r, digest and err. Returns 0 when every job
 * succeeded, else the r of the first failed job (in array order) with its message copied into
 * err. A thread that cannot be created is not an error: fewer threads do the work.
 */
int bk_sha256_fd_jobs(int fd, struct bk_sha256_job *jobs, size_t n_jobs, unsigned n_threads,
		      struct bk_err *err);

/*
 * Copy size bytes of in_fd at in_offset to out_fd at out_offset (pread/pwrite, neither fd's
 * file position moves) while hashing them; ret gets the digest of the bytes written. A helper
 * thread reads ahead (ring of BK_SHA256_RING buffers) while the calling thread hashes and
 * writes. Does not fsync. Returns 0; -ENOEXEC when in_fd ends early ("truncated"); -errno of a
 * failed read or write (-ENOSPC, -EIO ...), with a message naming the offset and the step.
 * On failure out_fd may hold part of the data: the caller discards it.
 * flags: BK_SHA256_COPY_SPARSE.
 */
int bk_sha256_fd_copy(int in_fd, uint64_t in_offset, uint64_t size, int out_fd, uint64_t out_offset,
		      unsigned flags, uint8_t ret[BK_SHA256_LEN], struct bk_err *err);

enum bk_sha256_copy_flags {
	/*
	 * out_fd is a new file whose unwritten ranges read as zero: chunks that are all zero are
	 * hashed but not written (they stay holes; the caller sets the file size). Never for a
	 * device or a file with old content.
	 */
	BK_SHA256_COPY_SPARSE = 1 << 0,
};

/* Lowercase hex, hex must hold BK_SHA256_HEX_LEN + 1 bytes. */
void bk_sha256_to_hex(const uint8_t d[BK_SHA256_LEN], char hex[BK_SHA256_HEX_LEN + 1]);

/* Parse 64 hex digits (either case, nothing else). Returns 0 or -EINVAL. */
int bk_sha256_from_hex(const char *hex, uint8_t ret[BK_SHA256_LEN]);
