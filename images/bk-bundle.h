/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Signed image bundles (*.bbi): reading, verifying and copying payloads out of an open bundle,
 * and building / re-signing one. Format, checks and exit codes: docs/bundle-format.md.
 *
 * Reading a bundle, in this order (what stage and the live patch do):
 *   bk_bundle_open_fd()            header, manifest and signature bytes (nothing parsed)
 *   bk_bundle_verify_signature()   CMS over the manifest bytes, chain, codeSigning, time
 *   bk_bundle_load_manifest()      parse, validate, cross-check with header and file size
 *   bk_bundle_next_payload() + bk_bundle_copy_payload()   hash while writing, -EUCLEAN
 * or bk_bundle_open_verified() for the first three. Every payload byte is read from the fd
 * the bundle was opened with (a private duplicate), never by re-opening a path.
 * Nothing here logs, needs root or fsyncs, except where a function says so.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk-chunks.h"
#include "bk-cms.h"
#include "bk-err.h"
#include "bk-manifest.h"

#define BK_BUNDLE_MAGIC \
	"\x89"          \
	"BBI\r\n\x1a\n"
#define BK_BUNDLE_MAGIC_LEN 8
/* What `image build` writes (chunked payloads); format 1 bundles are still read and verified. */
#define BK_BUNDLE_FORMAT      2
#define BK_BUNDLE_FORMAT_MIN  1
#define BK_BUNDLE_HEADER_SIZE 128
/* Most zero bytes between the end of the signature and the first payload. */
#define BK_BUNDLE_MAX_SIG_PAD (64 * 1024)

/* The decoded fixed header (docs/bundle-format.md, "Header"). */
struct bk_bundle_header {
	uint32_t format_version;
	uint32_t header_size;
	uint64_t manifest_offset;
	uint64_t manifest_size;
	uint64_t signature_offset;
	uint64_t signature_size;
	uint64_t payload_offset;
	uint64_t flags;
};

/* Encode h into out (checksum computed here). Pure. */
void bk_bundle_header_encode(const struct bk_bundle_header *h, uint8_t out[BK_BUNDLE_HEADER_SIZE]);

/*
 * Decode and check a header read from a bundle of file_size bytes (len bytes available at
 * buf): magic, checksum, version, sizes and offsets against each other and the file size,
 * reserved bytes. Returns 0; -ENOEXEC "truncated ..." / "bad magic" / "header checksum
 * mismatch" / the field that is wrong. *ret written only on success.
 */
int bk_bundle_header_decode(const uint8_t *buf, size_t len, uint64_t file_size,
			    struct bk_bundle_header *ret, struct bk_err *err);

struct bk_bundle; /* opaque */

/*
 * Open the bundle at path (relative to dfd, or absolute) for reading without ever blocking on
 * it: O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC, then fstat() of what was opened; anything but a
 * regular file (a FIFO, a device, a directory, a socket) is refused before a byte is read,
 * then O_NONBLOCK is cleared (issue 17, item 5: a FIFO blocked `livepatch apply` forever,
 * holding the lock). Call it before taking the bootbank lock. *ret_fd written on success.
 * Returns 0; -ENOEXEC "'PATH' is not a regular file (a fifo)" (exit 6, malformed); -ENOENT
 * and the other open() errors, "cannot open 'PATH': ...". Does not block, needs no root.
 */
int bk_bundle_open_path(int dfd, const char *path, int *ret_fd, struct bk_err *err);

/*
 * May the bytes of the bundle open in fd be trusted to stay what they are between
 * verification and use (a loop mount reads the file again long after it was hashed)? Only
 * root may be able to change them (issue 17, item 1; the checks RAUC added for
 * CVE-2020-25860): fd is a regular file owned by root, not writable by group or others, and
 * not open for writing anywhere (a read lease can be taken, where the filesystem has leases).
 * path (NULL when the caller has only an fd, e.g. one passed over D-Bus) must still name that
 * file, and every directory above it must be owned by root and not writable by group or
 * others unless it is sticky (like /tmp: nobody else can rename or remove root's file there).
 * Returns 0; -EPERM "refusing a bundle that ... can write" (exit 1); -ENOEXEC not a regular
 * file; -ESTALE path no longer names the file; other -errno from stat. Reads only metadata.
 */
int bk_bundle_check_trusted(int fd, const char *path, struct bk_err *err);

/*
 * Open the bundle in fd (a regular file; fd is duplicated with F_DUPFD_CLOEXEC, the caller
 * keeps its own): read and check the header, read the manifest and signature bytes, check the
 * zero padding before the first payload. Parses nothing. *ret (bk_bundle_free()) written on
 * success. Returns 0; -ENOEXEC malformed or truncated; -EIO or other -errno reading;
 * -ENOMEM. Messages start with "header: ".
 */
