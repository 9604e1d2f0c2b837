/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The depot: a directory of verified bundles waiting to be staged, one file per image name and
 * version, "NAME_VERSION.bbi" (versions never contain '_', so the file name is unique).
 * docs/bundle-format.md, "Depot". The caller holds the bootbank lock around import and remove.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "bk-bundle.h"
#include "bk-err.h"
#include "bk-manifest.h"

#define BK_DEPOT_SUFFIX ".bbi"

/* One bundle in the depot. */
struct bk_depot_entry {
	char *file;		      /* name in the depot directory */
	uint64_t size;		      /* bytes */
	struct bk_manifest *manifest; /* NULL when the file could not be read (see error) */
	uint8_t manifest_sha256[BK_SHA256_LEN]; /* of the manifest bytes, when manifest is set */
	char *error;				/* why not, else NULL */
};

/*
 * "NAME_VERSION.bbi" into a new string, or -EINVAL when name or version is not valid for a
 * manifest (so the result is always a single path component). Returns 0 or -errno.
 */
int bk_depot_file_name(const char *name, const char *version, char **ret);

/*
 * Import the bundle open in fd into the depot directory depot_dfd: verify header and signature
 * against keyring (cms_flags: BK_CMS_NO_CHECK_TIME), load the manifest, then copy the bundle
 * into a temp file ".#NAME_VERSION.bbi.<random>" in the depot while hashing every payload
 * (bk_bundle_copy_to(): the bytes written are the bytes hashed). Only when all match is the
 * temp file fsync'ed, renamed to NAME_VERSION.bbi (RENAME_NOREPLACE unless force) and the
 * directory fsync'ed; on any failure the temp file is removed and the depot is unchanged.
 * Leftover temp files of interrupted imports are removed first. *ret_file (optional,
 * malloc'ed) gets the depot file name. Returns 0; -EEXIST (already there, without force);
 * the verification errors (-ENOEXEC, -EBADMSG, -EKEYREJECTED, -EKEYEXPIRED, -EUCLEAN);
 * -ENOSPC, -EIO... Blocks on fsync.
 */
/*
 * The same from a URL (bk-fetch.h): the temp file in the depot is the bundle itself, filled
 * in place: header, manifest and signature fetched and verified, then the chunk table, then
 * every chunk of every payload fetched, checked against its list and only then written at
 * its offset (padding stays a hole, so zero). Format 1 is refused (-ENOEXEC: no chunk lists).
 * Returns as bk_depot_import() plus bk_fetch_range()'s errors (-EIO, -ENOENT, -EKEYREJECTED).
 */
struct bk_fetch;
int bk_depot_import_url(int depot_dfd, struct bk_fetch *f, const struct bk_keyring *keyring,
			unsigned cms_flags, bool force, char **ret_file, struct bk_err *err);

int bk_depot_import(int depot_dfd, int fd, const struct bk_keyring *keyring, unsigned cms_flags,
		    bool force, char **ret_file, struct bk_err *err);

/*
 * Read every "*.bbi" regular file in the depot (header and manifest only: they were verified
 * when imported), sorted by name, then version (bk_version_compare), then file name. A file
 * that cannot be read is listed with manifest NULL and its error. *ret (bk_depot_entries_free)
 * and *ret_n written on success. Returns 0, -ENOMEM or the -errno of reading the directory.
 */
int bk_depot_list(int depot_dfd, struct bk_depot_entry **ret, size_t *ret_n, struct bk_err *err);

void bk_depot_entries_free(struct bk_depot_entry *entries, size_t n);

/*
 * Remove image NAME VERSION from the depot (unlink, fsync of the directory). Returns 0;
 * -ENOENT "no image ..."; -EINVAL (not a valid name or version); other -errno.
 */
int bk_depot_remove(int depot_dfd, const char *name, const char *version, struct bk_err *err);
