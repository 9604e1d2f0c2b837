/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bk-fs.h"
#include "bk-hooks.h"
#include "bk-log.h"
#include "bk-workload.h"

BK_DEFINE_CLEANUP(DIR *, closedir)

#define SAFE_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char *const phase_names[_BK_HOOK_PHASE_MAX] = {
	[BK_HOOK_SCAN] = "scan",
	[BK_HOOK_APPLY] = "apply",
	[BK_HOOK_REVERT] = "revert",
	[BK_HOOK_HEALTH] = "health",
};

const char *bk_hook_phase_to_string(enum bk_hook_phase p)
{
	if (p < 0 || p >= _BK_HOOK_PHASE_MAX)
		return NULL;
	return phase_names[p];
}

/* Close and forget: the loops below test the fds for >= 0. */
static void close_fd(int *fd)
{
	if (*fd >= 0)
		(void) close(*fd);
	*fd = -EBADF;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	(void) clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void result_release(struct bk_hook_result *r)
{
	free(r->name);
	free(r->out);
	free(r->errout);
	for (size_t i = 0; i < r->n_restarts; i++)
		free(r->restarts[i]);
	free(r->restarts);
}

struct bk_hook_run *bk_hook_run_free(struct bk_hook_run *run)
{
	if (!run)
		return NULL;
	for (size_t i = 0; i < run->n_results; i++)
		result_release(&run->results[i]);
	free(run->results);
	free(run->veto_reason);
	free(run);
	return NULL;
}

char *bk_hook_last_line(const char *s)
{
	const char *end = s + strlen(s), *start;

	while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	start = end;
	while (start > s && start[-1] != '\n')
		start--;
	return strndup(start, (size_t) (end - start));
}

static void free_names(char **names, size_t n);

/* The name a "restart NAME" line [line, eol) claims: 1 and *ret (malloc'ed), 0 none, -ENOMEM. */
static int claim_of_line(const char *line, const char *eol, char **ret)
{
	static const char word[] = "restart";
	const char *p = line + strlen(word), *end = eol;
	char *name;

	if ((size_t) (eol - line) <= strlen(word) || strncmp(line, word, strlen(word)) != 0 ||
	    (*p != ' ' && *p != '\t'))
		return 0;
	while (p < eol && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	name = strndup(p, (size_t) (end - p));
	if (!name)
		return -ENOMEM;
	/* "restart the world" or a bad name: a finding, not a claim. */
	if (!bk_workload_name_is_valid(name)) {
		free(name);
		return 0;
	}
	*ret = name;
	return 1;
}

int bk_hook_parse_restarts(const char *out, char ***ret, size_t *ret_n)
{
	char **names = NULL;
	size_t n = 0;

	for (const char *line = out; line && *line;) {
		const char *eol = strchrnul(line, '\n');
		char *name = NULL, **nn;
		bool dup = false;
		int r;

		r = claim_of_line(line, eol, &name);
		line = *eol ? eol + 1 : eol;
		if (r < 0) {
			free_names(names, n);
			return r;
		}
		if (r == 0)
			continue;
		for (size_t i = 0; i < n && !dup; i++)
			dup = strcmp(names[i], name) == 0;
		if (dup) {
			free(name);
			continue;
		}
		nn = n < BK_HOOK_RESTARTS_MAX ? realloc(names, (n + 1) * sizeof(*names)) : NULL;
		if (!nn) {
			free(name);
			free_names(names, n);
			return n < BK_HOOK_RESTARTS_MAX ? -ENOMEM : -E2BIG;
		}
		names = nn;
		names[n++] = name;
	}
	*ret = names;
	*ret_n = n;
	return 0;
}

bool bk_hook_run_restarts(const struct bk_hook_run *run, const char *name)
{
	for (size_t i = 0; run && i < run->n_results; i++)
		for (size_t j = 0; j < run->results[i].n_restarts; j++)
			if (strcmp(run->results[i].restarts[j], name) == 0)
				return true;
	return false;
}

static bool hook_name_is_valid(const char *name)
{
	size_t l = strlen(name);

	if (l < 4 || l > 128 || name[0] < '0' || name[0] > '9' || name[1] < '0' || name[1] > '9' ||
	    name[2] != '-')
		return false;
	for (const char *p = name + 3; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    *p))
			return false;
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The sorted hook names of dir; *ret_n 0 when the directory does not exist. */
static int list_hooks(const char *dir_path, char ***ret, size_t *ret_n, struct bk_err *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	char **names = NULL;
	struct dirent *de;
	size_t n = 0;

	d = opendir(dir_path);
	if (!d && errno == ENOENT) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if (!d)
		return bk_err_set(err, -errno, "cannot open hook directory '%s': %m", dir_path);
	names = calloc(BK_HOOKS_MAX, sizeof(*names));
	if (!names)
		return bk_err_set(err, -ENOMEM, "out of memory");
	while ((de = readdir(d))) {
		struct stat st;

		if (!hook_name_is_valid(de->d_name))
			continue;
		/* Follow a symlink (a common way to install a hook); the target must be a file. */
		if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode) ||
		    !(st.st_mode & S_IXUSR)) {
			BK_DBG(REV, "hook '%s/%s' is not an executable file, skipped", dir_path,
			       de->d_name);
			continue;
		}
		/* Hooks run as root: one that others could rewrite is an attack, not a hook. */
		if (st.st_mode & (S_IWGRP | S_IWOTH)) {
			free_names(names, n);
			return bk_err_set(
				err, -EPERM,
				"hook '%s/%s' is writable by group or others, refusing to "
				"run hooks",
				dir_path, de->d_name);
		}
		if (n == BK_HOOKS_MAX) {
			free_names(names, n);
			return bk_err_set(err, -E2BIG, "more than %d hooks in '%s'", BK_HOOKS_MAX,
					  dir_path);
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			free_names(names, n);
			return bk_err_set(err, -ENOMEM, "out of memory");
		}
		n++;
	}
	qsort(names, n, sizeof(*names), cmp_str);
	*ret = names;
	*ret_n = n;
	return 0;
}

