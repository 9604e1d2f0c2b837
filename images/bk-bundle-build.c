/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Building and re-signing bundles: layout, hash-while-copy into a temp file, sign, rename. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk-bundle.h"
#include "bk-fs.h"
#include "bk-log.h"
#include "bk-probe.h"
#include "bk-sha256.h"

/* Room left for the signature to differ in size between the trial and the real signing. */
#define SIG_SLACK 1024

/* Where each payload's bytes come from. */
struct source {
	int fd;
	uint64_t offset;
	bool check; /* compare with the manifest's sha256 (re-sign) instead of recording it */
};

static uint64_t align_up(uint64_t v)
{
	return (v + BK_BUNDLE_ALIGN - 1) & ~(uint64_t) (BK_BUNDLE_ALIGN - 1);
}

static int sign(const char *buf, size_t len, const struct bk_bundle_signer *s, uint8_t **ret,
		size_t *ret_len, struct bk_err *err)
{
	int r = bk_cms_sign(buf, len, s->key, s->cert, s->intermediates, ret, ret_len, err);

	if (r < 0)
		return bk_err_prefix(err, "cannot sign");
	return 0;
}

/*
 * Pick the payload offset: sign a manifest of the final length once to learn the signature's
 * size, then find the smallest aligned offset that leaves room for header, manifest and
 * signature (plus slack). Offsets change the manifest's length, hence the loop (two rounds in
 * practice). Leaves the offsets assigned in m.
 */
static int compute_layout(struct bk_manifest *m, const struct bk_bundle_signer *s,
			  uint64_t *ret_payload_offset, uint64_t *ret_end, struct bk_err *err)
{
	uint64_t pos = BK_BUNDLE_ALIGN, end = 0;
	size_t sig_len = 0;
	int r;

	for (unsigned round = 0; round < 16; round++) {
		_cleanup_free_ char *buf = NULL;
		_cleanup_free_ uint8_t *sig = NULL;
		uint64_t need;
		size_t len;

		r = bk_manifest_assign_offsets(m, pos, &end);
		if (r >= 0)
			r = bk_manifest_assign_chunks(m, &end);
		if (r < 0)
			return bk_err_set(err, -ENOEXEC, "payloads too large for a bundle");
		r = bk_manifest_serialise(m, &buf, &len, err);
		if (r < 0)
			return r;
		if (len > BK_MANIFEST_MAX_SIZE)
			return bk_err_set(err, -ENOEXEC,
					  "manifest too large (%zu bytes, at most %d)", len,
					  BK_MANIFEST_MAX_SIZE);
		if (sig_len == 0) {
			r = sign(buf, len, s, &sig, &sig_len, err);
			if (r < 0)
				return r;
		}
		need = align_up(BK_BUNDLE_HEADER_SIZE + len + sig_len + SIG_SLACK);
		if (need <= pos) {
			*ret_payload_offset = pos;
			*ret_end = end;
			return 0;
		}
		pos = need;
	}
	return bk_err_set(err, -EIO, "cannot settle the bundle layout");
}

/* Map a probed filesystem name to ours; _BK_FS_INVALID when not a payload filesystem. */
static int probe_fs(int fd, const char *source, enum bk_payload_fs *ret, struct bk_err *err)
{
	struct bk_probe_content c = { 0 };
	enum bk_payload_fs fs;
	int r;

	r = bk_probe_content_fd(fd, &c, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot probe '%s'", source);
	fs = c.fstype ? bk_payload_fs_from_string(c.fstype) : _BK_FS_INVALID;
	if (fs == BK_FS_RAW)
		fs = _BK_FS_INVALID;
	if (fs < 0)
		r = bk_err_set(err, -EMEDIUMTYPE,
			       "source '%s' holds no squashfs, erofs or ext4 filesystem%s%s%s",
			       source, c.fstype ? " (found '" : "", c.fstype ? c.fstype : "",
			       c.fstype ? "')" : "");
	bk_probe_content_release(&c);
	if (r < 0)
		return r;
	*ret = fs;
	return 0;
}

static int write_all_at(int fd, const void *buf, size_t len, uint64_t offset)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t) offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t) n;
		offset += (uint64_t) n;
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/*
 * Format 2: copy p in chunks, hash each one (and the whole payload), write its list at
 * p->chunks_offset; the whole payload's SHA-256 goes to ret, the list's to ret_chunks (what
 * the manifest signs). Zero chunks stay holes.
 */
