/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A GRUB environment block (grubenv): the file `grub-editenv` creates and GRUB's `load_env` /
 * `save_env` read and rewrite in place. Exactly BK_GRUBENV_SIZE bytes: the header line
 * BK_GRUBENV_HEADER, then `name=value\n` lines, then '#' padding to the end. In a value, '\\'
 * and '\n' are written with a backslash before them; on reading, a backslash takes the next
 * byte literally. A line starting with '#' is a comment. These are the rules of GRUB's
 * lib/envblk.c, which this parser follows byte for byte, so bankctl sees what GRUB sees.
 *
 * The object keeps the variables in file order (GRUB rewrites them in place, so the order is
 * part of the format: see docs/crash-safety.md). Pure: no I/O.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "bk-err.h"

#define BK_GRUBENV_SIZE	  1024
#define BK_GRUBENV_HEADER "# GRUB Environment Block\n"

struct bk_grubenv;

/* A new, empty environment. NULL when out of memory. */
struct bk_grubenv *bk_grubenv_new(void);

/* Free e (NULL allowed); returns NULL. */
struct bk_grubenv *bk_grubenv_free(struct bk_grubenv *e);

BK_DEFINE_CLEANUP(struct bk_grubenv *, bk_grubenv_free)

/*
 * Parse a block of len bytes, as GRUB's load_env does. Returns 0 and a new object in *ret, or:
 *   -ENOEXEC  len is not BK_GRUBENV_SIZE, the header is missing, or the block holds a NUL
 *             byte (message: "is 12 bytes, not 1024", "no 'GRUB Environment Block' header",
 *             "NUL byte at offset 40")
 *   -ENOMEM
 * Lines GRUB cannot read (a name with no '=' before the end, a value running past the end)
 * end the parse there, as in GRUB: the variables before them are kept.
 */
int bk_grubenv_parse(const char *buf, size_t len, struct bk_grubenv **ret, struct bk_err *err);

/*
 * Write e as a block of exactly BK_GRUBENV_SIZE bytes into buf (len >= BK_GRUBENV_SIZE).
 * Returns 0, -EINVAL when len is too small, or -ENOSPC when the variables need more room
 * ("the variables need 1100 bytes, a grubenv holds 1024"); buf is then unspecified.
 */
int bk_grubenv_format(const struct bk_grubenv *e, char *buf, size_t len, struct bk_err *err);

/*
 * A name GRUB can read back and that bk_grubenv_set() accepts: non-empty, not starting with
 * '#', no '=', no control character.
 */
bool bk_grubenv_name_is_valid(const char *name);

/*
 * The value of name (its last occurrence, as load_env sets them in order), or NULL when it is
 * not set. The string belongs to e and lives until the next change of e.
 */
const char *bk_grubenv_get(const struct bk_grubenv *e, const char *name);

/*
 * Set name to value (any text without NUL; '\\' and '\n' are escaped when formatted). An
 * existing variable keeps its place (its later duplicates, which GRUB would read instead, are
 * removed); a new one is appended. Returns 0, -EINVAL for an invalid name (message), -ENOMEM.
 */
int bk_grubenv_set(struct bk_grubenv *e, const char *name, const char *value, struct bk_err *err);

/* Remove every occurrence of name. Returns the number removed (0 when it was not set). */
int bk_grubenv_unset(struct bk_grubenv *e, const char *name);

/*
 * Iterate in file order: start with *it = 0. Returns 0 with *ret_name and *ret_value set (both
 * owned by e), or 1 at the end. Names read from a file are as GRUB reads them (they may be
 * ones bk_grubenv_name_is_valid() refuses); they are written back byte for byte.
 */
int bk_grubenv_next(const struct bk_grubenv *e, size_t *it, const char **ret_name,
		    const char **ret_value);

/*
 * Append to dst every variable of src whose name is not in skip (a NULL-terminated list), in
 * src's order, names and values byte for byte (also names bk_grubenv_set() would refuse).
 * Returns 0, -ENOMEM, or -E2BIG when dst would hold more variables than a block can.
 */
int bk_grubenv_copy_except(struct bk_grubenv *dst, const struct bk_grubenv *src,
			   const char *const *skip, struct bk_err *err);
