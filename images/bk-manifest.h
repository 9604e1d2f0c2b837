/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The bundle manifest: strict parsing, validation and serialisation of the JSON document that
 * the bundle signature covers (schema and limits: docs/bundle-format.md). Pure: no I/O, no
 * logging. Every malformed input fails with -ENOEXEC and one message naming the field and,
 * for payload fields, the payload ("payload 'vmlinuz': field 'size' must be an integer").
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-err.h"
#include "bk-sha256.h"

/* What `image build` writes; format 1 (one digest per payload) is still read and verified. */
#define BK_MANIFEST_FORMAT	     2
#define BK_MANIFEST_FORMAT_MIN	     1
#define BK_MANIFEST_MAX_SIZE	     (16 * 1024 * 1024)
#define BK_MANIFEST_MAX_PAYLOADS     65536
#define BK_MANIFEST_MAX_LIVE_FROM    256
#define BK_MANIFEST_NAME_MAX	     64
#define BK_MANIFEST_BUILD_MAX	     128
#define BK_MANIFEST_COMPATIBLE_MAX   128
#define BK_MANIFEST_DESCRIPTION_MAX  4096
#define BK_MANIFEST_MOUNTPOINT_MAX   1024
#define BK_MANIFEST_EPOCH_MAX	     UINT64_C(0xffffffff)
#define BK_MANIFEST_PAYLOAD_SIZE_MAX (UINT64_C(1) << 62)
/* Format 2 chunk size (images/bk-chunks.h: BK_CHUNK_SIZE is this). */
#define BK_MANIFEST_CHUNK_SIZE (UINT64_C(1) << 20)
/* Payloads start on this boundary so a filesystem payload can be loop-mounted in place. */
#define BK_BUNDLE_ALIGN 4096

enum bk_payload_type {
	BK_PAYLOAD_KERNEL,
	BK_PAYLOAD_INITRD,
	BK_PAYLOAD_ROOTFS,
	BK_PAYLOAD_COMPONENT,
	BK_PAYLOAD_FILE,
	_BK_PAYLOAD_TYPE_MAX,
	_BK_PAYLOAD_TYPE_INVALID = -EINVAL,
};

enum bk_payload_fs {
	BK_FS_RAW,
	BK_FS_SQUASHFS,
	BK_FS_EROFS,
	BK_FS_EXT4,
	_BK_FS_MAX,
	_BK_FS_INVALID = -EINVAL,
};

/* "kernel", ...; NULL when out of range. */
const char *bk_payload_type_to_string(enum bk_payload_type t);
/* _BK_PAYLOAD_TYPE_INVALID when unknown. */
enum bk_payload_type bk_payload_type_from_string(const char *s);
/* "raw", "squashfs", "erofs", "ext4" (also the kernel's filesystem type names). */
const char *bk_payload_fs_to_string(enum bk_payload_fs fs);
enum bk_payload_fs bk_payload_fs_from_string(const char *s);

struct bk_payload {
	char *name; /* a single path component, unique in the manifest */
	enum bk_payload_type type;
	enum bk_payload_fs fs; /* _BK_FS_INVALID in a spec without "fs" (builder probes it) */
	uint64_t size;	       /* bytes, >= 1 */
	uint64_t offset;       /* in the bundle file, BK_BUNDLE_ALIGN aligned */
	uint8_t sha256[BK_SHA256_LEN]; /* of the payload bytes (a payload file's identity) */
	/*
	 * Format 2: the SHA-256 of the payload's chunk list (images/bk-chunks.h), what verifiers
	 * check (every byte, chunk by chunk, on every core); and where that list is (computed).
	 */
	uint8_t chunks_sha256[BK_SHA256_LEN];
	uint64_t chunks_offset;
	bool live;	  /* mounted by live patching */
	char *mountpoint; /* absolute, normalised; non-NULL exactly when live */
	char *source;	  /* build specs only: the file to read; NULL in manifests */
};

