/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Staging an image into a bank (docs/banks.md, "Stage"; the crash argument is in
 * docs/crash-safety.md): the policy checks, the space check, the staging marker that tells
 * the next run which bank an interrupted stage was writing, and the write of the bank's
 * content from a verified bundle (every payload read once, hashed while it is written).
 * The verb (bankctl-stage.c) takes the lock, mounts the bank and saves the boot state around
 * these steps. Nothing here logs, exits or mounts.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk-bank.h"
#include "bk-bundle.h"
#include "bk-cms.h"
#include "bk-err.h"
#include "bk-manifest.h"
#include "bk-select.h"
#include "bk-version.h"

/* ---- the staging marker ------------------------------------------------------------------ */

/* In the state directory (ROOT/var/lib/bootbank) while a stage writes a bank. */
#define BK_STAGE_MARKER_FILE	 "staging.json"
#define BK_STAGE_MARKER_MAX_SIZE (16 * 1024)
#define BK_STAGE_MARKER_URL_MAX	 4096

struct bk_stage_marker {
	enum bk_bank_id bank;		      /* the bank being written */
	char image[BK_MANIFEST_NAME_MAX + 1]; /* the image's name ... */
	char version[BK_VERSION_MAX_LEN + 1]; /* ... and version, for messages */
	uint64_t pid;			      /* of the staging process */
	uint64_t started;		      /* Unix seconds */
	/*
	 * A stage from a URL (docs/stage-url.md, "Resume"): the URL, the SHA-256 of the signed
	 * manifest (hex), and how far it is: payloads before payload are complete, the first
	 * chunks chunks of payload are durable and verified in its ".partial." file. url[0] ==
	 * '\0' for a stage from a file.
	 */
	char url[BK_STAGE_MARKER_URL_MAX + 1];
	char manifest_sha256[BK_SHA256_HEX_LEN + 1];
	uint64_t payload;
	uint64_t chunks;
};

/*
 * Write the marker (state_dfd/staging.json, atomic and durable):
 *   { "format": 1, "bank": "B", "image": "acme-os", "version": "1.10.0", "pid": N,
 *     "started": N }
 * and, for a stage from a URL, "url", "manifest_sha256", "payload", "chunks".
 * Returns 0 or -errno with a message naming the file.
 */
int bk_stage_marker_write_at(int state_dfd, const struct bk_stage_marker *m, struct bk_err *err);

/*
 * Read the marker. Returns 0 and *ret; -ENOENT when there is none; -ENOEXEC when it is not a
 * marker ("corrupt staging marker 'staging.json': ..."); other -errno.
 */
int bk_stage_marker_read_at(int state_dfd, struct bk_stage_marker *ret, struct bk_err *err);

/* Remove the marker and fsync the directory; 0 also when there is none. */
int bk_stage_marker_remove_at(int state_dfd, struct bk_err *err);

/* ---- policy ------------------------------------------------------------------------------ */

struct bk_stage_policy {
	const char *compatible;	     /* system.conf [system] compatible; NULL: not set */
	bool ignore_compatible;	     /* --ignore-compatible */
	uint64_t floor;		     /* the anti-rollback floor of the boot state */
	const char *booted_version;  /* version in the booted bank; NULL: unknown */
	enum bk_bank_id booted_bank; /* for the message */
	bool allow_downgrade;	     /* --allow-downgrade */
};

/*
 * May the image m be staged? In this order:
 *   -EMEDIUMTYPE  m->compatible differs from p->compatible, or p->compatible is not set
 *                 (unless p->ignore_compatible);
 *   -EKEYREVOKED  m->security_epoch is below p->floor (no override: it would never boot);
 *   -EKEYREVOKED  m->version is older than p->booted_version (bk_version_compare()) unless
 *                 p->allow_downgrade; an equal version is allowed;
 *   -ENOEXEC      a payload name is reserved in a bank (bk_bank_check_manifest()).
 * Messages name the image ("image 'acme-os 1.0.0' ..."). Pure.
 */