static int copy_chunked(const struct bk_payload *p, const struct source *src, int fd,
			uint8_t ret[BK_SHA256_LEN], uint8_t ret_chunks[BK_SHA256_LEN],
			struct bk_err *err)
{
	_cleanup_free_ uint8_t *buf = NULL, *list = NULL;
	uint64_t n = bk_chunks_count(p->size), list_len;
	struct bk_sha256 whole = { NULL };
	int r;

	if (bk_chunks_list_size(p->size, &list_len) < 0 || list_len > SIZE_MAX)
		return bk_err_set(err, -EOVERFLOW, "payload too large");
	buf = bk_alloc_pages(BK_CHUNK_SIZE);
	list = malloc(list_len);
	if (!buf || !list)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = bk_sha256_init(&whole);
	if (r < 0)
		return bk_err_set(err, r, "cannot start SHA-256");
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = i * BK_CHUNK_SIZE;
		size_t len =
			(size_t) (p->size - off < BK_CHUNK_SIZE ? p->size - off : BK_CHUNK_SIZE);
		ssize_t got = bk_pread_full(src->fd, buf, len, src->offset + off);

		if (got < 0)
			return bk_err_set(err, (int) got, "read error at offset %llu: %m",
					  (unsigned long long) (src->offset + off));
		if ((size_t) got != len)
			r = bk_err_set(err, -EIO, "the source shrank while it was read");
		else if (bk_sha256_buf(buf, len, list + i * BK_SHA256_LEN) < 0 ||
			 bk_sha256_update(&whole, buf, len) < 0)
			r = bk_err_set(err, -EIO, "SHA-256 failed");
		else if (!all_zero(buf, len)) {
			r = write_all_at(fd, buf, len, p->offset + off);
			if (r < 0)
				(void) bk_err_set(err, r, "write error: %m");
		}
		if (r < 0) {
			bk_sha256_release(&whole);
			return r;
		}
	}
	r = bk_sha256_final(&whole, ret);
	if (r < 0)
		return bk_err_set(err, r, "SHA-256 failed");
	r = write_all_at(fd, list, list_len, p->chunks_offset);
	if (r < 0)
		return bk_err_set(err, r, "cannot write the chunk list: %m");
	r = bk_sha256_buf(list, list_len, ret_chunks);
	if (r < 0)
		return bk_err_set(err, r, "SHA-256 failed");
	return 0;
}

/* Copy every payload into fd at its (already assigned) offset, hashing on the way. */
static int copy_payloads(struct bk_manifest *m, const struct source *src, int fd,
			 struct bk_err *err)
{
	for (size_t i = 0; i < m->n_payloads; i++) {
		struct bk_payload *p = &m->payloads[i];
		uint8_t d[BK_SHA256_LEN], dc[BK_SHA256_LEN];
		int r;

		if (m->format >= 2)
			r = copy_chunked(p, &src[i], fd, d, dc, err);
		else
			r = bk_sha256_fd_copy(src[i].fd, src[i].offset, p->size, fd, p->offset,
					      BK_SHA256_COPY_SPARSE, d, err);
		if (r < 0)
			return bk_err_prefix(err, "payload '%s'", p->name);
		if (src[i].check &&
		    (memcmp(d, p->sha256, BK_SHA256_LEN) != 0 ||
		     (m->format >= 2 && memcmp(dc, p->chunks_sha256, BK_SHA256_LEN) != 0)))
			return bk_err_set(err, -EUCLEAN,
					  "payload '%s': SHA-256 mismatch (corrupt payload) in the "
					  "input bundle",
					  p->name);
		memcpy(p->sha256, d, BK_SHA256_LEN);
		if (m->format >= 2)
			memcpy(p->chunks_sha256, dc, BK_SHA256_LEN);
	}
	return 0;
}

