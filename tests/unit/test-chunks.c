/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Chunk lists of format-2 bundles (images/bk-chunks.h; docs/bundle-format.md, "Chunks"). */
#include <errno.h>

#include "bk-test.h"

#include "bk-chunks.h"

#define MIB (UINT64_C(1) << 20)

/* A payload of size bytes (pattern), its list and the list's digest. */
static uint8_t *make(uint64_t size, uint8_t **ret_list, size_t *ret_len,
		     uint8_t want[BK_SHA256_LEN])
{
	uint8_t *data = malloc(size);
	uint64_t n = bk_chunks_count(size);
	uint8_t *list = malloc(n * BK_SHA256_LEN);

	assert_non_null(data);
	assert_non_null(list);
	for (uint64_t i = 0; i < size; i++)
		data[i] = (uint8_t) ((i * 2654435761u) >> 13);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = i * MIB;

		assert_int_equal(bk_sha256_buf(data + off, size - off < MIB ? size - off : MIB,
					       list + i * BK_SHA256_LEN),
				 0);
	}
	assert_int_equal(bk_sha256_buf(list, n * BK_SHA256_LEN, want), 0);
	*ret_list = list;
	*ret_len = n * BK_SHA256_LEN;
	return data;
}

static void test_chunks_sizes(void **state)
{
	uint64_t len;

	assert_int_equal(BK_CHUNK_SIZE, MIB);
	assert_int_equal(bk_chunks_count(0), 0);
	assert_int_equal(bk_chunks_count(1), 1);
	assert_int_equal(bk_chunks_count(MIB - 1), 1);
	assert_int_equal(bk_chunks_count(MIB), 1);
	assert_int_equal(bk_chunks_count(MIB + 1), 2);
	assert_int_equal(bk_chunks_count(UINT64_C(1) << 62), UINT64_C(1) << 42);
	assert_int_equal(bk_chunks_count(UINT64_MAX), (UINT64_C(1) << 44));
	assert_int_equal(bk_chunks_list_size(3 * MIB + 17, &len), 0);
	assert_int_equal(len, 4 * 32);
	assert_int_equal(bk_chunks_list_size(UINT64_C(1) << 62, &len), 0);
	assert_int_equal(len, UINT64_C(1) << 47);
	assert_int_equal(bk_chunks_list_size(UINT64_MAX, &len), 0); /* 2^44 * 32: fits */
}

static void test_chunks_parse_and_ranges(void **state)
{
	_cleanup_(bk_chunks_freep) struct bk_chunks *c = NULL;
	uint64_t sizes[] = { 1, 4096, MIB - 1, MIB, MIB + 1, 3 * MIB + 17 };
	struct bk_err err = { 0 };

	for (size_t s = 0; s < BK_ELEMENTSOF(sizes); s++) {
		uint8_t want[BK_SHA256_LEN], *list;
		size_t len;
		uint8_t *data = make(sizes[s], &list, &len, want);
		uint64_t off, total = 0;
		size_t clen;

		c = bk_chunks_free(c);
		assert_int_equal(bk_chunks_parse(list, len, sizes[s], want, &c, &err), 0);
		assert_int_equal(c->n_chunks, bk_chunks_count(sizes[s]));
		for (uint64_t i = 0; i < c->n_chunks; i++) {
			assert_int_equal(bk_chunks_range(c, i, &off, &clen), 0);
			assert_int_equal(off, i * MIB);
			/* Every chunk is whole except the last, which ends with the payload. */
			if (i + 1 < c->n_chunks)
				assert_int_equal(clen, MIB);
			else
				assert_int_equal(off + clen, sizes[s]);
			total += clen;
			assert_int_equal(bk_chunks_check(c, i, data + off, clen, &err), 0);
			assert_true(bk_chunks_has(c, i, list + i * BK_SHA256_LEN));
		}
		assert_int_equal(total, sizes[s]);
		/* Bounds: one past the last chunk, a wrong length. */
		assert_int_equal(bk_chunks_range(c, c->n_chunks, &off, &clen), -ERANGE);
		bk_err_clear(&err);
		assert_int_equal(bk_chunks_check(c, c->n_chunks, data, 1, &err), -ERANGE);
		assert_false(bk_chunks_has(c, c->n_chunks, list));
		assert_false(bk_chunks_has(c, UINT64_MAX, list));
		bk_err_clear(&err);
		assert_int_equal(bk_chunks_range(c, c->n_chunks - 1, &off, &clen), 0);
		assert_int_equal(bk_chunks_check(c, c->n_chunks - 1, data + off, clen - 1, &err),
				 -ENOEXEC);
		assert_non_null(strstr(err.msg, "bytes, expected"));
		free(data);
		free(list);
	}
}

