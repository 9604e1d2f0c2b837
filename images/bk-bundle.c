/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "bk-bundle.h"
#include "bk-fs.h"
#include "bk-log.h"
#include "bk-sha256.h"

struct bk_bundle {
	int fd;
	uint64_t file_size;
	struct bk_bundle_header header;
	char *manifest_bytes; /* manifest_size bytes + NUL */
	uint8_t *signature;   /* signature_size bytes */
	struct bk_manifest *manifest;
	bool signature_verified;
	char *signer;
};

/* ---- header ----------------------------------------------------------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

void bk_bundle_header_encode(const struct bk_bundle_header *h, uint8_t out[BK_BUNDLE_HEADER_SIZE])
{
	memset(out, 0, BK_BUNDLE_HEADER_SIZE);
	memcpy(out, BK_BUNDLE_MAGIC, BK_BUNDLE_MAGIC_LEN);
	put_le32(out + 8, h->format_version);
	put_le32(out + 12, h->header_size);
	put_le64(out + 16, h->manifest_offset);
	put_le64(out + 24, h->manifest_size);
	put_le64(out + 32, h->signature_offset);
	put_le64(out + 40, h->signature_size);
	put_le64(out + 48, h->payload_offset);
	put_le64(out + 56, h->flags);
	(void) bk_sha256_buf(out, 64, out + 64);
}

int bk_bundle_header_decode(const uint8_t *buf, size_t len, uint64_t file_size,
			    struct bk_bundle_header *ret, struct bk_err *err)
{
	struct bk_bundle_header h;
	uint8_t sum[BK_SHA256_LEN];
	uint64_t sig_end;

	if (len < BK_BUNDLE_HEADER_SIZE || file_size < BK_BUNDLE_HEADER_SIZE)
		return bk_err_set(err, -ENOEXEC, "truncated: %llu bytes, shorter than the header",
				  (unsigned long long) (file_size < len ? file_size : len));
	if (memcmp(buf, BK_BUNDLE_MAGIC, BK_BUNDLE_MAGIC_LEN) != 0)
		return bk_err_set(err, -ENOEXEC, "bad magic: not an image bundle");
	if (bk_sha256_buf(buf, 64, sum) < 0)
		return bk_err_set(err, -ENOMEM, "cannot compute the header checksum");
	if (memcmp(sum, buf + 64, BK_SHA256_LEN) != 0)
		return bk_err_set(err, -ENOEXEC, "header checksum mismatch");
	for (size_t i = 96; i < BK_BUNDLE_HEADER_SIZE; i++)
		if (buf[i] != 0)
			return bk_err_set(err, -ENOEXEC, "reserved header byte %zu is not zero", i);

	h.format_version = get_le32(buf + 8);
	h.header_size = get_le32(buf + 12);
	h.manifest_offset = get_le64(buf + 16);
	h.manifest_size = get_le64(buf + 24);
	h.signature_offset = get_le64(buf + 32);
	h.signature_size = get_le64(buf + 40);
	h.payload_offset = get_le64(buf + 48);
	h.flags = get_le64(buf + 56);

	if (h.format_version < BK_BUNDLE_FORMAT_MIN || h.format_version > BK_BUNDLE_FORMAT)
		return bk_err_set(err, -ENOEXEC, "unsupported format version %u", h.format_version);
	if (h.header_size != BK_BUNDLE_HEADER_SIZE)
		return bk_err_set(err, -ENOEXEC, "header size %u, expected %d", h.header_size,
				  BK_BUNDLE_HEADER_SIZE);
	if (h.flags != 0)
		return bk_err_set(err, -ENOEXEC, "unknown header flags 0x%llx",
				  (unsigned long long) h.flags);
	if (h.manifest_offset != h.header_size)
		return bk_err_set(err, -ENOEXEC, "manifest offset %llu, expected %u",
				  (unsigned long long) h.manifest_offset, h.header_size);
	if (h.manifest_size < 2 || h.manifest_size > BK_MANIFEST_MAX_SIZE)
		return bk_err_set(err, -ENOEXEC, "manifest size %llu out of range (2..%d)",
				  (unsigned long long) h.manifest_size, BK_MANIFEST_MAX_SIZE);
	if (h.signature_offset != h.manifest_offset + h.manifest_size)
		return bk_err_set(err, -ENOEXEC,
				  "signature offset %llu does not follow the manifest (%llu)",
				  (unsigned long long) h.signature_offset,
				  (unsigned long long) (h.manifest_offset + h.manifest_size));
	if (h.signature_size < 1 || h.signature_size > BK_CMS_MAX_DER)
		return bk_err_set(err, -ENOEXEC, "signature size %llu out of range (1..%d)",
				  (unsigned long long) h.signature_size, BK_CMS_MAX_DER);
	sig_end = h.signature_offset + h.signature_size;
	if (h.payload_offset % BK_BUNDLE_ALIGN != 0 || h.payload_offset < sig_end ||
	    h.payload_offset - sig_end > BK_BUNDLE_MAX_SIG_PAD)
		return bk_err_set(err, -ENOEXEC,
				  "payload offset %llu is not an aligned offset within %d bytes "
				  "after the signature (%llu)",
				  (unsigned long long) h.payload_offset, BK_BUNDLE_MAX_SIG_PAD,
				  (unsigned long long) sig_end);
	if (sig_end > file_size)
		return bk_err_set(err, -ENOEXEC,
				  "truncated: the signature ends at %llu, the file at %llu",
				  (unsigned long long) sig_end, (unsigned long long) file_size);
	if (h.payload_offset >= file_size)
		return bk_err_set(
			err, -ENOEXEC, "truncated: payloads start at %llu, the file ends at %llu",
			(unsigned long long) h.payload_offset, (unsigned long long) file_size);
	*ret = h;
	return 0;
}

#define FUSE_SUPER_MAGIC 0x65735546 /* <linux/magic.h> */