int bk_hooks_count(const char *dir_path, struct bk_err *err)
{
	char **names = NULL;
	size_t n = 0;
	int r;

	r = list_hooks(dir_path, &names, &n, err);
	if (r < 0)
		return r;
	free_names(names, n);
	return (int) n;
}

struct capture {
	int fd;
	char *buf;
	size_t len;
	bool truncated;
};

/* Read what is there; 1 at EOF, 0 otherwise, <0 on error. */
static int capture_read(struct capture *c)
{
	char scratch[4096];

	for (;;) {
		size_t room = BK_HOOK_OUTPUT_MAX - c->len;
		char *dst = room > 0 ? c->buf + c->len : scratch;
		size_t want = room > 0 ? room : sizeof(scratch);
		ssize_t n = read(c->fd, dst, want);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 1;
		if (room > 0)
			c->len += (size_t) n;
		else
			c->truncated = true;
	}
}

static int spawn_hook(const char *path, const char *name, enum bk_hook_phase phase,
		      const struct bk_hook_env *env, int out_fd, int err_fd, pid_t *ret_pid)
{
	char e_phase[64], e_hook[192], e_old[320], e_new[320], e_oldv[320], e_newv[320];
	char safe_path[] = SAFE_PATH, a_phase[16], e_dry[] = "BOOTBANK_DRY_RUN=1";
	_cleanup_free_ char *a_path = strdup(path), *a_old = NULL, *a_new = NULL;
	_cleanup_free_ char *e_nofsr = NULL, *e_restart = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	int r;

	a_old = strdup(env->old_rev ? env->old_rev : "");
	a_new = strdup(env->new_rev ? env->new_rev : "");
	if (asprintf(&e_nofsr, "BOOTBANK_NOFSR_WORKLOADS=%s",
		     env->nofsr_workloads ? env->nofsr_workloads : "") < 0)
		e_nofsr = NULL;
	if (asprintf(&e_restart, "BOOTBANK_RESTART_WORKLOADS=%s",
		     env->restart_workloads ? env->restart_workloads : "") < 0)
		e_restart = NULL;
	if (!a_path || !a_old || !a_new || !e_nofsr || !e_restart)
		return -ENOMEM;
	(void) snprintf(a_phase, sizeof(a_phase), "%s", bk_hook_phase_to_string(phase));
	(void) snprintf(e_phase, sizeof(e_phase), "BOOTBANK_PHASE=%s", a_phase);
	(void) snprintf(e_hook, sizeof(e_hook), "BOOTBANK_HOOK=%s", name);
	(void) snprintf(e_old, sizeof(e_old), "BOOTBANK_OLD_REV=%s", a_old);
	(void) snprintf(e_new, sizeof(e_new), "BOOTBANK_NEW_REV=%s", a_new);
	(void) snprintf(e_oldv, sizeof(e_oldv), "BOOTBANK_OLD_VERSION=%s",
			env->old_version ? env->old_version : "");
	(void) snprintf(e_newv, sizeof(e_newv), "BOOTBANK_NEW_VERSION=%s",
			env->new_version ? env->new_version : "");
	{
		char *argv[] = { a_path, a_phase, a_old, a_new, NULL };
		char *envp[] = {
			safe_path, e_phase, e_hook,  e_old,	e_new,
			e_oldv,	   e_newv,  e_nofsr, e_restart, env->dry_run ? e_dry : NULL,
			NULL
		};

		r = posix_spawn_file_actions_init(&fa);
		if (r != 0)
			return -r;
		r = posix_spawnattr_init(&attr);
		if (r != 0) {
			(void) posix_spawn_file_actions_destroy(&fa);
			return -r;
		}
		(void) sigemptyset(&none);
		(void) sigfillset(&dfl);
		r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
		if (r == 0)
			r = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
		if (r == 0)
			r = posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
		/* Own process group, so a timeout kills whatever the hook started too. */
		if (r == 0)
			r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
								    POSIX_SPAWN_SETSIGMASK |
								    POSIX_SPAWN_SETSIGDEF);
		if (r == 0)
			r = posix_spawnattr_setpgroup(&attr, 0);
		if (r == 0)
			r = posix_spawnattr_setsigmask(&attr, &none);
		if (r == 0)
			r = posix_spawnattr_setsigdefault(&attr, &dfl);
		if (r == 0)
			r = posix_spawn(ret_pid, path, &fa, &attr, argv, envp);
		(void) posix_spawnattr_destroy(&attr);
		(void) posix_spawn_file_actions_destroy(&fa);
	}
	return -r;
}