int bk_stage_check_policy(const struct bk_manifest *m, const struct bk_stage_policy *p,
			  struct bk_err *err);

/* ---- space ------------------------------------------------------------------------------- */

/*
 * Bytes a bank with block size block_size needs for the image: every payload and the
 * manifest, signature, chunk lists (format 2) and record files rounded up to whole blocks,
 * plus the filesystem's mapping overhead (one block per file and per 32 MiB of a file). Pure.
 */
uint64_t bk_stage_space_needed(const struct bk_manifest *m, size_t manifest_len, size_t sig_len,
			       uint64_t block_size);

/*
 * Will the image fit the bank mounted at bank_dfd once its current content is removed?
 * Compares bk_stage_space_needed() with the free space for unprivileged users (statvfs
 * f_bavail) plus what the current content occupies (bk_bank_usage_at()). Reads only.
 * Returns 0 (*ret_needed and *ret_has filled when not NULL, also on -ENOSPC); -ENOSPC
 * "bank B too small: needs 20.3 MiB, has 13.9 MiB"; other -errno.
 */
int bk_stage_check_space(int bank_dfd, enum bk_bank_id bank, const struct bk_manifest *m,
			 size_t manifest_len, size_t sig_len, uint64_t *ret_needed,
			 uint64_t *ret_has, struct bk_err *err);

/* ---- writing the bank -------------------------------------------------------------------- */

/* Where a stage is; passed to the progress callback. */
struct bk_stage_progress {
	const char *payload;   /* name of the payload being written */
	size_t index;	       /* its position, 0-based ... */
	size_t n_payloads;     /* ... of this many */
	uint64_t payload_done; /* bytes of it written so far */
	uint64_t payload_size;
	uint64_t done;	/* bytes of every payload written so far */
	uint64_t total; /* bytes of every payload */
	bool end;	/* this payload is complete (written, renamed) */
};

typedef void (*bk_stage_progress_fn)(const struct bk_stage_progress *p, void *userdata);

/*
 * Where payload bytes come from when not from the bundle's fd (a URL: bk-fetch.h): read
 * exactly len bytes of payload p from its offset off (a whole chunk) into buf. Called by one
 * thread at a time. Returns 0 or -errno with err. Nothing it returns is trusted: every chunk
 * is checked against the payload's chunk list before it is written.
 */
struct bk_stage_source {
	int (*read)(void *userdata, const struct bk_payload *p, uint64_t off, void *buf, size_t len,
		    struct bk_err *err);
	void *userdata;
};

/* Where an interrupted stage of the same bundle stopped (docs/stage-url.md, "Resume"). */
struct bk_stage_resume {
	size_t payload;	 /* payloads before it are complete files in the bank ... */
	uint64_t chunks; /* ... and its first chunks are in its ".partial." file */
};

/*
 * May a stage of the bundle whose signed manifest has SHA-256 manifest_hex (hex), from url into
 * bank, resume where the earlier run that left marker prev stopped (docs/stage-url.md,
 * "Resume")? True, and *ret filled, when prev is a stage from the same URL, of the same signed
 * bytes, into the same bank, that bank is empty in the boot state (bank_empty), and prev's
 * payload is one of the n_payloads (or n_payloads: every payload complete). Pure.
 */
bool bk_stage_resume_point(const struct bk_stage_marker *prev, const char *url,
			   const char *manifest_hex, enum bk_bank_id bank, bool bank_empty,
			   size_t n_payloads, struct bk_stage_resume *ret);

/* Where the bytes written came from. */
struct bk_stage_stats {
	uint64_t fetched; /* read from the bundle (its fd or the source) */
	uint64_t reused;  /* delta: chunks read from the booted bank (and checked) */
	uint64_t resumed; /* already in the bank from an interrupted stage, verified again */
};