/* ---- opening ---------------------------------------------------------------------------- */

static int read_exact(int fd, void *buf, size_t len, uint64_t offset, const char *what,
		      struct bk_err *err)
{
	ssize_t n = bk_pread_full(fd, buf, len, offset);

	if (n < 0)
		return bk_err_set(err, (int) n, "cannot read the %s at offset %llu: %m", what,
				  (unsigned long long) offset);
	if ((size_t) n != len)
		return bk_err_set(err, -ENOEXEC, "truncated: the %s ends early at offset %llu",
				  what, (unsigned long long) (offset + (uint64_t) n));
	return 0;
}

/* The bytes [from, to) of fd must be zero (at most BK_BUNDLE_ALIGN-1 or MAX_SIG_PAD). */
static int check_zero(int fd, uint64_t from, uint64_t to, const char *what, struct bk_err *err)
{
	uint8_t buf[4096];

	while (from < to) {
		size_t n = to - from > sizeof(buf) ? sizeof(buf) : (size_t) (to - from);
		int r = read_exact(fd, buf, n, from, what, err);

		if (r < 0)
			return r;
		for (size_t i = 0; i < n; i++)
			if (buf[i] != 0)
				return bk_err_set(err, -ENOEXEC, "%s: non-zero byte at offset %llu",
						  what, (unsigned long long) (from + i));
		from += n;
	}
	return 0;
}

static const char *file_type(mode_t m)
{
	return S_ISFIFO(m) ? "a fifo" :
	       S_ISDIR(m)  ? "a directory" :
	       S_ISCHR(m)  ? "a character device" :
	       S_ISBLK(m)  ? "a block device" :
	       S_ISSOCK(m) ? "a socket" :
	       S_ISLNK(m)  ? "a symbolic link" :
			     "not a file";
}

