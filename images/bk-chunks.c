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

/* ---- the index ----------------------------------------------------------------------------- */

struct index_slot {
	uint64_t chunk;
	uint32_t list; /* + 1: 0 is an empty slot */
};

struct bk_chunk_index {
	const struct bk_chunks *const *lists;
	struct index_slot *slots;
	uint64_t mask; /* slots - 1, a power of two at least twice the chunks */
	uint64_t n;
};

/* The digests are SHA-256 outputs: any 8 of their bytes are already a uniform hash. */
static uint64_t slot_of(const struct bk_chunk_index *x, const uint8_t d[BK_SHA256_LEN])
{
	uint64_t h;

	memcpy(&h, d, sizeof(h));
	return h & x->mask;
}

int bk_chunk_index_new(const struct bk_chunks *const *lists, size_t n_lists,
		       struct bk_chunk_index **ret)
{
	_cleanup_(bk_chunk_index_freep) struct bk_chunk_index *x = NULL;
	uint64_t total = 0, cap = 16;

	if (n_lists >= UINT32_MAX)
		return -EOVERFLOW;
	for (size_t k = 0; k < n_lists; k++) {
		if (!lists[k])
			continue;
		if (lists[k]->n_chunks > UINT64_MAX / 4 - total)
			return -EOVERFLOW;
		total += lists[k]->n_chunks;
	}
	while (cap < 2 * total)
		cap <<= 1;
	if (cap > SIZE_MAX / sizeof(struct index_slot))
		return -EOVERFLOW;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->slots = calloc((size_t) cap, sizeof(struct index_slot));
	if (!x->slots)
		return -ENOMEM;
	x->lists = lists;
	x->mask = cap - 1;
	for (size_t k = 0; k < n_lists; k++) {
		if (!lists[k])
			continue;
		for (uint64_t i = 0; i < lists[k]->n_chunks; i++) {
			const uint8_t *d = lists[k]->digests[i];
			uint64_t s = slot_of(x, d);

			/* Linear probing; a digest already there keeps its first place. */
			while (x->slots[s].list != 0 &&
			       !bk_chunks_has(lists[x->slots[s].list - 1], x->slots[s].chunk, d))
				s = (s + 1) & x->mask;
			if (x->slots[s].list != 0)
				continue;
			x->slots[s] = (struct index_slot){ .chunk = i, .list = (uint32_t) k + 1 };
			x->n++;
		}
	}
	*ret = TAKE_PTR(x);
	return 0;
}

bool bk_chunk_index_find(const struct bk_chunk_index *x, const uint8_t d[BK_SHA256_LEN],
			 size_t *ret_list, uint64_t *ret_chunk)
{
	for (uint64_t s = slot_of(x, d); x->slots[s].list != 0; s = (s + 1) & x->mask)
		if (bk_chunks_has(x->lists[x->slots[s].list - 1], x->slots[s].chunk, d)) {
			*ret_list = x->slots[s].list - 1;
			*ret_chunk = x->slots[s].chunk;
			return true;
		}
	return false;
}

uint64_t bk_chunk_index_size(const struct bk_chunk_index *x)
{
	return x->n;
}

struct bk_chunk_index *bk_chunk_index_free(struct bk_chunk_index *x)
{
	if (!x)
		return NULL;
	free(x->slots);
	free(x);
	return NULL;
}

struct bk_chunks *bk_chunks_free(struct bk_chunks *c)
{
	if (!c)
		return NULL;
	free(c->digests);
	free(c);
	return NULL;
}
