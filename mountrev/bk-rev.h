/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mount revisions: the metadata of each revision (STATE/revisions/<id>.json, STATE being
 * ROOT/var/lib/bootbank), its read-only mount at RUN/rev/<id> (RUN = ROOT/run/bootbank)
 * straight from the verified file that holds the payload (a bundle or a bank copy: loop device
 * on that very fd, with offset and size limit), listing, and garbage collection that never
 * removes the current or previous revision nor one that any mount namespace still uses.
 * Mounting and GC need root. Never logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "bk-err.h"

#define BK_REVISIONS_DIR   "revisions"
#define BK_REV_META_MAX	   (16 * 1024)
#define BK_REVISIONS_MAX   4096
#define BK_REV_CURRENT_REC "current" /* STATE/revisions/current: id of the last committed */

struct bk_rev {
	char *id;
	char *image;   /* image name */
	char *version; /* image version */
	char *payload; /* payload name */
	char *fstype;  /* squashfs, erofs */
	char *digest;  /* SHA-256 of the payload bytes, lowercase hex */
	char *parent;  /* revision it was patched from (NULL: none) */
	char *source;  /* absolute path of the file holding the payload (bundle or bank copy) */
	char *bank;    /* "A" or "B": source is that bank's copy (livepatch apply, rev restore);
			* rev restore mounts it only when that bank is booted. NULL: another file */
	uint64_t offset, size;
	uint64_t created; /* CLOCK_REALTIME seconds */
};

void bk_rev_release(struct bk_rev *r);
struct bk_rev *bk_revs_free(struct bk_rev *revs, size_t n);

/*
 * Check the fields (valid id, fstype squashfs/erofs, 64 hex digest, absolute source, bank
 * NULL, "A" or "B").
 */
int bk_rev_validate(const struct bk_rev *r, struct bk_err *err);

/* Write (revs_dfd, <id>.json) atomically; create=true fails with -EEXIST if it exists. */
int bk_rev_save(int revs_dfd, const struct bk_rev *r, bool create, struct bk_err *err);

/* Read one; -ENOENT ("no revision 'x'"), -ENOEXEC when malformed. */
int bk_rev_load(int revs_dfd, const char *id, struct bk_rev *ret, struct bk_err *err);

/* Every revision, oldest first (created, then id). *ret NULL when none. */
int bk_rev_list(int revs_dfd, struct bk_rev **ret, size_t *ret_n, struct bk_err *err);

/* Remove (revs_dfd, <id>.json), fsync the directory. */
int bk_rev_remove_meta(int revs_dfd, const char *id, struct bk_err *err);

/* A new JSON object of r (NULL on ENOMEM). */
struct json_object *bk_rev_to_json(const struct bk_rev *r);

/*
 * Hash [offset, offset+size) of fd (pread, the fd is not moved) and compare with r->digest
 * (or, when r->digest is NULL, fill it in). -EUCLEAN ("payload of revision 'x' does not match
 * its digest") on a mismatch.
 */
int bk_rev_hash_fd(int fd, struct bk_rev *r, struct bk_err *err);

/*
 * Mount the revision at RUN/rev/<id> (created) from fd (the file that was hashed, never
 * re-opened) and [r->offset, +r->size) with bk_mount_loop_fd() (read-only loop device,
 * autoclear, nosuid, nodev). run_path is RUN as a path (the mount target is a path).
 * -EBUSY when already mounted. Needs root.
 */
int bk_rev_mount_fd(int run_dfd, const char *run_path, const struct bk_rev *r, int fd,
		    struct bk_err *err);

/* Unmount RUN/rev/<id> (the loop device goes with it) and remove the directory. */
int bk_rev_umount(int run_dfd, const char *run_path, const char *id, struct bk_err *err);

/* True when RUN/rev/<id> is a mount point. */
bool bk_rev_is_mounted(int run_dfd, const char *id);

/*
 * Does any mount namespace use the revision? Reads the mount table of every process
 * (/proc/PID/mountinfo through libmount, one per namespace) for a mount of the revision's
 * device (a view, a bind of a subdirectory, a stacked view) other than the revision's own
 * mount RUN/rev/<id> and its copies at that same path in other namespaces. Returns 1 in use
 * (*ret_where, optional: "pid N at /path"), 0 not in use, <0 error.
 */
int bk_rev_in_use(const char *run_path, const char *id, dev_t dev, char **ret_where,
		  struct bk_err *err);