int bk_bundle_open_path(int dfd, const char *path, int *ret_fd, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	int flags;

	/*
	 * O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one
	 * (and a read would not block either); O_NOCTTY: a terminal never becomes ours.
	 */
	fd = openat(dfd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", path);
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", path);
	if (!S_ISREG(st.st_mode))
		return bk_err_set(err, -ENOEXEC, "'%s' is not a regular file (%s)", path,
				  file_type(st.st_mode));
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return bk_err_set(err, -errno, "cannot clear O_NONBLOCK on '%s': %m", path);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* Who besides root can write an inode with st: NULL when nobody, else a description. */
static const char *other_writer(const struct stat *st, bool dir, char *buf, size_t len)
{
	if (st->st_uid != 0)
		(void) snprintf(buf, len, "its owner (uid %u)", (unsigned) st->st_uid);
	else if ((st->st_mode & S_IWOTH) && !(dir && (st->st_mode & S_ISVTX)))
		(void) snprintf(buf, len, "everyone (mode %04o)", (unsigned) (st->st_mode & 07777));
	else if ((st->st_mode & S_IWGRP) && !(dir && (st->st_mode & S_ISVTX)))
		(void) snprintf(buf, len, "group %u (mode %04o)", (unsigned) st->st_gid,
				(unsigned) (st->st_mode & 07777));
	else
		return NULL;
	return buf;
}

/* Every directory above path (resolved) must be writable by root alone, or sticky. */
static int check_dirs_trusted(const char *path, struct bk_err *err)
{
	_cleanup_free_ char *real = realpath(path, NULL);
	char who[96];
	char *slash;

	if (!real)
		return bk_err_set(err, -errno, "cannot resolve '%s': %m", path);
	for (;;) {
		struct stat st;
		const char *w;

		slash = strrchr(real, '/');
		if (!slash)
			break;
		if (slash == real)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(real, &st) < 0)
			return bk_err_set(err, -errno, "cannot stat '%s': %m", real);
		w = other_writer(&st, true, who, sizeof(who));
		if (w)
			return bk_err_set(
				err, -EPERM,
				"refusing '%s': its directory '%s' can be written by %s, "
				"who could change the bundle; keep bundles where only root "
				"can write",
				path, real, w);
		if (slash == real)
			break;
	}
	return 0;
}

int bk_bundle_check_trusted(int fd, const char *path, struct bk_err *err)
{
	const char *name = path ? path : "the bundle";
	struct stat st, pst;
	struct statfs sfs;
	char who[96];
	const char *w;
	int r;

	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", name);
	if (!S_ISREG(st.st_mode))
		return bk_err_set(err, -ENOEXEC, "'%s' is not a regular file (%s)", name,
				  file_type(st.st_mode));
	/* A FUSE filesystem is a user process: it shows any owner and serves any bytes. */
	if (fstatfs(fd, &sfs) < 0)
		return bk_err_set(err, -errno, "cannot stat the filesystem of '%s': %m", name);
	if (sfs.f_type == FUSE_SUPER_MAGIC)
		return bk_err_set(err, -EPERM,
				  "refusing '%s': it is on a FUSE filesystem, whose process could "
				  "change it after it is verified",
				  name);
	w = other_writer(&st, false, who, sizeof(who));
	if (w)
		return bk_err_set(err, -EPERM,
				  "refusing '%s': it can be written by %s, who could change it "
				  "after it is verified; only root may be able to write a bundle",
				  name, w);
	/*
	 * A writer that opened the file before it became root's keeps its fd: a read lease is
	 * granted only when nobody has the file open for writing (we are root: leases need
	 * ownership or CAP_LEASE). Released at once; filesystems without leases are skipped.
	 */
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0)
		(void) fcntl(fd, F_SETLEASE, F_UNLCK);
	else if (errno == EAGAIN || errno == EBUSY)
		return bk_err_set(err, -EPERM,
				  "refusing '%s': another process has it open for writing", name);
	if (!path)
		return 0;
	if (stat(path, &pst) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", path);
	if (pst.st_dev != st.st_dev || pst.st_ino != st.st_ino)
		return bk_err_set(err, -ESTALE, "'%s' was replaced while it was opened", path);
	r = check_dirs_trusted(path, err);
	if (r < 0)
		return r;
	return 0;
}

int bk_bundle_open_fd(int fd, struct bk_bundle **ret, struct bk_err *err)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	uint8_t hdr[BK_BUNDLE_HEADER_SIZE];
	struct stat st;
	ssize_t n;
	int r;

	b = calloc(1, sizeof(*b));
	if (!b)
		return bk_err_set(err, -ENOMEM, "out of memory");
	b->fd = -EBADF;
	b->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (b->fd < 0)
		return bk_err_set(err, -errno, "cannot duplicate the bundle fd: %m");
	if (fstat(b->fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat the bundle: %m");
	if (!S_ISREG(st.st_mode))
		return bk_err_set(err, -ENOEXEC, "header: not a regular file");
	b->file_size = (uint64_t) st.st_size;

	n = bk_pread_full(b->fd, hdr, sizeof(hdr), 0);
	if (n < 0)
		return bk_err_set(err, (int) n, "header: cannot read: %m");
	r = bk_bundle_header_decode(hdr, (size_t) n, b->file_size, &b->header, err);
	if (r < 0)
		return bk_err_prefix(err, "header");

	b->manifest_bytes = malloc(b->header.manifest_size + 1);
	b->signature = malloc(b->header.signature_size);
	if (!b->manifest_bytes || !b->signature)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = read_exact(b->fd, b->manifest_bytes, b->header.manifest_size, b->header.manifest_offset,
		       "manifest", err);
	if (r < 0)
		return bk_err_prefix(err, "header");
	b->manifest_bytes[b->header.manifest_size] = '\0';
	r = read_exact(b->fd, b->signature, b->header.signature_size, b->header.signature_offset,
		       "signature", err);
	if (r < 0)
		return bk_err_prefix(err, "header");
	r = check_zero(b->fd, b->header.signature_offset + b->header.signature_size,
		       b->header.payload_offset, "padding after the signature", err);
	if (r < 0)
		return bk_err_prefix(err, "header");

	BK_DBG(BUNDLE, "opened bundle: %llu bytes, manifest %llu, signature %llu, payloads at %llu",
	       (unsigned long long) b->file_size, (unsigned long long) b->header.manifest_size,
	       (unsigned long long) b->header.signature_size,
	       (unsigned long long) b->header.payload_offset);
	*ret = TAKE_PTR(b);
	return 0;
}

/* Length of the DER object at der (tag, length, contents), 0 when not a definite-length one. */
static uint64_t der_object_size(const uint8_t *der, uint64_t len)
{
	uint64_t body = 0;
	unsigned n;

	if (len < 2 || der[0] != 0x30) /* SEQUENCE (ContentInfo) */
		return 0;
	if (der[1] < 0x80)
		return 2 + (uint64_t) der[1];
	n = der[1] & 0x7f;
	if (n == 0 || n > 4 || len < 2 + n) /* indefinite (BER) or absurd */
		return 0;
	for (unsigned i = 0; i < n; i++)
		body = body << 8 | der[2 + i];
	return 2 + n + body;
}

int bk_bundle_verify_signature(struct bk_bundle *b, const struct bk_keyring *keyring,
			       unsigned flags, struct bk_err *err)
{
	char *signer = NULL;
	int r;

	b->signature_verified = false;
	if (der_object_size(b->signature, b->header.signature_size) != b->header.signature_size)
		return bk_err_set(err, -EBADMSG,
				  "signature: not one DER object of %llu bytes (corrupt)",
				  (unsigned long long) b->header.signature_size);
	r = bk_cms_verify(b->manifest_bytes, b->header.manifest_size, b->signature,
			  b->header.signature_size, keyring, flags, &signer, err);
	if (r < 0)
		return bk_err_prefix(err, "signature");
	free(b->signer);
	b->signer = signer;
	b->signature_verified = true;
	BK_DBG(BUNDLE, "signature verified, signer %s", signer ? signer : "?");
	return 0;
}

int bk_bundle_load_manifest(struct bk_bundle *b, struct bk_err *err)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	int r;

	r = bk_manifest_parse(b->manifest_bytes, b->header.manifest_size, 0, &m, err);
	if (r < 0)
		return bk_err_prefix(err, "manifest");
	if (m->format != b->header.format_version)
		return bk_err_set(err, -ENOEXEC, "manifest: format %llu, header says %u",
				  (unsigned long long) m->format, b->header.format_version);
	r = bk_manifest_check_layout(m, b->header.payload_offset, b->file_size, err);
	if (r < 0)
		return bk_err_prefix(err, "manifest");
	/*
	 * Structural checks belong here, not to one verb: every verb loads the manifest, so a
	 * bundle malformed in its padding is refused (exit 6) by all of them (issue 17, item 3:
	 * stage, depot import and livepatch apply hash while copying and never read the padding).
	 */
	r = bk_bundle_check_padding(b, m, err);
	if (r < 0)
		return bk_err_prefix(err, "manifest");
	bk_manifest_free(b->manifest);
	b->manifest = TAKE_PTR(m);
	return 0;
}

int bk_bundle_open_verified(int fd, const struct bk_keyring *keyring, unsigned flags,
			    struct bk_bundle **ret, struct bk_err *err)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	int r;

	r = bk_bundle_open_fd(fd, &b, err);
	if (r < 0)
		return r;
	r = bk_bundle_verify_signature(b, keyring, flags, err);
	if (r < 0)
		return r;
	r = bk_bundle_load_manifest(b, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(b);
	return 0;
}

const struct bk_manifest *bk_bundle_get_manifest(const struct bk_bundle *b)
{
	return b->manifest;
}

const struct bk_bundle_header *bk_bundle_get_header(const struct bk_bundle *b)
{
	return &b->header;
}

uint64_t bk_bundle_get_size(const struct bk_bundle *b)
{
	return b->file_size;
}

const char *bk_bundle_get_manifest_bytes(const struct bk_bundle *b, size_t *ret_len)
{
	if (ret_len)
		*ret_len = b->header.manifest_size;
	return b->manifest_bytes;
}

const uint8_t *bk_bundle_get_signature_bytes(const struct bk_bundle *b, size_t *ret_len)
{
	if (ret_len)
		*ret_len = b->header.signature_size;
	return b->signature;
}

const char *bk_bundle_get_signer(const struct bk_bundle *b)
{
	return b->signature_verified ? b->signer : NULL;
}

bool bk_bundle_is_signature_verified(const struct bk_bundle *b)
{
	return b->signature_verified;
}

int bk_bundle_get_fd(const struct bk_bundle *b)
{
	return b->fd;
}

int bk_bundle_next_payload(const struct bk_bundle *b, size_t *it, const struct bk_payload **ret)
{
	if (!b->manifest)
		return -EINVAL;
	if (*it >= b->manifest->n_payloads)
		return 1;
	*ret = &b->manifest->payloads[(*it)++];
	return 0;
}

/* ---- payloads --------------------------------------------------------------------------- */

int bk_bundle_check_digest(const struct bk_payload *p, const uint8_t digest[BK_SHA256_LEN],
			   struct bk_err *err)
{
	char want[BK_SHA256_HEX_LEN + 1], got[BK_SHA256_HEX_LEN + 1];

	if (memcmp(digest, p->sha256, BK_SHA256_LEN) == 0)
		return 0;
	bk_sha256_to_hex(p->sha256, want);
	bk_sha256_to_hex(digest, got);
	return bk_err_set(
		err, -EUCLEAN,
		"payload '%s': SHA-256 mismatch (corrupt payload): manifest %s, bundle %s", p->name,
		want, got);
}

/* Zero padding between the end of p and the next 4 KiB boundary (or the end of file). */
static int check_padding_after(struct bk_bundle *b, const struct bk_payload *p, struct bk_err *err)
{
	uint64_t end = p->offset + p->size;
	uint64_t next = (end + BK_BUNDLE_ALIGN - 1) & ~(uint64_t) (BK_BUNDLE_ALIGN - 1);
	int r;

	if (next > b->file_size)
		next = b->file_size;
	r = check_zero(b->fd, end, next, "padding", err);
	if (r < 0)
		return bk_err_prefix(err, "payload '%s'", p->name);
	return 0;
}

int bk_bundle_check_padding(struct bk_bundle *b, const struct bk_manifest *m, struct bk_err *err)
{
	int r;

	if (!m)
		return bk_err_set(err, -EINVAL, "manifest not loaded");
	for (size_t i = 0; i < m->n_payloads; i++) {
		r = check_padding_after(b, &m->payloads[i], err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- format 2: chunks ------------------------------------------------------------------- */

bool bk_bundle_is_chunked(const struct bk_bundle *b)
{
	return b->header.format_version >= 2;
}

int bk_bundle_load_chunks(struct bk_bundle *b, const struct bk_payload *p, struct bk_chunks **ret,
			  struct bk_err *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	uint64_t len;
	int r;

	if (!bk_bundle_is_chunked(b))
		return bk_err_set(err, -ENOEXEC,
				  "payload '%s': a format 1 bundle has no chunk list", p->name);
	if (bk_chunks_list_size(p->size, &len) < 0 || len > SIZE_MAX || p->chunks_offset == 0 ||
	    p->chunks_offset > b->file_size || len > b->file_size - p->chunks_offset)
		return bk_err_set(err, -ENOEXEC,
				  "payload '%s': truncated: its chunk list ends past the bundle",
				  p->name);
	buf = malloc(len ? len : 1);
	if (!buf)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = read_exact(b->fd, buf, len, p->chunks_offset, "chunk list", err);
	if (r < 0)
		return bk_err_prefix(err, "payload '%s'", p->name);
	r = bk_chunks_parse(buf, len, p->size, p->chunks_sha256, ret, err);
	if (r < 0)
		return bk_err_prefix(err, "payload '%s'", p->name);
	return 0;
}

/*
 * Every chunk of every payload is one job: threads take the next one from a shared counter,
 * so one big payload is hashed on all cores (a chunk is independent of the others).
 */
struct chunk_pool {
	int fd;
	const struct bk_payload *ps; /* the payloads to verify, n of them */
	size_t n;
	struct bk_chunks **lists; /* per payload; NULL when its list failed */
	uint64_t *first;	  /* n_payloads + 1: global index of each payload's chunk 0 */
	uint64_t total, next;
	pthread_mutex_t lock;
	int *r; /* per payload: the first failure */
	struct bk_err *errs;
};

static void pool_fail(struct chunk_pool *c, size_t k, const struct bk_err *e)
{
	pthread_mutex_lock(&c->lock);
	if (c->r[k] == 0) {
		c->r[k] = e->code < 0 ? e->code : -EIO;
		c->errs[k] = *e;
		(void) bk_err_prefix(&c->errs[k], "payload '%s'", c->ps[k].name);
	}
	pthread_mutex_unlock(&c->lock);
}

static void *pool_worker(void *arg)
{
	struct chunk_pool *c = arg;
	uint8_t *buf = bk_alloc_pages(BK_CHUNK_SIZE);

	if (!buf) {
		for (size_t k = 0; k < c->n; k++) {
			struct bk_err e = { 0 };

			(void) bk_err_set(&e, -ENOMEM, "out of memory");
			pool_fail(c, k, &e);
		}
		return NULL;
	}
	for (;;) {
		uint64_t i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED), off;
		size_t lo = 0, hi = c->n, k, len;
		const struct bk_payload *p;
		struct bk_err e = { 0 };
		ssize_t n;

		if (i >= c->total)
			break;
		while (hi - lo > 1) { /* the last k with first[k] <= i */
			size_t mid = lo + (hi - lo) / 2;

			if (c->first[mid] <= i)
				lo = mid;
			else
				hi = mid;
		}
		k = lo;
		p = &c->ps[k];
		if (!c->lists[k] || __atomic_load_n(&c->r[k], __ATOMIC_RELAXED) != 0)
			continue;
		(void) bk_chunks_range(c->lists[k], i - c->first[k], &off, &len);
		n = bk_pread_full(c->fd, buf, len, p->offset + off);
		if (n < 0) {
			(void) bk_err_set(&e, (int) n, "read error at offset %llu: %m",
					  (unsigned long long) (p->offset + off));
			pool_fail(c, k, &e);
		} else if ((size_t) n < len) {
			(void) bk_err_set(&e, -ENOEXEC, "truncated at offset %llu",
					  (unsigned long long) (p->offset + off + (uint64_t) n));
			pool_fail(c, k, &e);
		} else if (bk_chunks_check(c->lists[k], i - c->first[k], buf, len, &e) < 0)
			pool_fail(c, k, &e);
	}
	free(buf);
	return NULL;
}

/* Verify the chunks of the n payloads ps (lists loaded first); results in r and errs. */
static int verify_chunked(struct bk_bundle *b, const struct bk_payload *ps, size_t n,
			  unsigned n_threads, int *r, struct bk_err *errs)
{
	struct chunk_pool c = { .fd = b->fd,
				.ps = ps,
				.n = n,
				.lock = PTHREAD_MUTEX_INITIALIZER,
				.r = r,
				.errs = errs };
	pthread_t threads[BK_SHA256_MAX_THREADS];
	unsigned n_started = 0;
	int ret = 0;

	c.lists = calloc(n, sizeof(*c.lists));
	c.first = calloc(n + 1, sizeof(*c.first));
	if (!c.lists || !c.first) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < n; k++) {
		c.first[k] = c.total;
		r[k] = bk_bundle_load_chunks(b, &ps[k], &c.lists[k], &errs[k]);
		if (r[k] == 0)
			c.total += c.lists[k]->n_chunks;
	}
	c.first[n] = c.total;
	if (n_threads == 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);

		n_threads = cores > 0 ? (unsigned) cores : 1;
	}
	if (n_threads > BK_SHA256_MAX_THREADS)
		n_threads = BK_SHA256_MAX_THREADS;
	if (n_threads > c.total)
		n_threads = c.total > 0 ? (unsigned) c.total : 1;
	(void) posix_fadvise(b->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (unsigned t = 1; t < n_threads; t++) {
		if (pthread_create(&threads[n_started], NULL, pool_worker, &c) != 0)
			break;
		n_started++;
	}
	(void) pool_worker(&c); /* the calling thread is one of the workers */
	for (unsigned t = 0; t < n_started; t++)
		pthread_join(threads[t], NULL);
out:
	for (size_t k = 0; c.lists && k < n; k++)
		bk_chunks_free(c.lists[k]);
	free(c.lists);
	free(c.first);
	return ret;
}

int bk_bundle_verify_payloads(struct bk_bundle *b, unsigned n_threads,
			      struct bk_payload_check *checks, struct bk_err *err)
{
	_cleanup_free_ struct bk_sha256_job *jobs = NULL;
	const struct bk_manifest *m = b->manifest;
	int first = 0;

	if (!m)
		return bk_err_set(err, -EINVAL, "manifest not loaded");
	if (bk_bundle_is_chunked(b)) {
		_cleanup_free_ int *rs = calloc(m->n_payloads, sizeof(int));
		_cleanup_free_ struct bk_err *es = calloc(m->n_payloads, sizeof(struct bk_err));
		int r;

		if (!rs || !es)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r = verify_chunked(b, m->payloads, m->n_payloads, n_threads, rs, es);
		if (r < 0)
			return bk_err_set(err, r, "out of memory");
		for (size_t i = 0; i < m->n_payloads; i++) {
			if (checks) {
				checks[i].r = rs[i];
				checks[i].err = rs[i] < 0 ? es[i] : (struct bk_err){ 0 };
			}
			if (rs[i] < 0 && first == 0) {
				first = rs[i];
				if (err && err->code >= 0)
					*err = es[i];
			}
		}
		return first;
	}
	jobs = calloc(m->n_payloads, sizeof(*jobs));
	if (!jobs)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_payloads; i++) {
		jobs[i].offset = m->payloads[i].offset;
		jobs[i].size = m->payloads[i].size;
	}
	(void) bk_sha256_fd_jobs(b->fd, jobs, m->n_payloads, n_threads, NULL);

	for (size_t i = 0; i < m->n_payloads; i++) {
		const struct bk_payload *p = &m->payloads[i];
		struct bk_err e = { 0 };
		int r = jobs[i].r;

		if (r < 0) {
			e = jobs[i].err;
			(void) bk_err_prefix(&e, "payload '%s'", p->name);
		} else {
			r = bk_bundle_check_digest(p, jobs[i].digest, &e);
		}
		if (checks) {
			checks[i].r = r < 0 ? r : 0;
			checks[i].err = e;
		}
		if (r < 0 && first == 0) {
			first = r;
			if (err && err->code >= 0)
				*err = e;
		}
	}
	return first;
}

int bk_bundle_verify_payload(struct bk_bundle *b, const struct bk_payload *p, struct bk_err *err)
{
	struct bk_sha256_job job = { .offset = p->offset, .size = p->size };
	int r;

	if (bk_bundle_is_chunked(b)) {
		struct bk_err e = { 0 };
		int rr = 0;

		r = verify_chunked(b, p, 1, 0, &rr, &e);
		if (r < 0)
			return bk_err_set(err, r, "out of memory");
		if (rr < 0 && err)
			*err = e;
		return rr;
	}

	r = bk_sha256_fd_jobs(b->fd, &job, 1, 0, err);
	if (r < 0)
		return bk_err_prefix(err, "payload '%s'", p->name);
	return bk_bundle_check_digest(p, job.digest, err);
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t offset);

static bool all_zero(const uint8_t *p, size_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* Format 2: read a chunk, check it against the list, only then write it. */
static int copy_chunked(struct bk_bundle *b, const struct bk_payload *p, int out_fd,
			uint64_t out_offset, unsigned flags, struct bk_err *err)
{
	_cleanup_(bk_chunks_freep) struct bk_chunks *c = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	int r;

	r = bk_bundle_load_chunks(b, p, &c, err);
	if (r < 0)
		return r;
	buf = bk_alloc_pages(BK_CHUNK_SIZE);
	if (!buf)
		return bk_err_set(err, -ENOMEM, "out of memory");
	(void) posix_fadvise(b->fd, (off_t) p->offset, (off_t) p->size, POSIX_FADV_SEQUENTIAL);
	for (uint64_t i = 0; i < c->n_chunks; i++) {
		uint64_t off;
		size_t len;

		(void) bk_chunks_range(c, i, &off, &len);
		r = read_exact(b->fd, buf, len, p->offset + off, "payload", err);
		if (r >= 0)
			r = bk_chunks_check(c, i, buf, len, err);
		if (r < 0)
			return bk_err_prefix(err, "payload '%s'", p->name);
		if ((flags & BK_SHA256_COPY_SPARSE) && all_zero(buf, len))
			continue;
		r = pwrite_all(out_fd, buf, len, out_offset + off);
		if (r < 0)
			return bk_err_set(err, r, "payload '%s': write error at offset %llu: %m",
					  p->name, (unsigned long long) (out_offset + off));
	}
	return 0;
}

static int copy_payload(struct bk_bundle *b, const struct bk_payload *p, int out_fd,
			uint64_t out_offset, unsigned flags, struct bk_err *err)
{
	uint8_t d[BK_SHA256_LEN];
	int r;

	if (!b->manifest)
		return bk_err_set(err, -EINVAL, "manifest not loaded");
	if (!b->signature_verified)
		return bk_err_set(err, -EPERM,
				  "payload '%s': refusing to copy from a bundle whose signature "
				  "was not verified",
				  p->name);
	if (bk_bundle_is_chunked(b))
		return copy_chunked(b, p, out_fd, out_offset, flags, err);
	r = bk_sha256_fd_copy(b->fd, p->offset, p->size, out_fd, out_offset, flags, d, err);
	if (r < 0)
		return bk_err_prefix(err, "payload '%s'", p->name);
	return bk_bundle_check_digest(p, d, err);
}

int bk_bundle_copy_payload(struct bk_bundle *b, const struct bk_payload *p, int out_fd,
			   uint64_t out_offset, struct bk_err *err)
{
	return copy_payload(b, p, out_fd, out_offset, 0, err);
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t offset)
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

int bk_bundle_copy_to(struct bk_bundle *b, int out_fd, struct bk_err *err)
{
	uint8_t hdr[BK_BUNDLE_HEADER_SIZE];
	int r;

	if (!b->manifest)
		return bk_err_set(err, -EINVAL, "manifest not loaded");
	if (!b->signature_verified)
		return bk_err_set(err, -EPERM,
				  "refusing to copy a bundle whose signature was not verified");
	bk_bundle_header_encode(&b->header, hdr);
	r = pwrite_all(out_fd, hdr, sizeof(hdr), 0);
	if (r >= 0)
		r = pwrite_all(out_fd, b->manifest_bytes, b->header.manifest_size,
			       b->header.manifest_offset);
	if (r >= 0)
		r = pwrite_all(out_fd, b->signature, b->header.signature_size,
			       b->header.signature_offset);
	if (r < 0)
		return bk_err_set(err, r, "cannot write: %m");
	for (size_t i = 0; i < b->manifest->n_payloads; i++) {
		const struct bk_payload *p = &b->manifest->payloads[i];

		/* A fresh file: runs of zeros stay holes (sparse payloads stay sparse). */
		r = copy_payload(b, p, out_fd, p->offset, BK_SHA256_COPY_SPARSE, err);
		if (r < 0)
			return r;
		if (bk_bundle_is_chunked(b)) {
			/* The list as verified (loaded again: it is checked against the manifest).
			 */
			_cleanup_(bk_chunks_freep) struct bk_chunks *c = NULL;

			r = bk_bundle_load_chunks(b, p, &c, err);
			if (r < 0)
				return r;
			r = pwrite_all(out_fd, c->digests, c->n_chunks * BK_SHA256_LEN,
				       p->chunks_offset);
			if (r < 0)
				return bk_err_set(err, r, "cannot write: %m");
		}
	}
	/* Padding stays a hole; the size is the bundle's. */
	if (ftruncate(out_fd, (off_t) b->file_size) < 0)
		return bk_err_set(err, -errno, "cannot set the size: %m");
	return 0;
}

struct bk_bundle *bk_bundle_free(struct bk_bundle *b)
{
	if (!b)
		return NULL;
	if (b->fd >= 0)
		(void) close(b->fd);
	free(b->manifest_bytes);
	free(b->signature);
	free(b->signer);
	bk_manifest_free(b->manifest);
	free(b);
	return NULL;
}