/*
 * A resumable stage records a checkpoint after at least this many chunks (8 MiB) and, but for
 * the first one of a payload, at least this long after the previous one (an fdatasync of the
 * payload and an atomic write of the marker cost a few milliseconds each on a busy disk).
 */
#define BK_STAGE_CHECKPOINT_CHUNKS 8
#define BK_STAGE_CHECKPOINT_MS	   1000

struct bk_stage_write_options {
	/*
	 * Called by the calling thread when a payload starts, after each chunk (1 MiB) of it is
	 * hashed and written, and when it ends (written, renamed): the callback
	 * throttles what it shows. NULL: no progress.
	 */
	bk_stage_progress_fn progress;
	void *userdata;
	uint64_t staged_time; /* for the record; 0: now */
	/* Format 2 only, for the three below. NULL: payloads are read from the bundle's fd. */
	const struct bk_stage_source *source;
	/*
	 * Delta staging: the root of the booted bank (mounted read-only). When it has its chunk
	 * lists (manifest.chunks, checked against its manifest.json: bk_bank_chunks_read_at()),
	 * each chunk's digest is looked up among every chunk of every payload there before
	 * anything is read: a chunk found is read from where the lists say (any payload, any
	 * place) and checked against the new chunk list as it is read, one that does not check
	 * is fetched; a chunk not found is fetched without reading the booted bank. Without
	 * lists (a bank staged by an older bootbank or from a format-1 bundle), the chunk at the
	 * same place of the file of the same name is read and checked, and fetched when it does
	 * not match.
	 */
	bool reuse;
	int reuse_dfd;
	/*
	 * NULL: clear the bank first. Else continue an interrupted stage of the same bundle:
	 * nothing is cleared; every chunk already in the bank is read and checked against its
	 * list again, and the stage goes on from the first one that is missing or does not match.
	 */
	const struct bk_stage_resume *resume;
	/*
	 * Optional: called by the writing thread (see BK_STAGE_CHECKPOINT_CHUNKS) once
	 * the first chunks chunks of payload number payload are durable (fdatasync) in its
	 * ".partial." file; a failure stops the stage.
	 */
	int (*checkpoint)(void *userdata, size_t payload, uint64_t chunks, struct bk_err *err);
	void *checkpoint_userdata;
	struct bk_stage_stats *stats; /* optional, filled */
};

/*
 * Write the image of bundle b (signature verified, manifest loaded) into the bank whose
 * filesystem root is bank_dfd (mounted read-write by the caller, its boot state already
 * empty):
 *   1. bk_bank_clear_at(): bank.json first, then the old content;
 *   2. each payload in manifest order: ".partial.<name>" created O_EXCL, filled while the
 *      same bytes are hashed (read once from the bundle's fd into private buffers: one
 *      thread reads, the caller hashes, one thread writes; a payload of one chunk is done
 *      by the caller alone), closed, renamed to <name> when the digest matches the manifest
 *      (bk_bundle_check_digest()); then one syncfs() makes every payload durable (no fsync
 *      per payload: issue 17, item 8);
 *   3. manifest.json (the exact signed bytes), manifest.sig (the DER signature that
 *      verified, as read once by bk_bundle_open_fd(): never re-read) and, format 2,
 *      manifest.chunks (the chunk lists every payload was checked against), each atomically;
 *   4. bank.json last (atomically), then syncfs().
 * On failure the ".partial." file of the payload being written is removed; what was written
 * before stays (the bank has no bank.json, so it is incomplete). *ret_record (optional) gets
 * the record written. Returns 0; -EUCLEAN a payload does not match the manifest; -ENOSPC;
 * -EIO; -EPERM when b's signature was not verified; other -errno. Blocks on fsync.
 */
int bk_stage_write_bank(struct bk_bundle *b, int bank_dfd, const struct bk_stage_write_options *o,
			struct bk_bank_record **ret_record, struct bk_err *err);