int bk_bundle_open_fd(int fd, struct bk_bundle **ret, struct bk_err *err);

/*
 * Verify the CMS signature over the manifest bytes against keyring (bk_cms_verify(): chain,
 * codeSigning, validity time unless flags has BK_CMS_NO_CHECK_TIME). Checks first that the
 * signature is one DER object of exactly the header's size. Returns 0; -EBADMSG,
 * -EKEYREJECTED, -EKEYEXPIRED as bk_cms_verify(); -ENOMEM. Messages start with "signature: ".
 */
int bk_bundle_verify_signature(struct bk_bundle *b, const struct bk_keyring *keyring,
			       unsigned flags, struct bk_err *err);

/*
 * Parse and validate the manifest, then cross-check it with the header (format version,
 * first payload offset) and the file size (no payload past the end, no trailing data), and
 * check that the padding after every payload is zero (bk_bundle_check_padding()). Every verb
 * that reads a bundle calls this, so the structural checks are the same for all of them.
 * Allowed before the signature is verified (`image info`, re-signing) but then the content is
 * unauthenticated. Returns 0; -ENOEXEC; -ENOMEM. Messages start with "manifest: ".
 */
int bk_bundle_load_manifest(struct bk_bundle *b, struct bk_err *err);

/*
 * bk_bundle_open_fd() + bk_bundle_verify_signature() + bk_bundle_load_manifest(): a bundle
 * whose manifest is authenticated and valid, ready to copy payloads from.
 */
int bk_bundle_open_verified(int fd, const struct bk_keyring *keyring, unsigned flags,
			    struct bk_bundle **ret, struct bk_err *err);

/* The loaded manifest (NULL before bk_bundle_load_manifest()). Owned by b. */
const struct bk_manifest *bk_bundle_get_manifest(const struct bk_bundle *b);
const struct bk_bundle_header *bk_bundle_get_header(const struct bk_bundle *b);
/* Size of the bundle file in bytes (fstat at open). */
uint64_t bk_bundle_get_size(const struct bk_bundle *b);
/* The manifest bytes the signature covers (len in *ret_len); owned by b. */
const char *bk_bundle_get_manifest_bytes(const struct bk_bundle *b, size_t *ret_len);
/*
 * The DER signature bytes, read once at bk_bundle_open_fd() (len in *ret_len); owned by b.
 * After bk_bundle_verify_signature() these are the bytes that verified: write these, never
 * bytes read from the file again (it may have changed since).
 */
const uint8_t *bk_bundle_get_signature_bytes(const struct bk_bundle *b, size_t *ret_len);
/* The signer's subject after a successful bk_bundle_verify_signature(), else NULL. */
const char *bk_bundle_get_signer(const struct bk_bundle *b);
bool bk_bundle_is_signature_verified(const struct bk_bundle *b);
/* The bundle's own fd (for a loop device: bk_mount_loop_fd() with a payload's range). */
int bk_bundle_get_fd(const struct bk_bundle *b);

/*
 * Iterate the payloads in manifest order: start with *it = 0; returns 0 and *ret for an
 * item, 1 at the end, -EINVAL when the manifest is not loaded.
 */
int bk_bundle_next_payload(const struct bk_bundle *b, size_t *it, const struct bk_payload **ret);

/* The result of one payload check (bk_bundle_verify_payloads). */
struct bk_payload_check {
	int r; /* 0 ok; -EUCLEAN digest mismatch; -ENOEXEC truncated or non-zero padding; -EIO */
	struct bk_err err; /* message when r < 0, naming the payload */
};

/*
 * Hash every payload (in parallel, up to n_threads threads, 0: every core; format 2: every
 * chunk of every payload is a job of its own, so one big payload is hashed on all cores too)
 * and compare with the manifest (the padding was checked by bk_bundle_load_manifest()). checks
 * (optional) is an array of the manifest's n_payloads entries, each filled with its own result.
 * Requires a loaded manifest (-EINVAL otherwise). Returns 0 when all match, else the first
 * failure in manifest order, its message in err ("payload 'x': SHA-256 mismatch ...").
 */
int bk_bundle_verify_payloads(struct bk_bundle *b, unsigned n_threads,
			      struct bk_payload_check *checks, struct bk_err *err);

/*
 * The padding between the end of each payload and the next 4 KiB boundary (or the end of the
 * file) must be zero. Requires a loaded layout (called by bk_bundle_load_manifest(); -EINVAL
 * when no manifest is given). Returns 0; -ENOEXEC "payload 'x': padding: non-zero byte at
 * offset N"; -EIO or other -errno reading.
 */
int bk_bundle_check_padding(struct bk_bundle *b, const struct bk_manifest *m, struct bk_err *err);