static int run_one(const char *dir_path, const char *name, enum bk_hook_phase phase,
		   const struct bk_hook_env *env, uint64_t timeout_ms, struct bk_hook_result *res,
		   struct bk_err *err)
{
	struct capture cap[2] = { { .fd = -EBADF }, { .fd = -EBADF } };
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int pidfd = -EBADF;
	int out_pipe[2] = { -EBADF, -EBADF }, err_pipe[2] = { -EBADF, -EBADF };
	uint64_t start = now_ms(), deadline = start + timeout_ms;
	bool exited = false;
	int status = 0, r;
	pid_t pid = 0;

	res->name = strdup(name);
	cap[0].buf = malloc(BK_HOOK_OUTPUT_MAX + 1);
	cap[1].buf = malloc(BK_HOOK_OUTPUT_MAX + 1);
	if (asprintf(&path, "%s/%s", dir_path, name) < 0)
		path = NULL;
	if (!res->name || !cap[0].buf || !cap[1].buf || !path) {
		free(cap[0].buf);
		free(cap[1].buf);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	/*
	 * Only our read ends are non-blocking: the write ends (the hook's stdout and stderr) are
	 * separate open files and must block, or a hook writing faster than we read gets EAGAIN.
	 */
	if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0 ||
	    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(err_pipe[0], F_SETFL, O_NONBLOCK) < 0) {
		r = bk_err_set(err, -errno, "cannot create a pipe for hook '%s': %m", name);
		goto fail;
	}
	r = spawn_hook(path, name, phase, env, out_pipe[1], err_pipe[1], &pid);
	close_fd(&out_pipe[1]);
	close_fd(&err_pipe[1]);
	if (r < 0) {
		r = bk_err_set(err, r, "cannot run hook '%s': %s", path, strerror(-r));
		goto fail;
	}
	cap[0].fd = TAKE_FD(out_pipe[0]);
	cap[1].fd = TAKE_FD(err_pipe[0]);
	{
		long fd = syscall(SYS_pidfd_open, pid, 0);

		pidfd = fd < 0 ? -EBADF : (int) fd;
	}

