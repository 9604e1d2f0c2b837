/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The content of a bank (docs/banks.md, "Stage"): its filesystem holds one file per payload,
 * named by the payload, the exact signed manifest bytes (manifest.json), the detached
 * signature (manifest.sig), format 2: the chunk lists of the payloads (manifest.chunks), and
 * the content record bank.json, written last and removed first, so a bank with a bank.json is
 * a complete bank. This module reads, writes and checks that content through an O_DIRECTORY
 * fd of the mounted bank; it never mounts, logs or exits.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-chunks.h"
#include "bk-err.h"
#include "bk-manifest.h"
#include "bk-sha256.h"

#define BK_BANK_RECORD_FILE    "bank.json"
#define BK_BANK_MANIFEST_FILE  "manifest.json"
#define BK_BANK_SIGNATURE_FILE "manifest.sig"
#define BK_BANK_LOST_FOUND     "lost+found"
#define BK_BANK_RECORD_FORMAT  1
/*
 * Format 2: the chunk table of the bundle the bank was staged from, byte for byte (the chunk
 * lists of its payloads in manifest order, docs/bundle-format.md, "Chunks"), so that a later
 * delta stage knows the digests of this bank's chunks without reading them. Banks staged
 * before it existed, and from format-1 bundles, have none.
 */
#define BK_BANK_CHUNKS_FILE "manifest.chunks"
/* The largest manifest.chunks read: 64 MiB of lists, the payloads of a 2 TiB image. */
#define BK_BANK_CHUNKS_MAX_SIZE (UINT64_C(64) << 20)
/* A record lists at most BK_MANIFEST_MAX_PAYLOADS payloads of ~200 bytes each. */
#define BK_BANK_RECORD_MAX_SIZE BK_MANIFEST_MAX_SIZE
#define BK_BANK_SIGNER_MAX	1024

/* One payload file of a bank, as the record lists it. */
struct bk_bank_payload {
	char *name; /* file name in the bank (the manifest's payload name) */
	enum bk_payload_type type;
	uint64_t size;
	uint8_t sha256[BK_SHA256_LEN];
};

/* bank.json: what a bank holds. */
struct bk_bank_record {
	char *name;
	char *version;
	char *build;
	char *compatible;
	uint64_t security_epoch;
	uint8_t manifest_sha256[BK_SHA256_LEN]; /* of manifest.json, the signed bytes */
	char *signer;				/* subject of the signing certificate */
	uint64_t staged;			/* when stage finished writing, Unix seconds */
	struct bk_bank_payload *payloads;	/* in manifest order */
	size_t n_payloads;
};

/*
 * True for the names a bank's own files use (bank.json, manifest.json, manifest.sig,
 * manifest.chunks, lost+found): a payload cannot be called that.
 */
bool bk_bank_name_is_reserved(const char *name);

/*
 * Check that every payload of m can be a file of a bank: -ENOEXEC "payload 'bank.json': the
 * name is reserved in a bank" otherwise. Pure.
 */
int bk_bank_check_manifest(const struct bk_manifest *m, struct bk_err *err);

/*
 * A new record for the image m whose signed manifest bytes are manifest[0..len), signed by
 * signer (may be NULL: recorded as ""), staged at time staged. *ret (bk_bank_record_free())
 * written on success. Returns 0, -ENOMEM, or -ENOEXEC as bk_bank_check_manifest().
 */
int bk_bank_record_new(const struct bk_manifest *m, const void *manifest, size_t len,
		       const char *signer, uint64_t staged, struct bk_bank_record **ret,
		       struct bk_err *err);

/* Free r and everything it owns. Accepts NULL, returns NULL. */
struct bk_bank_record *bk_bank_record_free(struct bk_bank_record *r);

BK_DEFINE_CLEANUP(struct bk_bank_record *, bk_bank_record_free)

/*
 * The record as a new JSON object (the bank.json document, fixed key order):
 *   { "format": 1, "name", "version", "build", "compatible", "security_epoch",
 *     "manifest_sha256": hex, "signer", "staged": seconds,
 *     "payloads": [ { "name", "type", "size", "sha256": hex } ... ] }
 * Returns 0 or -ENOMEM.
 */
int bk_bank_record_to_json(const struct bk_bank_record *r, struct json_object **ret);

/*
 * Parse and check a bank.json document (strict: every field present with its type, no
 * unknown field, format 1, a valid version, payload names valid, unique and not reserved,
 * limits of the manifest). Returns 0 and *ret, -ENOEXEC with a message naming the field, or
 * -ENOMEM.
 */