/* The length is checked against the payload size before anything else. */
static void test_chunks_length_checked_first(void **state)
{
	_cleanup_(bk_chunks_freep) struct bk_chunks *c = NULL;
	uint8_t want[BK_SHA256_LEN], *list;
	struct bk_err err = { 0 };
	size_t len;
	uint8_t *data = make(2 * MIB + 1, &list, &len, want);

	assert_int_equal(len, 3 * 32);
	for (size_t l = 0; l <= len + 32; l++) {
		int r;

		bk_err_clear(&err);
		r = bk_chunks_parse(list, l, 2 * MIB + 1, want, &c, &err);
		if (l == len) {
			assert_int_equal(r, 0);
			c = bk_chunks_free(c);
			continue;
		}
		assert_int_equal(r, -ENOEXEC);
		assert_null(c);
		assert_non_null(strstr(err.msg, "expected 96 for a payload of 2097153 bytes"));
	}
	/* The right list for another size: refused by length, never by digest. */
	bk_err_clear(&err);
	assert_int_equal(bk_chunks_parse(list, len, 2 * MIB, want, &c, &err), -ENOEXEC);
	assert_int_equal(bk_chunks_parse(list, len, 3 * MIB + 1, want, &c, &err), -ENOEXEC);
	assert_int_equal(bk_chunks_parse(list, len, 3 * MIB, want, &c, &err), 0);
	c = bk_chunks_free(c);
	bk_err_clear(&err);
	assert_int_equal(bk_chunks_parse(list, 0, 0, want, &c, &err), -ENOEXEC);
	free(data);
	free(list);
}

/* A flipped bit anywhere in the list, or in any byte of a chunk, is caught and located. */
static void test_chunks_corruption_everywhere(void **state)
{
	_cleanup_(bk_chunks_freep) struct bk_chunks *c = NULL;
	uint8_t want[BK_SHA256_LEN], *list;
	struct bk_err err = { 0 };
	uint64_t size = 2 * MIB + 4099;
	size_t len;
	uint8_t *data = make(size, &list, &len, want);

	for (size_t i = 0; i < len; i++)
		for (unsigned bit = 0; bit < 8; bit++) {
			list[i] ^= (uint8_t) (1u << bit);
			bk_err_clear(&err);
			assert_int_equal(bk_chunks_parse(list, len, size, want, &c, &err),
					 -EUCLEAN);
			assert_non_null(strstr(err.msg, "chunk list SHA-256 mismatch"));
			list[i] ^= (uint8_t) (1u << bit);
		}
	assert_int_equal(bk_chunks_parse(list, len, size, want, &c, &err), 0);
	/*
	 * Positions through the payload (every 4093rd byte: a SHA-256 of 1 MiB per position, so
	 * not all 2 million; and the first two and last two bytes of every chunk): exactly its
	 * chunk fails, the others pass.
	 */
	for (uint64_t step = 0; step < size / 4093 + 4 * c->n_chunks; step++) {
		uint64_t n_stride = size / 4093, pos, k, off;
		size_t clen;
		char needle[64];

		if (step < n_stride)
			pos = step * 4093;
		else {
			uint64_t b = step - n_stride, ck = b / 4, which = b % 4;

			assert_int_equal(bk_chunks_range(c, ck, &off, &clen), 0);
			pos = which < 2 ? off + which : off + clen - (4 - which);
		}
		k = pos / MIB;
		data[pos] ^= 0x10;
		assert_int_equal(bk_chunks_range(c, k, &off, &clen), 0);
		bk_err_clear(&err);
		if (bk_chunks_check(c, k, data + off, clen, &err) != -EUCLEAN)
			fail_msg("byte %llu not caught", (unsigned long long) pos);
		snprintf(needle, sizeof(needle), "chunk %llu (offset %llu): SHA-256 mismatch",
			 (unsigned long long) k, (unsigned long long) off);
		assert_non_null(strstr(err.msg, needle));
		if (step % 64 == 0)
			for (uint64_t j = 0; j < c->n_chunks; j++)
				if (j != k) {
					assert_int_equal(bk_chunks_range(c, j, &off, &clen), 0);
					assert_int_equal(
						bk_chunks_check(c, j, data + off, clen, &err), 0);
				}
		data[pos] ^= 0x10;
	}
	free(data);
	free(list);
}

static void test_chunks_digest_fd(void **state)
{
	struct bk_test_dir *dir = *state;
	uint8_t want[BK_SHA256_LEN], got[BK_SHA256_LEN], *list;
	struct bk_err err = { 0 };
	size_t len;
	uint64_t size = 2 * MIB + 5;
	uint8_t *data = make(size, &list, &len, want);
	int fd = openat(dir->dfd, "p", O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, size), (ssize_t) size);
	assert_int_equal(bk_chunks_digest_fd(fd, size, got, &err), 0);
	assert_memory_equal(got, want, BK_SHA256_LEN);
	assert_int_equal(bk_chunks_digest_fd(fd, size + 1, got, &err), -ENOEXEC);
	close(fd);
	free(data);
	free(list);
}