/*
 * Compare digest (the SHA-256 of payload p's bytes, however they were read) with the
 * manifest's: the one digest check of every verb (verify, mount, depot import, stage, live
 * patch). Returns 0; -EUCLEAN "payload 'x': SHA-256 mismatch (corrupt payload): ...". Pure.
 */
int bk_bundle_check_digest(const struct bk_payload *p, const uint8_t digest[BK_SHA256_LEN],
			   struct bk_err *err);

/*
 * Format 2: read payload p's chunk list from the bundle (its length is fixed by p->size) and
 * check it against the manifest's chunks_sha256 (bk_chunks_parse()). *ret (bk_chunks_free())
 * written on success. Returns 0; -EUCLEAN the list does not match; -ENOEXEC truncated or a
 * format-1 bundle; -EIO; -ENOMEM. Messages start with "payload 'x': ".
 */
int bk_bundle_load_chunks(struct bk_bundle *b, const struct bk_payload *p, struct bk_chunks **ret,
			  struct bk_err *err);

/* True for a bundle whose payloads are verified chunk by chunk (format 2). */
bool bk_bundle_is_chunked(const struct bk_bundle *b);

/*
 * Hash one payload of b and compare with the manifest: 0, -EUCLEAN, -ENOEXEC, -EIO. Format 2:
 * the chunks are hashed on every core (like bk_bundle_verify_payloads()).
 */
int bk_bundle_verify_payload(struct bk_bundle *b, const struct bk_payload *p, struct bk_err *err);

/*
 * Copy payload p of b to out_fd at out_offset (pwrite; the fd's position does not move)
 * while hashing it; returns -EUCLEAN when the bytes do not match the manifest's SHA-256 (the
 * caller must discard what was written). Format 2: each chunk is checked before it is
 * written, so nothing that did not verify is ever written. Refuses with -EPERM when b's signature
 * has not been verified and -EINVAL when the manifest is not loaded. Does not fsync. Other returns:
 * -ENOEXEC (bundle truncated under us), -EIO, -ENOSPC and other write errors.
 */
int bk_bundle_copy_payload(struct bk_bundle *b, const struct bk_payload *p, int out_fd,
			   uint64_t out_offset, struct bk_err *err);

/*
 * Write the whole bundle to out_fd (from offset 0; out_fd should be an empty regular file):
 * header, manifest and signature from memory, then every payload through
 * bk_bundle_copy_payload() (so every byte written was hashed on the way: -EUCLEAN on a
 * mismatch), padding as holes. Same preconditions as bk_bundle_copy_payload(). Does not fsync.
 */
int bk_bundle_copy_to(struct bk_bundle *b, int out_fd, struct bk_err *err);

/* Free b and close its fd. Accepts NULL, returns NULL. */
struct bk_bundle *bk_bundle_free(struct bk_bundle *b);

BK_DEFINE_CLEANUP(struct bk_bundle *, bk_bundle_free)

/* ---- building (bk-bundle-build.c) ------------------------------------------------------- */

/* Who signs: PEM paths, intermediates NULL-terminated (may be NULL). */
struct bk_bundle_signer {
	const char *key;
	const char *cert;
	const char *const *intermediates;
};

/*
 * Build a bundle from a spec (docs/bundle-format.md, "Building"): spec_len bytes at spec,
 * sources opened relative to src_dfd (absolute paths work too), written to (out_dfd,
 * out_name) atomically: a temp file ".#<out_name>.<random>" beside it, fsync'ed, renamed,
 * out_dfd fsync'ed. created (NULL: the spec's, which must then be there) is used as the
 * manifest's creation time. Each source is read once, hashed while copied. On failure the
 * temp file is removed and out_name untouched. Returns 0; -ENOEXEC bad spec; -ENOENT a source
 * is missing; -EMEDIUMTYPE a source is not the filesystem the spec says; signing errors as
 * bk_cms_sign(); -ENOSPC, -EIO... Blocks on fsync.
 */
int bk_bundle_build(const char *spec, size_t spec_len, int src_dfd, const char *created,
		    const struct bk_bundle_signer *signer, int out_dfd, const char *out_name,
		    struct bk_err *err);

/*
 * Re-sign the bundle in in_fd with signer into (out_dfd, out_name), atomically as above. The
 * old signature is not checked; every payload is copied while hashed and must match the
 * manifest (-EUCLEAN otherwise, nothing written). Offsets change only if the new signature
 * needs more room. Returns as bk_bundle_build() plus the bk_bundle_open_fd() errors.
 */
int bk_bundle_resign(int in_fd, const struct bk_bundle_signer *signer, int out_dfd,
		     const char *out_name, struct bk_err *err);
