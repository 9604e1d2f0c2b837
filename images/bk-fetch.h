/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading a bundle from an http:// or https:// URL with HTTP range requests (libcurl), for
 * stage and depot import (docs/stage-url.md). A bk_fetch is one URL and one connection (one
 * thread at a time). Every range is checked against what was asked for (status 206, the
 * Content-Range, the length, the total size); the file must not change between requests
 * (If-Range with the first response's strong ETag, or its Last-Modified); redirects are
 * followed only to the same origin (scheme, host, port). Nothing here logs, needs root or
 * trusts a byte: the caller verifies what it gets (header, signature, manifest, chunk lists,
 * chunks).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk-err.h"
#include "bk-manifest.h"

/* At most this many same-origin redirects per request. */
#define BK_FETCH_MAX_REDIRECTS 5

struct bk_fetch_config {
	const char *ca_file;	  /* PEM CA bundle for https; NULL: the system's CAs */
	const char *client_cert;  /* PEM client certificate (https); NULL: none */
	const char *client_key;	  /* its key; NULL: in client_cert */
	const char *bearer_token; /* sent as "Authorization: Bearer ..." over https only */
	uint64_t connect_timeout_sec;
	uint64_t low_speed_timeout_sec; /* abort a transfer slower than 1 KiB/s for this long */
	uint64_t retries;		/* attempts after the first, for transient failures */
	uint64_t retry_delay_ms;	/* before the first retry; doubles, at most 8 s */
};

struct bk_fetch; /* opaque */

/* What a fetch has moved so far. */
struct bk_fetch_stats {
	uint64_t bytes;	   /* body bytes received and accepted */
	uint64_t requests; /* range requests sent (retries and redirects included) */
	uint64_t retries;
};

/* Is s an http:// or https:// URL (what stage and depot import take as a URL)? Pure. */
bool bk_fetch_is_url(const char *s);

/*
 * "bytes FIRST-LAST/TOTAL" (the value of a Content-Range header, spaces around it allowed):
 * 0 and the three numbers; -EINVAL for anything else (also "*" sizes, LAST < FIRST, LAST >=
 * TOTAL). Pure.
 */
int bk_fetch_parse_content_range(const char *value, uint64_t *ret_first, uint64_t *ret_last,
				 uint64_t *ret_total);

/*
 * Do URLs a and b have the same origin (scheme, host and port, the default port filled in;
 * host compared without case)? false when either does not parse. Uses libcurl's URL parser.
 */
bool bk_fetch_same_origin(const char *a, const char *b);

/*
 * Set up a fetch of url (http or https; -EINVAL otherwise: "'URL' is not an http:// or
 * https:// URL"). Sends nothing yet. *ret (bk_fetch_free()) written on success. -ENOMEM.
 */
int bk_fetch_new(const char *url, const struct bk_fetch_config *c, struct bk_fetch **ret,
		 struct bk_err *err);

/*
 * Read exactly len bytes at offset off of the remote file into buf. The first call learns the
 * file's size and validator (ETag, else Last-Modified); later ones must see the same size and
 * send If-Range, so a file replaced between requests is found. Transient failures (connect,
 * timeout, reset, 5xx, 408, 429, a short body) are retried c->retries times with a growing
 * delay. Returns 0; -ENOENT 404/410; -EKEYREJECTED the server's TLS certificate is not trusted;
 * -EIO also when the file changed on the server (size, ETag or Last-Modified); -ENOEXEC off + len
 * is past the end of the file; -EIO anything else (no ranges, refused redirect, other status,
 * transport error after the retries). Messages name the URL and the range; a 401, a 403 and
 * (https) a 400 also say which [fetch] credentials to check, given what was sent.
 */
int bk_fetch_range(struct bk_fetch *f, uint64_t off, void *buf, size_t len, struct bk_err *err);

/* The remote file's size (known after the first bk_fetch_range(); 0 before). */
uint64_t bk_fetch_get_size(const struct bk_fetch *f);

/* The URL the fetch reads now (a same-origin redirect changes it). Owned by f. */
const char *bk_fetch_get_url(const struct bk_fetch *f);

/* Was the last failure one a later run could get past (transport, not the file's bytes)? */
bool bk_fetch_last_failure_transient(const struct bk_fetch *f);

void bk_fetch_get_stats(const struct bk_fetch *f, struct bk_fetch_stats *ret);

/*
 * The start of a bundle: fetch its header (128 bytes) and check it against the remote size,
 * then everything up to the first payload (manifest, signature, padding). Returns a new memfd
 * (O_CLOEXEC) of the remote file's size holding those bytes, the rest a hole, for
 * bk_bundle_open_fd(): the payloads are never read from it. -ENOEXEC malformed or truncated
 * ("header: ..."), bk_fetch_range()'s errors.
 */
int bk_fetch_bundle_head(struct bk_fetch *f, int *ret_fd, struct bk_err *err);

/* The same into fd, an empty regular file (sized to the remote file, sparse). */
int bk_fetch_bundle_head_into(struct bk_fetch *f, int fd, struct bk_err *err);

/*
 * Format 2: fetch the zero padding after every payload (to the next 4 KiB boundary) and the
 * chunk table (from the lowest chunks_offset of m to the end of the file) into fd, the memfd of
 * bk_fetch_bundle_head(), once the manifest m is verified and loaded. The caller then checks
 * the padding with bk_bundle_check_padding() (bk_bundle_load_manifest() saw only the hole) and
 * the lists with bk_bundle_load_chunks(). Returns 0 or bk_fetch_range()'s errors.
 */
int bk_fetch_chunk_table(struct bk_fetch *f, int fd, const struct bk_manifest *m,
			 struct bk_err *err);

struct bk_fetch *bk_fetch_free(struct bk_fetch *f);

BK_DEFINE_CLEANUP(struct bk_fetch *, bk_fetch_free)
