/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

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

int bk_sha256_fd_range(int fd, uint64_t offset, uint64_t size, uint8_t ret[BK_SHA256_LEN],
		       struct bk_err *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct bk_sha256 h = { NULL };
	uint64_t done = 0;
	int r;

	if (offset > UINT64_MAX - size)
		return bk_err_set(err, -EOVERFLOW, "range %llu+%llu overflows",
				  (unsigned long long) offset, (unsigned long long) size);

	buf = malloc(BK_SHA256_CHUNK);
	if (!buf)
		return bk_err_set(err, -ENOMEM, "out of memory");
	(void) posix_fadvise(fd, (off_t) offset, (off_t) size, POSIX_FADV_SEQUENTIAL);

	r = bk_sha256_init(&h);
	if (r < 0)
		return bk_err_set(err, r, "cannot start SHA-256");

	while (done < size) {
		size_t want =
			size - done > BK_SHA256_CHUNK ? BK_SHA256_CHUNK : (size_t) (size - done);
		ssize_t n = bk_pread_full(fd, buf, want, offset + done);

		if (n < 0) {
			bk_sha256_release(&h);
			return bk_err_set(err, (int) n, "read error at offset %llu: %m",
					  (unsigned long long) (offset + done));
		}
		if ((size_t) n < want) {
			bk_sha256_release(&h);
			return bk_err_set(
				err, -ENOEXEC,
				"truncated: %llu bytes expected at offset %llu, file ends "
				"after %llu",
				(unsigned long long) size, (unsigned long long) offset,
				(unsigned long long) (done + (uint64_t) n));
		}
		r = bk_sha256_update(&h, buf, (size_t) n);
		if (r < 0) {
			bk_sha256_release(&h);
			return bk_err_set(err, r, "SHA-256 update failed");
		}
		done += (uint64_t) n;
	}
	r = bk_sha256_final(&h, ret);
	if (r < 0)
		return bk_err_set(err, r, "SHA-256 final failed");
	BK_DBG(CRYPTO, "hashed %llu bytes at %llu", (unsigned long long) size,
	       (unsigned long long) offset);
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
