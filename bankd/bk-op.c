/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The operations layer's context: root, configuration, lock, messages (bankd/bk-op.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bk-cms.h"
#include "bk-fetch.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-lock.h"
#include "bk-op-recover.h"
#include "bk-op.h"

#define BK_TOKEN_MAX 4096 /* bytes of [fetch] bearer-token-file */

static int load_config(struct bk_op_ctx *ctx, const char *config_arg, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	if (config_arg) {
		ctx->config_path = strdup(config_arg);
		if (!ctx->config_path)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r = bk_config_load_at(&ctx->config, AT_FDCWD, config_arg, config_arg, err);
		if (r == -ENOENT)
			return bk_err_set(err, r, "configuration '%s' does not exist", config_arg);
	} else {
		ctx->config_path = strdup(bk_op_path(ctx, BK_OP_ETC_DIR "/" BK_CONFIG_NAME));
		if (!ctx->config_path)
			return bk_err_set(err, -ENOMEM, "out of memory");
		dfd = bk_open_beneath(ctx->root_fd, BK_OP_ETC_DIR,
				      O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
		if (dfd == -ENOENT)
			return 0;
		if (dfd < 0)
			return bk_err_set(err, dfd, "cannot open '%s': %m",
					  bk_op_path(ctx, BK_OP_ETC_DIR));
		r = bk_config_load_at(&ctx->config, dfd, BK_CONFIG_NAME, ctx->config_path, err);
		if (r == -ENOENT)
			return 0;
	}
	if (r < 0)
		return r;
	ctx->configured = true;
	return 0;
}

int bk_op_ctx_open(struct bk_op_ctx *ctx, const char *root, const char *config_arg,
		   struct bk_err *err)
{
	int r;

	*ctx = (struct bk_op_ctx){ .root = root, .root_fd = -EBADF, .lock_fd = -EBADF };
	r = bk_config_init(&ctx->config);
	if (r < 0)
		return bk_err_set(err, r, "out of memory");
	if (root[0] == '\0')
		return bk_err_set(err, -EINVAL, "--root must not be empty");
	ctx->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ctx->root_fd < 0)
		return bk_err_set(err, -errno, "cannot open root '%s': %m", root);
	return load_config(ctx, config_arg, err);
}

void bk_op_ctx_release(struct bk_op_ctx *ctx)
{
	ctx->lock_fd = bk_lock_release(ctx->lock_fd);
	ctx->disk = bk_disk_free(ctx->disk);
	ctx->last_recovery = bk_op_recovery_free(ctx->last_recovery);
	bk_config_release(&ctx->config);
	free(ctx->config_path);
	ctx->config_path = NULL;
	closep(&ctx->root_fd);
}

void bk_op_log(struct bk_op_ctx *ctx, int level, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	int n;

	if (!ctx->obs.message)
		return;
	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n >= 0)
		ctx->obs.message(ctx->obs.userdata, level, msg);
}

const char *bk_op_path(struct bk_op_ctx *ctx, const char *relpath)
{
	static char buf[4096];
	const char *sep = ctx->root[strlen(ctx->root) - 1] == '/' ? "" : "/";

	(void) snprintf(buf, sizeof(buf), "%s%s%s", ctx->root, sep, relpath);
	return buf;
}

int bk_op_open_dir(struct bk_op_ctx *ctx, const char *relpath, bool create, int *ret_fd,
		   struct bk_err *err)
{
	int fd;

	if (create)
		return bk_mkdir_p_at(ctx->root_fd, relpath, 0755, ret_fd, err);
	fd = bk_open_beneath(ctx->root_fd, relpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
	if (fd < 0)
		return bk_err_set(err, fd, "cannot open '%s': %m", bk_op_path(ctx, relpath));
	*ret_fd = fd;
	return 0;
}

int bk_op_lock(struct bk_op_ctx *ctx, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	char path[4096];
	int r;

	if (ctx->lock_fd >= 0)
		return 0;
	r = bk_op_open_dir(ctx, BK_OP_RUN_DIR, true, &dfd, err);
	if (r < 0)
		return r;
	(void) snprintf(path, sizeof(path), "%s", bk_op_path(ctx, BK_OP_RUN_DIR));
	r = bk_lock_acquire(dfd, path, ctx->wait, &ctx->lock_fd, err);
	if (r < 0)
		return r;
	/* Every mutating operation first finishes what a killed one left (bk-op-recover.c). */
	return bk_op_recover_after_lock(ctx, err);
}

int bk_op_keyring_load(struct bk_op_ctx *ctx, const char *arg, struct bk_keyring **ret,
		       struct bk_err *err)
{
	const char *path = arg;
	char buf[4096];
	int r;

	if (!path) {
		path = ctx->config.keyring;
		if (strcmp(ctx->root, "/") != 0) {
			(void) snprintf(buf, sizeof(buf), "%s",
					bk_op_path(ctx, path + strspn(path, "/")));
			path = buf;
		}
	}
	r = bk_keyring_load(path, ret, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot load keyring '%s'", path);
	return 0;
}

uint64_t bk_op_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

int bk_op_json_add_nullable(struct json_object *o, const char *key, const char *s)
{
	if (!s)
		return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
	return bk_json_add_string(o, key, s);
}

void bk_op_listf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	const char *sep = *pos > 0 ? "; " : "";
	va_list ap;
	int n;

