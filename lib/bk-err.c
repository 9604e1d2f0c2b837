/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bk-err.h"

int bk_err_set(struct bk_err *err, int r, const char *fmt, ...)
{
	va_list ap;

	if (r >= 0)
		r = -EINVAL;
	errno = -r;
	if (!err || err->code < 0)
		return r;

	err->code = r;
	va_start(ap, fmt);
	(void) vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	errno = -r;
	return r;
}

int bk_err_prefix(struct bk_err *err, const char *fmt, ...)
{
	char prefix[sizeof(err->msg)];
	size_t plen, keep;
	va_list ap;

	if (!err || err->code >= 0)
		return -EINVAL;

	va_start(ap, fmt);
	(void) vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);

	/* "<prefix>: <old message>", cut at the buffer's end. */
	plen = strlen(prefix);
	if (plen > sizeof(err->msg) - 3)
		plen = sizeof(err->msg) - 3;
	keep = strnlen(err->msg, sizeof(err->msg) - 1);
	if (keep > sizeof(err->msg) - 3 - plen)
		keep = sizeof(err->msg) - 3 - plen;
	memmove(err->msg + plen + 2, err->msg, keep);
	err->msg[plen + 2 + keep] = '\0';
	memcpy(err->msg, prefix, plen);
	err->msg[plen] = ':';
	err->msg[plen + 1] = ' ';
	return err->code;
}

int bk_err_suffix(struct bk_err *err, const char *fmt, ...)
{
	size_t len;
	va_list ap;

	if (!err || err->code >= 0)
		return -EINVAL;
	len = strnlen(err->msg, sizeof(err->msg) - 1);
	va_start(ap, fmt);
	(void) vsnprintf(err->msg + len, sizeof(err->msg) - len, fmt, ap);
	va_end(ap);
	return err->code;
}

void bk_err_clear(struct bk_err *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}

bool bk_err_is_set(const struct bk_err *err)
{
	return err && err->code < 0;
}

int bk_exit_code_from_errno(int r)
{
	if (r >= 0)
		return BK_EXIT_OK;

	switch (-r) {
	case EBUSY:
	case EWOULDBLOCK:
		return BK_EXIT_BUSY;
	case ENOENT:
	case ENODEV:
	case ENXIO:
		return BK_EXIT_NOT_FOUND;
	case EBADMSG:
	case EKEYREJECTED:
	case EKEYEXPIRED:
		return BK_EXIT_VERIFY;
	case ENOEXEC:
		return BK_EXIT_MALFORMED;
	case EUCLEAN:
		return BK_EXIT_CORRUPT;
	case EIO:
		return BK_EXIT_IO;
	case EMEDIUMTYPE:
	case EKEYREVOKED:
		return BK_EXIT_REFUSED;
	case ENOSPC:
	case EDQUOT:
		return BK_EXIT_NOSPACE;
	default:
		return BK_EXIT_FAILURE;
	}
}

static const char *const exit_names[_BK_EXIT_MAX] = {
	[BK_EXIT_OK] = "ok",
	[BK_EXIT_FAILURE] = "failure",
	[BK_EXIT_USAGE] = "usage or configuration error",
	[BK_EXIT_BUSY] = "busy",
	[BK_EXIT_NOT_FOUND] = "not found",
	[BK_EXIT_VERIFY] = "signature bad, untrusted or expired",
	[BK_EXIT_MALFORMED] = "malformed or truncated input (bundle, manifest, boot state)",
	[BK_EXIT_CORRUPT] = "corrupt payload",
	[BK_EXIT_IO] = "I/O error",
	[BK_EXIT_REFUSED] = "refused by policy (incompatible, downgrade, security floor)",
	[BK_EXIT_NOSPACE] = "no space left",
};

const char *bk_exit_code_to_string(int code)
{
	if (code < 0 || code >= _BK_EXIT_MAX)
		return NULL;
	return exit_names[code];
}

/* Beside exit_names: a new exit code gets its D-Bus error name here too (docs/dbus-api.md). */
static const char *const dbus_errors[_BK_EXIT_MAX] = {
	[BK_EXIT_OK] = NULL,
	[BK_EXIT_FAILURE] = "org.bootbank.Error.Failed",
	[BK_EXIT_USAGE] = "org.bootbank.Error.Usage",
	[BK_EXIT_BUSY] = "org.bootbank.Error.Busy",
	[BK_EXIT_NOT_FOUND] = "org.bootbank.Error.NotFound",
	[BK_EXIT_VERIFY] = "org.bootbank.Error.Verification",
	[BK_EXIT_MALFORMED] = "org.bootbank.Error.Malformed",
	[BK_EXIT_CORRUPT] = "org.bootbank.Error.Corrupt",
	[BK_EXIT_IO] = "org.bootbank.Error.IO",
	[BK_EXIT_REFUSED] = "org.bootbank.Error.Refused",
	[BK_EXIT_NOSPACE] = "org.bootbank.Error.NoSpace",
};

const char *bk_exit_code_to_dbus_error(int code)
{
	if (code < 0 || code >= _BK_EXIT_MAX)
		return NULL;
	return dbus_errors[code];
}

int bk_err_recode(struct bk_err *err, int r)
{
	if (err && err->code < 0)
		err->code = r;
	errno = -r;
	return r;
}
