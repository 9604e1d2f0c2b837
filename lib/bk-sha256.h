/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Streaming SHA-256 over libcrypto EVP (uses SHA-NI / AVX2 where the CPU has them).
 * Memory is bounded: files are hashed through a fixed buffer, never mapped whole.
 */
#pragma once

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

/* Lowercase hex, hex must hold BK_SHA256_HEX_LEN + 1 bytes. */
void bk_sha256_to_hex(const uint8_t d[BK_SHA256_LEN], char hex[BK_SHA256_HEX_LEN + 1]);

/* Parse 64 hex digits (either case, nothing else). Returns 0 or -EINVAL. */
int bk_sha256_from_hex(const char *hex, uint8_t ret[BK_SHA256_LEN]);