/* Lay out, copy, sign and write the bundle for m into fd (a fresh temp file). */
static int assemble(struct bk_manifest *m, const struct source *src,
		    const struct bk_bundle_signer *s, int fd, struct bk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	_cleanup_free_ uint8_t *sig = NULL;
	uint8_t hdr[BK_BUNDLE_HEADER_SIZE];
	struct bk_bundle_header h = { 0 };
	uint64_t payload_offset = 0, end = 0, sig_end;
	size_t len, sig_len;
	int r;

	r = compute_layout(m, s, &payload_offset, &end, err);
	if (r < 0)
		return r;
	r = copy_payloads(m, src, fd, err);
	if (r < 0)
		return r;
	r = bk_manifest_validate(m, err);
	if (r < 0)
		return bk_err_prefix(err, "manifest");
	r = bk_manifest_serialise(m, &buf, &len, err);
	if (r < 0)
		return r;
	r = sign(buf, len, s, &sig, &sig_len, err);
	if (r < 0)
		return r;

	h.format_version = (uint32_t) m->format;
	h.header_size = BK_BUNDLE_HEADER_SIZE;
	h.manifest_offset = BK_BUNDLE_HEADER_SIZE;
	h.manifest_size = len;
	h.signature_offset = h.manifest_offset + len;
	h.signature_size = sig_len;
	h.payload_offset = payload_offset;
	sig_end = h.signature_offset + sig_len;
	if (sig_end > payload_offset || payload_offset - sig_end > BK_BUNDLE_MAX_SIG_PAD)
		return bk_err_set(
			err, -EIO,
			"the signature (%zu bytes) does not fit the space reserved for it",
			sig_len);
	bk_bundle_header_encode(&h, hdr);

	r = write_all_at(fd, hdr, sizeof(hdr), 0);
	if (r >= 0)
		r = write_all_at(fd, buf, len, h.manifest_offset);
	if (r >= 0)
		r = write_all_at(fd, sig, sig_len, h.signature_offset);
	if (r < 0)
		return bk_err_set(err, r, "cannot write: %m");
	/*
	 * Padding is left as holes (reads as zero); the file ends at the last payload (format 2:
	 * at the end of the chunk table after it).
	 */
	if (ftruncate(fd, (off_t) end) < 0)
		return bk_err_set(err, -errno, "cannot set the size: %m");
	BK_DBG(BUNDLE,
	       "assembled bundle: manifest %zu, signature %zu, payloads at %llu, %llu bytes", len,
	       sig_len, (unsigned long long) payload_offset, (unsigned long long) end);
	return 0;
}

/* Run assemble() into a temp file beside (dfd, name), then fsync and rename it over name. */
static int write_atomically(struct bk_manifest *m, const struct source *src,
			    const struct bk_bundle_signer *s, int dfd, const char *name,
			    struct bk_err *err)
{
	char tmp[NAME_MAX + 1], rnd[17];
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (!bk_filename_is_valid(name) || strlen(name) + 20 > NAME_MAX)
		return bk_err_set(err, -EINVAL, "invalid output name '%s'", name);
	for (unsigned attempt = 0;; attempt++) {
		r = bk_random_hex(rnd, 16);
		if (r < 0)
			return bk_err_set(err, r, "cannot make a temp name: %m");
		(void) snprintf(tmp, sizeof(tmp), BK_TMP_PREFIX "%s.%s", name, rnd);
		fd = openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd >= 0 || errno != EEXIST || attempt > 16)
			break;
	}
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot create '%s': %m", tmp);

	r = assemble(m, src, s, fd, err);
	if (r < 0)
		goto fail;
	if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) {
		r = bk_err_set(err, -errno, "cannot sync '%s': %m", tmp);
		goto fail;
	}
	r = close(TAKE_FD(fd));
	if (r < 0) {
		r = bk_err_set(err, -errno, "cannot close '%s': %m", tmp);
		goto fail;
	}
	if (renameat(dfd, tmp, dfd, name) < 0) {
		r = bk_err_set(err, -errno, "cannot rename '%s' to '%s': %m", tmp, name);
		goto fail;
	}
	r = bk_fsync_dir(dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the directory of '%s': %m", name);
	return 0;

fail:
	(void) unlinkat(dfd, tmp, 0);
	return r;
}

