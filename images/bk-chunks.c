/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bk-chunks.h"
#include "bk-fs.h"

uint64_t bk_chunks_count(uint64_t payload_size)
{
	return payload_size / BK_CHUNK_SIZE + (payload_size % BK_CHUNK_SIZE != 0);
}

int bk_chunks_list_size(uint64_t payload_size, uint64_t *ret_len)
{
	uint64_t n = bk_chunks_count(payload_size);

	if (n > UINT64_MAX / BK_SHA256_LEN)
		return -EOVERFLOW;
	*ret_len = n * BK_SHA256_LEN;
	return 0;
}

int bk_chunks_parse(const void *buf, size_t len, uint64_t payload_size,
		    const uint8_t want[BK_SHA256_LEN], struct bk_chunks **ret, struct bk_err *err)
{
	_cleanup_(bk_chunks_freep) struct bk_chunks *c = NULL;
	uint8_t d[BK_SHA256_LEN];
	uint64_t need;
	int r;

	if (payload_size == 0)
		return bk_err_set(err, -ENOEXEC, "chunk list of an empty payload");
	/* The length first: nothing in buf is looked at before it is the length it must be. */
	if (bk_chunks_list_size(payload_size, &need) < 0 || (uint64_t) len != need)
		return bk_err_set(err, -ENOEXEC,
				  "chunk list of %zu bytes, expected %llu for a payload of %llu "
				  "bytes",
				  len, (unsigned long long) need,
				  (unsigned long long) payload_size);
	r = bk_sha256_buf(buf, len, d);
	if (r < 0)
		return bk_err_set(err, r, "cannot hash the chunk list");
	if (memcmp(d, want, BK_SHA256_LEN) != 0) {
		char w[BK_SHA256_HEX_LEN + 1], g[BK_SHA256_HEX_LEN + 1];

		bk_sha256_to_hex(want, w);
		bk_sha256_to_hex(d, g);
		return bk_err_set(err, -EUCLEAN,
				  "chunk list SHA-256 mismatch (corrupt payload): manifest %s, "
				  "bundle %s",
				  w, g);
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return bk_err_set(err, -ENOMEM, "out of memory");
	c->digests = malloc(len);
	if (!c->digests)
		return bk_err_set(err, -ENOMEM, "out of memory");
	memcpy(c->digests, buf, len);
	c->payload_size = payload_size;
	c->n_chunks = need / BK_SHA256_LEN;
	*ret = TAKE_PTR(c);
	return 0;
}

int bk_chunks_range(const struct bk_chunks *c, uint64_t i, uint64_t *ret_offset, size_t *ret_len)
{
	uint64_t off;

	if (i >= c->n_chunks)
		return -ERANGE;
	off = i * BK_CHUNK_SIZE;
	*ret_offset = off;
	*ret_len = (size_t) (c->payload_size - off < BK_CHUNK_SIZE ? c->payload_size - off :
								     BK_CHUNK_SIZE);
	return 0;
}

int bk_chunks_check(const struct bk_chunks *c, uint64_t i, const void *data, size_t len,
		    struct bk_err *err)
{
	uint8_t d[BK_SHA256_LEN];
	uint64_t off;
	size_t want;
	int r;

	if (bk_chunks_range(c, i, &off, &want) < 0)
		return bk_err_set(err, -ERANGE, "chunk %llu out of range (%llu chunks)",
				  (unsigned long long) i, (unsigned long long) c->n_chunks);
	if (len != want)
		return bk_err_set(err, -ENOEXEC, "chunk %llu: %zu bytes, expected %zu",
				  (unsigned long long) i, len, want);
	r = bk_sha256_buf(data, len, d);
	if (r < 0)
		return bk_err_set(err, r, "chunk %llu: SHA-256 failed", (unsigned long long) i);
	if (memcmp(d, c->digests[i], BK_SHA256_LEN) != 0)
		return bk_err_set(err, -EUCLEAN,
				  "chunk %llu (offset %llu): SHA-256 mismatch (corrupt payload)",
				  (unsigned long long) i, (unsigned long long) off);
	return 0;
}

bool bk_chunks_has(const struct bk_chunks *c, uint64_t i, const uint8_t d[BK_SHA256_LEN])
{
	return i < c->n_chunks && memcmp(c->digests[i], d, BK_SHA256_LEN) == 0;
}

int bk_chunks_digest_fd(int fd, uint64_t size, uint8_t ret[BK_SHA256_LEN], struct bk_err *err)
{
	_cleanup_free_ uint8_t *buf = bk_alloc_pages(BK_CHUNK_SIZE);
	struct bk_sha256 list = { NULL };
	int r;

	if (!buf)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = bk_sha256_init(&list);
	if (r < 0)
		return bk_err_set(err, r, "cannot start SHA-256");
	for (uint64_t off = 0; off < size; off += BK_CHUNK_SIZE) {
		size_t len = (size_t) (size - off < BK_CHUNK_SIZE ? size - off : BK_CHUNK_SIZE);
		uint8_t d[BK_SHA256_LEN];
		ssize_t n = bk_pread_full(fd, buf, len, off);

		if (n < 0)
			r = bk_err_set(err, (int) n, "read error at offset %llu: %m",
				       (unsigned long long) off);
		else if ((size_t) n != len)
			r = bk_err_set(err, -ENOEXEC, "shorter than %llu bytes",
				       (unsigned long long) size);
		else if (bk_sha256_buf(buf, len, d) < 0 ||
			 bk_sha256_update(&list, d, sizeof(d)) < 0)
			r = bk_err_set(err, -EIO, "SHA-256 failed");
		if (r < 0) {
			bk_sha256_release(&list);
			return r;
		}
	}
	r = bk_sha256_final(&list, ret);
	if (r < 0)
		return bk_err_set(err, r, "SHA-256 failed");
	return 0;
}

struct bk_chunks *bk_chunks_free(struct bk_chunks *c)
{
	if (!c)
		return NULL;
	free(c->digests);
	free(c);
	return NULL;
}
