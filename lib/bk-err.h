/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Errors: every function that can fail returns a negative errno; functions whose failure a
 * human must understand also fill a caller-owned struct bk_err (last parameter, NULL allowed).
 *
 * Domain meanings of errno values in bootbank (main() maps them to exit codes, see
 * bk_exit_code_from_errno() and docs/exit-codes.md):
 *   -ENOENT        no such bank, image, payload, revision or file
 *   -EBUSY         the lock is held, a bank is booted or mounted, maintenance mode is on
 *   -ESTALE        state changed under us
 *   -ENOEXEC       a bundle, header, manifest or boot state store is malformed or truncated
 *   -EBADMSG       a signature does not verify
 *   -EKEYREJECTED  the signer is not trusted (no chain to the keyring, wrong key usage)
 *   -EKEYEXPIRED   the signer certificate is not valid at verification time
 *   -EUCLEAN       payload bytes do not match their SHA-256 (corrupt payload)
 *   -EMEDIUMTYPE   the image is for another `compatible`
 *   -EKEYREVOKED   the image is a downgrade or below the security epoch floor
 *   -ENOSPC, -EROFS, -EIO as usual
 */
#pragma once

#include <stdbool.h>

#include "bk-cleanup.h"

struct bk_err {
	int code;
	char msg[512];
};

/* Exit codes of every bootbank program; one table, documented in docs/exit-codes.md. */
enum bk_exit {
	BK_EXIT_OK = 0,
	BK_EXIT_FAILURE = 1,
	BK_EXIT_USAGE = 2,     /* bad command line or configuration */
	BK_EXIT_BUSY = 3,      /* another operation holds the lock, or maintenance mode */
	BK_EXIT_NOT_FOUND = 4, /* no such bank, image, payload, revision or file */
	BK_EXIT_VERIFY = 5,    /* signature bad, signer untrusted or expired */
	BK_EXIT_MALFORMED = 6, /* bundle, manifest or boot state malformed or truncated */
	BK_EXIT_CORRUPT = 7,   /* payload digest mismatch */
	BK_EXIT_IO = 8,	       /* I/O error */
	BK_EXIT_REFUSED = 9,   /* incompatible, downgrade or below the security floor */
	BK_EXIT_NOSPACE = 10,  /* no space left on a device */
	_BK_EXIT_MAX,
};

/*
 * Record an error: only the first (innermost) cause is kept. Sets errno to -r so "%m" works
 * in fmt, and returns r (negative). err may be NULL. r must be negative.
 */
int bk_err_set(struct bk_err *err, int r, const char *fmt, ...) _printf_(3, 4);

/*
 * Prefix the recorded message with context ("slot A: <old message>"). Returns err->code
 * (or -EINVAL with a NULL or empty err, which is a programmer error at the caller).
 */
int bk_err_prefix(struct bk_err *err, const char *fmt, ...) _printf_(2, 3);

/*
 * Append to the recorded message ("<old message>; what followed"), cut at the buffer's end.
 * Returns err->code (or -EINVAL with a NULL or empty err).
 */
int bk_err_suffix(struct bk_err *err, const char *fmt, ...) _printf_(2, 3);

/* Reset to "no error". */
void bk_err_clear(struct bk_err *err);

/* True when an error has been recorded. */
bool bk_err_is_set(const struct bk_err *err);

/* The exit code for a negative errno, per the table in docs/exit-codes.md. */
int bk_exit_code_from_errno(int r);

/* A short lowercase name for an exit code ("busy"), NULL when out of range. */
const char *bk_exit_code_to_string(int code);

/*
 * The D-Bus error name bankd replies with for an exit code ("org.bootbank.Error.Busy"), one
 * per exit code (docs/dbus-api.md); NULL for BK_EXIT_OK and codes out of range.
 */
const char *bk_exit_code_to_dbus_error(int code);

/* Replace the recorded code by r (keeping the message); returns r. err may be NULL. */
int bk_err_recode(struct bk_err *err, int r);