	/* Until the hook exits (pidfd readable) and both pipes are at EOF, or the timeout. */
	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = cap[0].fd, .events = POLLIN },
			{ .fd = cap[1].fd, .events = POLLIN },
			{ .fd = exited ? -1 : pidfd, .events = POLLIN },
		};
		uint64_t now = now_ms();
		int n;

		if (cap[0].fd < 0 && cap[1].fd < 0 && (exited || pidfd < 0))
			break;
		if (now >= deadline) {
			res->timed_out = true;
			(void) kill(-pid, SIGKILL);
			(void) kill(pid, SIGKILL);
			break;
		}
		n = poll(pfd, 3, (int) (deadline - now));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = bk_err_set(err, -errno, "cannot wait for hook '%s': %m", name);
			(void) kill(-pid, SIGKILL);
			(void) waitpid(pid, &status, 0);
			res->status = -1;
			goto fail;
		}
		for (int i = 0; i < 2; i++) {
			if (cap[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (capture_read(&cap[i]) != 0)
				close_fd(&cap[i].fd);
		}
		if (pfd[2].revents & POLLIN) {
			/* Exited: take what is left, but do not wait for its children's pipes. */
			exited = true;
			for (int i = 0; i < 2; i++)
				if (cap[i].fd >= 0) {
					(void) capture_read(&cap[i]);
					close_fd(&cap[i].fd);
				}
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	res->duration_ms = now_ms() - start;
	if (WIFEXITED(status) && !res->timed_out) {
		res->status = WEXITSTATUS(status);
	} else {
		res->status = -1;
		res->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	}

fail:
	for (int i = 0; i < 2; i++) {
		close_fd(&cap[i].fd);
		cap[i].buf[cap[i].len] = '\0';
	}
	close_fd(&out_pipe[0]);
	close_fd(&out_pipe[1]);
	close_fd(&err_pipe[0]);
	close_fd(&err_pipe[1]);
	res->out = cap[0].buf;
	res->errout = cap[1].buf;
	res->out_truncated = cap[0].truncated;
	res->err_truncated = cap[1].truncated;
	return r;
}

int bk_hooks_run(const char *dir_path, enum bk_hook_phase phase, const struct bk_hook_env *env,
		 uint64_t timeout_ms, struct bk_hook_run **ret, struct bk_err *err)
{
	_cleanup_(bk_hook_run_freep) struct bk_hook_run *run = NULL;
	char **names = NULL;
	size_t n = 0;
	int r, first = 0;

	if (!bk_hook_phase_to_string(phase))
		return bk_err_set(err, -EINVAL, "unknown hook phase");
	run = calloc(1, sizeof(*run));
	if (!run)
		return bk_err_set(err, -ENOMEM, "out of memory");
	run->phase = phase;
	r = list_hooks(dir_path, &names, &n, err);
	if (r < 0)
		return r;
	run->results = calloc(n ? n : 1, sizeof(*run->results));
	if (!run->results) {
		free_names(names, n);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}

	for (size_t i = 0; i < n; i++) {
		struct bk_hook_result *res = &run->results[run->n_results];

		BK_DBG(REV, "running %s hook '%s/%s'", phase_names[phase], dir_path, names[i]);
		r = run_one(dir_path, names[i], phase, env, timeout_ms, res, err);
		run->n_results++;
		if (!res->out) {
			/* Never hand out a result without its buffers. */
			res->out = strdup("");
			res->errout = strdup("");
			if (!res->out || !res->errout) {
				r = bk_err_set(err, -ENOMEM, "out of memory");
				break;
			}
		}
		if (r < 0) {
			first = first < 0 ? first : r;
			if (phase == BK_HOOK_SCAN)
				break;
			continue;
		}
		if (phase == BK_HOOK_SCAN) {
			r = bk_hook_parse_restarts(res->out, &res->restarts, &res->n_restarts);
			if (r < 0) {
				r = bk_err_set(err, r, "scan hook '%s': cannot read its claims: %s",
					       res->name, strerror(-r));
				first = r;
				break;
			}
		}
		if (res->status == 0)
			continue;

		if (phase == BK_HOOK_SCAN && res->status >= BK_HOOK_VETO_STATUS) {
			run->veto_hook = res->name;
			run->veto_reason = bk_hook_last_line(res->errout);
			if (!run->veto_reason) {
				r = bk_err_set(err, -ENOMEM, "out of memory");
				break;
			}
			r = bk_err_set(err, -ECANCELED, "scan hook '%s' vetoed the live patch: %s",
				       res->name,
				       run->veto_reason[0] ? run->veto_reason :
							     "(no reason given)");
			first = r;
			break;
		}
		if (res->timed_out)
			r = bk_err_set(err, -EPROTO, "%s hook '%s' timed out after %llu ms",
				       phase_names[phase], res->name,
				       (unsigned long long) timeout_ms);
		else if (res->status < 0)
			r = bk_err_set(err, -EPROTO, "%s hook '%s' was killed by signal %d",
				       phase_names[phase], res->name, res->signal);
		else
			r = bk_err_set(err, -EPROTO, "%s hook '%s' failed with exit status %d",
				       phase_names[phase], res->name, res->status);
		if (phase == BK_HOOK_SCAN) {
			/* A failing scan stops the live patch, with the hook's own reason. */
			run->veto_hook = res->name;
			run->veto_reason = bk_hook_last_line(res->errout);
		}
		first = first < 0 ? first : r;
		if (phase == BK_HOOK_SCAN)
			break;
	}
	free_names(names, n);
	*ret = TAKE_PTR(run);
	return first;
}