int bk_bank_record_parse(const char *buf, size_t len, struct bk_bank_record **ret,
			 struct bk_err *err);

/*
 * Read bank_dfd/bank.json. Returns 0 and *ret; -ENOENT when the bank has no record (an empty
 * or partly written bank); -ENOEXEC when it is not a record; -EIO when the filesystem failed
 * the read (bk_bank_fs_error()); other -errno reading it.
 */
int bk_bank_record_read_at(int bank_dfd, struct bk_bank_record **ret, struct bk_err *err);

/* Write bank_dfd/bank.json atomically (bk_write_atomic_at(): fsync'ed, directory fsync'ed). */
int bk_bank_record_write_at(int bank_dfd, const struct bk_bank_record *r, struct bk_err *err);

enum bk_bank_check_flags {
	BK_BANK_CHECK_DIGESTS = 1 << 0, /* also hash every payload file (reads them all) */
};

/*
 * Is the content of bank_dfd the complete image r describes? manifest.json must hash to
 * r->manifest_sha256 and parse, and agree with r (name, version, build, compatible, epoch,
 * every payload's name, type, size and SHA-256); manifest.sig must be a non-empty regular
 * file; every payload a regular file of its size (and, with BK_BANK_CHECK_DIGESTS, of its
 * SHA-256). Returns 0; -ENOENT a file is missing; -EUCLEAN a file does not match; -ENOEXEC
 * manifest.json does not parse; -EIO the filesystem failed a read (bk_bank_fs_error()); other
 * -errno. The message names the file. Reads only.
 */
int bk_bank_check(int bank_dfd, const struct bk_bank_record *r, unsigned flags, struct bk_err *err);

/* The chunk lists of a complete format-2 bank's payloads (delta staging). */
struct bk_bank_chunks {
	struct bk_manifest *manifest; /* the bank's manifest.json */
	struct bk_chunks **lists;     /* manifest->n_payloads of them, in manifest order */
};

/*
 * Read the chunk lists of the complete bank at bank_dfd: bank.json, manifest.json (of the
 * record's digest, parsed), and manifest.chunks, whose length must be the sum of the lists'
 * lengths the manifest's payload sizes give and each list the manifest's chunks_sha256
 * (bk_chunks_parse()). Reads only; nothing else in the bank (no payload byte) is read.
 * Returns 0 and *ret (bk_bank_chunks_free()); -ENOENT the bank has no record, is format 1 or
 * has no manifest.chunks (staged by an older bootbank); -EUCLEAN a file does not match;
 * -ENOEXEC manifest.json does not parse; -EFBIG the lists would exceed
 * BK_BANK_CHUNKS_MAX_SIZE; -EIO (bk_bank_fs_error()); other -errno. The message names the
 * file.
 */
int bk_bank_chunks_read_at(int bank_dfd, struct bk_bank_chunks **ret, struct bk_err *err);

struct bk_bank_chunks *bk_bank_chunks_free(struct bk_bank_chunks *c);

BK_DEFINE_CLEANUP(struct bk_bank_chunks *, bk_bank_chunks_free)

/*
 * An error the bank's filesystem returned (issue 16): the kernel reports an ext4 checksum error
 * as EBADMSG and detected corruption as EUCLEAN (EFSCORRUPTED), the errnos bootbank uses for
 * "signature does not verify" and "corrupt payload". For r = -EBADMSG, -EUCLEAN or -EIO this
 * returns -EIO (the I/O exit code) and rewrites err's message to say the bank's filesystem is
 * damaged (the original message follows); any other r is returned unchanged. Call it only on
 * the result of a system call on the bank's files, never on a digest or signature check.
 */
int bk_bank_fs_error(int r, struct bk_err *err);

/*
 * Remove the content of the bank: bank.json first (and the directory fsync'ed, so the bank
 * is known incomplete before anything else goes), then every other entry except lost+found
 * (directories recursively, at most 16 levels), then fsync the directory. Returns the number
 * of top-level entries removed, or -errno (what was removed stays removed).
 */
int bk_bank_clear_at(int bank_dfd, struct bk_err *err);

/*
 * Bytes the bank's entries other than lost+found occupy on disk (st_blocks of every regular
 * file at the top level): what bk_bank_clear_at() would give back. Returns 0 or -errno.
 */
int bk_bank_usage_at(int bank_dfd, uint64_t *ret, struct bk_err *err);
