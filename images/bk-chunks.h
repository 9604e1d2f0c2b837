/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Chunk digest lists of format-2 bundles (docs/bundle-format.md, "Chunks"): a payload is cut
 * into BK_CHUNK_SIZE chunks (the last one shorter), its list is the SHA-256 of each chunk, in
 * order, 32 bytes each, and the signed manifest carries the SHA-256 of the list. Pure (no
 * I/O, no logging) except bk_chunks_digest_fd().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk-err.h"
#include "bk-manifest.h"
#include "bk-sha256.h"

/* Fixed by format version 2 (why 1 MiB: docs/bundle-format.md, "Chunks"). */
#define BK_CHUNK_SIZE BK_MANIFEST_CHUNK_SIZE

struct bk_chunks {
	uint64_t payload_size;
	uint64_t n_chunks;
	uint8_t (*digests)[BK_SHA256_LEN]; /* n_chunks of them */
};

/* Chunks of a payload of size bytes: ceil(size / BK_CHUNK_SIZE). */
uint64_t bk_chunks_count(uint64_t payload_size);

/*
 * Bytes of the chunk list of a payload of size bytes (32 per chunk). Returns 0 and
 * *ret_len, or -EOVERFLOW.
 */
int bk_chunks_list_size(uint64_t payload_size, uint64_t *ret_len);

/*
 * Take the chunk list buf[0..len) of a payload of payload_size bytes whose list the manifest
 * says has SHA-256 want: the length is checked against the payload size first (-ENOEXEC
 * "chunk list of N bytes, expected M for a payload of S bytes", nothing else is read), then
 * the list's digest (-EUCLEAN "chunk list SHA-256 mismatch"). payload_size 0 is -ENOEXEC.
 * *ret (bk_chunks_free()) written on success. -ENOMEM.
 */
int bk_chunks_parse(const void *buf, size_t len, uint64_t payload_size,
		    const uint8_t want[BK_SHA256_LEN], struct bk_chunks **ret, struct bk_err *err);

/*
 * Chunk i's range within the payload: *ret_offset, *ret_len. Returns 0, -ERANGE when i is
 * not a chunk of it.
 */
int bk_chunks_range(const struct bk_chunks *c, uint64_t i, uint64_t *ret_offset, size_t *ret_len);

/*
 * Is data[0..len) chunk i? Returns 0; -ERANGE i out of range; -ENOEXEC len is not chunk i's
 * length; -EUCLEAN "chunk I (offset O): SHA-256 mismatch (corrupt payload)".
 */
int bk_chunks_check(const struct bk_chunks *c, uint64_t i, const void *data, size_t len,
		    struct bk_err *err);

/* Does chunk i carry digest d? False when i is out of range. */
bool bk_chunks_has(const struct bk_chunks *c, uint64_t i, const uint8_t d[BK_SHA256_LEN]);

/*
 * Where a digest is among several chunk lists (delta staging: the booted bank's payloads,
 * docs/stage-url.md, "Delta"): a hash table of every chunk of every list, keyed by its
 * digest. It points into the lists (not copied, not owned: they must outlive it); a digest
 * that several chunks carry is found at the first of them (lowest list, then lowest chunk).
 * About 16 bytes per chunk. Pure.
 */
struct bk_chunk_index;

/*
 * Index lists[0..n_lists) (NULL entries skipped). Returns 0 and *ret (bk_chunk_index_free());
 * -ENOMEM; -EOVERFLOW (more chunks than memory could ever hold).
 */
int bk_chunk_index_new(const struct bk_chunks *const *lists, size_t n_lists,
		       struct bk_chunk_index **ret);

/*
 * Which chunk carries digest d: true, *ret_list (an index into lists) and *ret_chunk; false
 * when none does. The answer is what the lists say, never a check of any bytes: a caller
 * copying the chunk still checks what it reads against the digest it wanted.
 */
bool bk_chunk_index_find(const struct bk_chunk_index *x, const uint8_t d[BK_SHA256_LEN],
			 size_t *ret_list, uint64_t *ret_chunk);

/* Chunks indexed (distinct digests). */
uint64_t bk_chunk_index_size(const struct bk_chunk_index *x);

struct bk_chunk_index *bk_chunk_index_free(struct bk_chunk_index *x);

BK_DEFINE_CLEANUP(struct bk_chunk_index *, bk_chunk_index_free)

/*
 * The chunks_sha256 of the size bytes of fd from offset 0 (a payload file in a bank): hashes
 * every chunk, then the list. Returns 0 and *ret; -ENOEXEC the file is shorter; -EIO...
 */
int bk_chunks_digest_fd(int fd, uint64_t size, uint8_t ret[BK_SHA256_LEN], struct bk_err *err);

struct bk_chunks *bk_chunks_free(struct bk_chunks *c);

BK_DEFINE_CLEANUP(struct bk_chunks *, bk_chunks_free)