/* A list of n chunks whose digest i is the SHA-256 of (tag, ids[i]). */
static struct bk_chunks *fake_list(uint64_t n, uint32_t tag, const uint32_t *ids)
{
	struct bk_chunks *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->n_chunks = n;
	c->payload_size = n * MIB;
	c->digests = calloc(n ? n : 1, BK_SHA256_LEN);
	assert_non_null(c->digests);
	for (uint64_t i = 0; i < n; i++) {
		uint32_t v[2] = { tag, ids ? ids[i] : (uint32_t) i };

		assert_int_equal(bk_sha256_buf(v, sizeof(v), c->digests[i]), 0);
	}
	return c;
}

/*
 * The index of several lists (delta staging): every digest found where it is, a digest that
 * several chunks carry at the first of them, lists left out (NULL) and digests of no list not
 * found; digests that share their first 8 bytes (the slot) are told apart.
 */
static void test_chunk_index(void **state)
{
	_cleanup_(bk_chunk_index_freep) struct bk_chunk_index *x = NULL;
	uint32_t ids_c[500];
	struct bk_chunks *a = fake_list(1000, 1, NULL), *c;
	const struct bk_chunks *lists[3];
	uint8_t d[BK_SHA256_LEN];
	uint64_t chunk;
	size_t list;

	/* c: chunks 0..249 are new, 250..499 carry a's digests 0..249 ... and c[499] == c[0]. */
	for (uint32_t i = 0; i < 500; i++)
		ids_c[i] = i < 250 ? 5000 + i : i - 250;
	c = fake_list(500, 1, ids_c);
	for (uint32_t i = 0; i < 250; i++) {
		uint32_t v[2] = { 3, 5000 + i };

		assert_int_equal(bk_sha256_buf(v, sizeof(v), c->digests[i]), 0);
	}
	memcpy(c->digests[499], c->digests[0], BK_SHA256_LEN);
	lists[0] = a;
	lists[1] = NULL;
	lists[2] = c;
	assert_int_equal(bk_chunk_index_new(lists, 3, &x), 0);
	assert_int_equal(bk_chunk_index_size(x), 1000 + 250);
	for (uint64_t i = 0; i < 1000; i++) {
		assert_true(bk_chunk_index_find(x, a->digests[i], &list, &chunk));
		assert_int_equal(list, 0);
		assert_int_equal(chunk, i);
	}
	for (uint64_t i = 0; i < 500; i++) {
		assert_true(bk_chunk_index_find(x, c->digests[i], &list, &chunk));
		if (i < 250 || i == 499) {
			assert_int_equal(list, 2);
			assert_int_equal(chunk, i == 499 ? 0 : i);
		} else {
			assert_int_equal(list, 0); /* a's chunk, the first with the digest */
			assert_int_equal(chunk, i - 250);
		}
	}
	memset(d, 0, sizeof(d));
	assert_false(bk_chunk_index_find(x, d, &list, &chunk));
	x = bk_chunk_index_free(x);

	/* Only the lists given: nothing of c when c is left out. */
	assert_int_equal(bk_chunk_index_new(lists, 2, &x), 0);
	assert_false(bk_chunk_index_find(x, c->digests[0], &list, &chunk));
	x = bk_chunk_index_free(x);

	/* 300 digests alike in their first 8 bytes (one slot), different after. */
	for (uint64_t i = 0; i < 300; i++) {
		memset(a->digests[i], 0xab, 8);
		a->digests[i][31] = (uint8_t) i;
		a->digests[i][30] = (uint8_t) (i >> 8);
	}
	assert_int_equal(bk_chunk_index_new(lists, 1, &x), 0);
	for (uint64_t i = 0; i < 1000; i++) {
		assert_true(bk_chunk_index_find(x, a->digests[i], &list, &chunk));
		assert_int_equal(chunk, i);
	}
	memset(d, 0xab, sizeof(d));
	assert_false(bk_chunk_index_find(x, d, &list, &chunk));
	x = bk_chunk_index_free(x);

	/* No list at all: an empty index finds nothing. */
	assert_int_equal(bk_chunk_index_new(lists, 0, &x), 0);
	assert_int_equal(bk_chunk_index_size(x), 0);
	assert_false(bk_chunk_index_find(x, d, &list, &chunk));
	bk_chunks_free(a);
	bk_chunks_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunks_sizes),
		cmocka_unit_test(test_chunks_parse_and_ranges),
		cmocka_unit_test(test_chunks_length_checked_first),
		cmocka_unit_test(test_chunks_corruption_everywhere),
		cmocka_unit_test(test_chunk_index),
		cmocka_unit_test_setup_teardown(test_chunks_digest_fd, bk_test_dir_setup,
						bk_test_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