static void close_sources(struct source *src, size_t n)
{
	for (size_t i = 0; src && i < n; i++)
		if (src[i].fd >= 0)
			(void) close(src[i].fd);
	free(src);
}

int bk_bundle_build(const char *spec, size_t spec_len, int src_dfd, const char *created,
		    const struct bk_bundle_signer *signer, int out_dfd, const char *out_name,
		    struct bk_err *err)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	struct source *src = NULL;
	int r;

	r = bk_manifest_parse(spec, spec_len, BK_MANIFEST_PARSE_SPEC, &m, err);
	if (r < 0)
		return bk_err_prefix(err, "spec");
	if (!m->created) {
		if (!created)
			return bk_err_set(err, -ENOEXEC, "spec: missing field 'created'");
		m->created = strdup(created);
		if (!m->created)
			return bk_err_set(err, -ENOMEM, "out of memory");
	}

	src = calloc(m->n_payloads, sizeof(*src));
	if (!src)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_payloads; i++)
		src[i].fd = -EBADF;

	for (size_t i = 0; i < m->n_payloads; i++) {
		struct bk_payload *p = &m->payloads[i];
		bool want_fs = p->type == BK_PAYLOAD_ROOTFS || p->type == BK_PAYLOAD_COMPONENT;
		struct stat st;

		src[i].fd = openat(src_dfd, p->source, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (src[i].fd < 0) {
			r = bk_err_set(err, -errno, "payload '%s': cannot open source '%s': %m",
				       p->name, p->source);
			goto out;
		}
		if (fstat(src[i].fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
			r = bk_err_set(err, -ENOEXEC,
				       "payload '%s': source '%s' is not a non-empty regular file",
				       p->name, p->source);
			goto out;
		}
		p->size = (uint64_t) st.st_size;
		if (want_fs) {
			enum bk_payload_fs fs = _BK_FS_INVALID;

			r = probe_fs(src[i].fd, p->source, &fs, err);
			if (r < 0) {
				(void) bk_err_prefix(err, "payload '%s'", p->name);
				goto out;
			}
			if (p->fs >= 0 && p->fs != fs) {
				r = bk_err_set(err, -EMEDIUMTYPE,
					       "payload '%s': source '%s' is %s, the spec says %s",
					       p->name, p->source, bk_payload_fs_to_string(fs),
					       bk_payload_fs_to_string(p->fs));
				goto out;
			}
			p->fs = fs;
		} else if (p->fs < 0)
			p->fs = BK_FS_RAW;
		free(p->source);
		p->source = NULL;
	}
	r = write_atomically(m, src, signer, out_dfd, out_name, err);
out:
	close_sources(src, m->n_payloads);
	return r;
}

int bk_bundle_resign(int in_fd, const struct bk_bundle_signer *signer, int out_dfd,
		     const char *out_name, struct bk_err *err)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	_cleanup_free_ struct source *src = NULL;
	const char *bytes;
	size_t len;
	int r;

	r = bk_bundle_open_fd(in_fd, &b, err);
	if (r < 0)
		return r;
	r = bk_bundle_load_manifest(b, err);
	if (r < 0)
		return r;
	/* A private copy to re-lay out. */
	bytes = bk_bundle_get_manifest_bytes(b, &len);
	r = bk_manifest_parse(bytes, len, 0, &m, err);
	if (r < 0)
		return bk_err_prefix(err, "manifest");
	src = calloc(m->n_payloads, sizeof(*src));
	if (!src)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_payloads; i++)
		src[i] = (struct source){ .fd = bk_bundle_get_fd(b),
					  .offset = m->payloads[i].offset,
					  .check = true };
	return write_atomically(m, src, signer, out_dfd, out_name, err);
}