	if (*pos + 1 >= len)
		return;
	n = snprintf(buf + *pos, len - *pos, "%s", sep);
	if (n < 0)
		return;
	*pos = (size_t) n < len - *pos ? *pos + (size_t) n : len - 1;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*pos = (size_t) n < len - *pos ? *pos + (size_t) n : len - 1;
}

/* What the child of bk_op_call_forked() sends back. */
struct forked_answer {
	int r;
	struct bk_err err;
};

int bk_op_call_forked(struct bk_op_ctx *ctx,
		      int (*fn)(struct bk_op_ctx *ctx, void *userdata, struct bk_err *err),
		      void *userdata, struct bk_err *err)
{
	_cleanup_close_ int rfd = -EBADF, wfd = -EBADF;
	struct forked_answer a = { 0 };
	pid_t pid, parent = getpid();
	int pfd[2], status;
	ssize_t n;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return bk_err_set(err, -errno, "cannot create a pipe: %m");
	rfd = pfd[0];
	wfd = pfd[1];
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return bk_err_set(err, -errno, "cannot fork: %m");
	if (pid == 0) {
		/* Our crash is the caller's crash too: never outlive it. */
		(void) prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		(void) close(TAKE_FD(rfd));
		a.r = fn(ctx, userdata, &a.err);
		_exit(bk_write_full(wfd, &a, sizeof(a)) < 0 ? 1 : 0);
	}
	(void) close(TAKE_FD(wfd));
	n = bk_read_full(rfd, &a, sizeof(a));
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t) sizeof(a))
		return bk_err_set(err, -EIO, "the process that ran a step ended without an answer");
	if (a.r < 0 && err)
		*err = a.err;
	return a.r;
}

/* ROOT + path (path absolute) in a new string; NULL path: NULL in *ret. */
static int beneath_root(struct bk_op_ctx *ctx, const char *path, char **ret)
{
	const char *root = ctx->root && strcmp(ctx->root, "/") != 0 ? ctx->root : "";

	*ret = NULL;
	if (!path)
		return 0;
	return asprintf(ret, "%s%s", root, path) < 0 ? -ENOMEM : 0;
}

/*
 * The bearer token: the first line of path (beneath the root) into buf (size BK_TOKEN_MAX + 1).
 * The file must be a regular file of at most BK_TOKEN_MAX bytes, owned by the user bankctl
 * runs as (root) and with no permission for group or others, as ssh wants of a private key:
 * whoever can read it can fetch as this machine, and whoever can write it chooses what this
 * machine sends. The token has its own file so that system.conf can stay readable by all.
 */
static int read_token(struct bk_op_ctx *ctx, const char *path, char *buf, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	ssize_t n;

	while (*path == '/')
		path++;
	fd = openat(ctx->root_fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 && errno == ELOOP)
		return bk_err_set(
			err, -ELOOP,
			"[fetch] bearer-token-file '%s' is a symlink (name the file itself)",
			bk_op_path(ctx, path));
	if (fd < 0)
		return bk_err_set(err, -errno, "[fetch] bearer-token-file: cannot open '%s': %m",
				  bk_op_path(ctx, path));
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "[fetch] bearer-token-file: cannot stat '%s': %m",
				  bk_op_path(ctx, path));
	if (!S_ISREG(st.st_mode))
		return bk_err_set(err, -EBADFD,
				  "[fetch] bearer-token-file '%s' is not a regular file",
				  bk_op_path(ctx, path));
	if (st.st_uid != geteuid()) {
		char who[32];

		if (geteuid() == 0)
			(void) snprintf(who, sizeof(who), "root");
		else
			(void) snprintf(who, sizeof(who), "uid %u", (unsigned) geteuid());
		return bk_err_set(err, -EACCES,
				  "[fetch] bearer-token-file '%s' is owned by uid %u, not %s: "
				  "another user can read or replace the token (chown it)",
				  bk_op_path(ctx, path), (unsigned) st.st_uid, who);
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		return bk_err_set(err, -EACCES,
				  "[fetch] bearer-token-file '%s' has mode %04o: group or others "
				  "can read or replace the token (chmod 600 it)",
				  bk_op_path(ctx, path), (unsigned) (st.st_mode & 07777));
	n = bk_read_full(fd, buf, BK_TOKEN_MAX + 1);
	if (n < 0)
		return bk_err_set(err, (int) n, "[fetch] bearer-token-file: cannot read '%s': %m",
				  bk_op_path(ctx, path));
	if (n > BK_TOKEN_MAX)
		return bk_err_set(err, -EFBIG,
				  "[fetch] bearer-token-file '%s' is larger than %d bytes",
				  bk_op_path(ctx, path), BK_TOKEN_MAX);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

int bk_op_fetch_new(struct bk_op_ctx *ctx, const char *url, struct bk_fetch **ret,
		    struct bk_err *err)
{
	const struct bk_config *c = &ctx->config;
	_cleanup_free_ char *ca = NULL, *cert = NULL, *key = NULL;
	char token[BK_TOKEN_MAX + 1] = "";
	struct bk_fetch_config fc = {
		.connect_timeout_sec = c->fetch_connect_timeout_sec,
		.low_speed_timeout_sec = c->fetch_timeout_sec,
		.retries = c->fetch_retries,
		.retry_delay_ms = c->fetch_retry_delay_ms,
	};
	int r;

	if (beneath_root(ctx, c->fetch_ca_file, &ca) < 0 ||
	    beneath_root(ctx, c->fetch_client_cert, &cert) < 0 ||
	    beneath_root(ctx, c->fetch_client_key, &key) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (c->fetch_bearer_token_file) {
		r = read_token(ctx, c->fetch_bearer_token_file, token, err);
		if (r < 0) {
			explicit_bzero(token, sizeof(token));
			return r;
		}
	}
	fc.ca_file = ca;
	fc.client_cert = cert;
	fc.client_key = key;
	fc.bearer_token = token[0] ? token : NULL;
	r = bk_fetch_new(url, &fc, ret, err);
	explicit_bzero(token, sizeof(token));
	return r;
}
