/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: format-2 chunk lists (images/bk-chunks.h). Input: 8 bytes payload size
 * (little-endian; the fuzzer may say anything up to 2^64-1), 1 mode byte, 32 bytes of the
 * digest the manifest would carry, then the list bytes. Mode bit 0: use the list's real
 * SHA-256 as the digest, so the paths after the digest check (ranges, chunk checks, lookups
 * at and past the bounds) run on lists of any length the size accepts. Whatever is accepted
 * must be exactly 32 bytes per chunk of that size, and its chunks must tile the payload.
 * tests/unit/test-fuzz-chunks.c replays the seed corpus and kept findings in make check.
 */
#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bk-chunks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bk_chunks *c = NULL;
	struct bk_err err = { 0 };
	uint8_t want[BK_SHA256_LEN], zero[64] = { 0 };
	uint64_t payload_size, off, next = 0;
	size_t len;

	if (size < 8 + 1 + BK_SHA256_LEN)
		return 0;
	memcpy(&payload_size, data, 8);
	payload_size = le64toh(payload_size);
	if (data[8] & 1)
		(void) bk_sha256_buf(data + 41, size - 41, want);
	else
		memcpy(want, data + 9, BK_SHA256_LEN);
	if (bk_chunks_parse(data + 41, size - 41, payload_size, want, &c, &err) < 0)
		return 0;
	if (c->n_chunks != bk_chunks_count(payload_size) ||
	    c->n_chunks * BK_SHA256_LEN != size - 41 || c->payload_size != payload_size)
		__builtin_trap();
	for (uint64_t i = 0; i < c->n_chunks; i++) {
		if (bk_chunks_range(c, i, &off, &len) < 0 || off != next || len == 0 ||
		    len > BK_CHUNK_SIZE || (i + 1 < c->n_chunks && len != BK_CHUNK_SIZE))
			__builtin_trap();
		next = off + len;
		if (!bk_chunks_has(c, i, c->digests[i]))
			__builtin_trap();
		/* A short buffer is refused by length before it is hashed. */
		if (len > sizeof(zero) &&
		    bk_chunks_check(c, i, zero, sizeof(zero), &err) != -ENOEXEC)
			__builtin_trap();
		if (len <= sizeof(zero))
			(void) bk_chunks_check(c, i, zero, len, &err);
	}
	if (next != payload_size)
		__builtin_trap();
	if (bk_chunks_range(c, c->n_chunks, &off, &len) != -ERANGE ||
	    bk_chunks_check(c, UINT64_MAX, zero, 1, &err) != -ERANGE ||
	    bk_chunks_has(c, c->n_chunks, want))
		__builtin_trap();
	bk_chunks_free(c);
	return 0;
}