struct bk_manifest {
	uint64_t format; /* BK_MANIFEST_FORMAT_MIN .. BK_MANIFEST_FORMAT */
	char *name;
	char *version; /* bk_version_is_valid() */
	char *build;
	char *compatible;
	uint64_t security_epoch;
	char *description;	/* NULL when absent */
	char *created;		/* "YYYY-MM-DDTHH:MM:SSZ"; NULL only in a spec without it */
	char **live_patch_from; /* versions this image can live-patch; n_live_patch_from of them */
	size_t n_live_patch_from;
	struct bk_payload *payloads; /* in manifest order */
	size_t n_payloads;
};

enum bk_manifest_parse_flags {
	/*
	 * Parse a build spec (bankctl image build SPEC.json) instead of a manifest: "format",
	 * "size", "offset" and "sha256" are computed by the builder and refused; every payload
	 * needs "source"; "fs" and "created" may be absent. Layout rules are not checked.
	 */
	BK_MANIFEST_PARSE_SPEC = 1 << 0,
};

/*
 * Parse and validate buf[0..len): JSON syntax (strict, depth limit, no NUL, no trailing data,
 * valid UTF-8), every field's presence, type and value rule, unknown keys, payload names
 * (single path components, unique), and the layout rules that need no file: 4 KiB alignment,
 * no overflow, no overlap, each payload (by offset) at the first 4 KiB boundary after its
 * predecessor. *ret (caller frees with bk_manifest_free()) written only on success.
 * Returns 0; -ENOEXEC with a message for any malformed input; -ENOMEM.
 * A 10,000-payload manifest takes a few milliseconds (sorting, no quadratic checks).
 */
int bk_manifest_parse(const char *buf, size_t len, unsigned flags, struct bk_manifest **ret,
		      struct bk_err *err);

/*
 * Re-check every value and layout rule of m (the builder calls this on what it is about to
 * sign). Returns 0 or -ENOEXEC with a message.
 */
int bk_manifest_validate(const struct bk_manifest *m, struct bk_err *err);

/*
 * Cross-check m's layout against its bundle: the lowest payload offset must be payload_offset
 * (from the bundle header) and the last payload (format 2: the chunk table after it) must end
 * exactly at file_size. Returns 0;
 * -ENOEXEC "payload 'x' ends at N, past the end of the bundle (M bytes)" (truncated), or
 * "N bytes of trailing data after the last payload", or the header mismatch.
 */
int bk_manifest_check_layout(const struct bk_manifest *m, uint64_t payload_offset,
			     uint64_t file_size, struct bk_err *err);

/*
 * Give every payload its canonical offset (manifest order, the first at payload_offset, each
 * next at the first 4 KiB boundary after the previous one). *ret_end gets the end of the last
 * payload (the bundle's size). payload_offset must be aligned. Returns 0, -EINVAL (unaligned)
 * or -EOVERFLOW.
 */
int bk_manifest_assign_offsets(struct bk_manifest *m, uint64_t payload_offset, uint64_t *ret_end);

/*
 * Format 2: give every payload its chunks_offset (the chunk table starts at the first 4 KiB
 * boundary after the payload that ends last; lists follow each other in manifest order) and
 * put the end of the table (the bundle's size) in *ret_end. Format 1: *ret_end is the end of
 * the last payload. Offsets must be assigned. Returns 0 or -EOVERFLOW.
 */
int bk_manifest_assign_chunks(struct bk_manifest *m, uint64_t *ret_end);

/*
 * The manifest as a new JSON object (fixed key order; spec-only fields left out). *ret owned
 * by the caller (json_object_put). Returns 0 or -ENOMEM.
 */
int bk_manifest_to_json_object(const struct bk_manifest *m, struct json_object **ret);

/*
 * Serialise m as the bytes to sign: pretty-printed JSON followed by a newline. *ret_buf
 * (malloc'ed, NUL-terminated) and *ret_len. Returns 0 or -ENOMEM.
 */
int bk_manifest_serialise(const struct bk_manifest *m, char **ret_buf, size_t *ret_len,
			  struct bk_err *err);

/* The payload called name, NULL when there is none. Linear. */
const struct bk_payload *bk_manifest_find_payload(const struct bk_manifest *m, const char *name);

/* Free m and everything it owns. Accepts NULL, returns NULL. */
struct bk_manifest *bk_manifest_free(struct bk_manifest *m);

BK_DEFINE_CLEANUP(struct bk_manifest *, bk_manifest_free)
