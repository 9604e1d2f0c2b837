/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bk-fs.h"
#include "bk-log.h"
#include "bk-switch.h"

#ifndef MOVE_MOUNT_BENEATH
#define MOVE_MOUNT_BENEATH 0x00000200
#endif
#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

uint64_t bk_now_ns(void)
{
	struct timespec ts;

	(void) clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

bool bk_rev_id_is_valid(const char *id)
{
	size_t l;

	if (!id)
		return false;
	l = strlen(id);
	if (l == 0 || l > BK_REV_ID_MAX)
		return false;
	if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", id[0]))
		return false;
	for (const char *p = id; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-",
			    *p))
			return false;
	return true;
}

int bk_rev_pointer_get(int run_dfd, const char *name, char **ret_id, struct bk_err *err)
{
	char buf[sizeof(BK_REV_DIR) + BK_REV_ID_MAX + 2];
	ssize_t n;

	n = readlinkat(run_dfd, name, buf, sizeof(buf));
	if (n < 0 && errno == ENOENT)
		return -ENOENT;
	if (n < 0)
		return bk_err_set(err, -errno, "cannot read pointer '%s': %m", name);
	if ((size_t) n >= sizeof(buf) || strncmp(buf, BK_REV_DIR "/", strlen(BK_REV_DIR "/")) != 0)
		return bk_err_set(err, -EBADMSG, "pointer '%s' does not point into '%s/'", name,
				  BK_REV_DIR);
	buf[n] = '\0';
	if (!bk_rev_id_is_valid(buf + strlen(BK_REV_DIR "/")))
		return bk_err_set(err, -EBADMSG, "pointer '%s' names an invalid revision '%s'",
				  name, buf);
	*ret_id = strdup(buf + strlen(BK_REV_DIR "/"));
	return *ret_id ? 0 : bk_err_set(err, -ENOMEM, "out of memory");
}

int bk_rev_pointer_set(int run_dfd, const char *name, const char *id, struct bk_err *err)
{
	char target[sizeof(BK_REV_DIR) + BK_REV_ID_MAX + 2];
	char tmp[NAME_MAX + 1], rnd[17];
	int r;

	if (!id) {
		if (unlinkat(run_dfd, name, 0) < 0 && errno != ENOENT)
			return bk_err_set(err, -errno, "cannot remove pointer '%s': %m", name);
	} else {
		if (!bk_rev_id_is_valid(id))
			return bk_err_set(err, -EINVAL, "invalid revision id '%s'", id);
		(void) snprintf(target, sizeof(target), BK_REV_DIR "/%s", id);
		for (int tries = 0;; tries++) {
			r = bk_random_hex(rnd, 16);
			if (r < 0)
				return bk_err_set(err, r, "cannot get random bytes: %s",
						  strerror(-r));
			(void) snprintf(tmp, sizeof(tmp), BK_TMP_PREFIX "%s.%s", name, rnd);
			if (symlinkat(target, run_dfd, tmp) == 0)
				break;
			if (errno != EEXIST || tries > 8)
				return bk_err_set(err, -errno, "cannot create pointer '%s': %m",
						  tmp);
		}
		if (renameat(run_dfd, tmp, run_dfd, name) < 0) {
			r = -errno;
			(void) unlinkat(run_dfd, tmp, 0);
			return bk_err_set(err, r, "cannot replace pointer '%s': %s", name,
					  strerror(-r));
		}
	}
	r = bk_fsync_dir(run_dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the directory of pointer '%s': %s", name,
				  strerror(-r));
	BK_DBG(REV, "pointer '%s' -> '%s'", name, id ? id : "(none)");
	return 0;
}

int bk_rev_pointer_cleanup(int run_dfd)
{
	static const char *const prefixes[] = { BK_TMP_PREFIX BK_REV_CURRENT ".",
						BK_TMP_PREFIX BK_REV_PREVIOUS "." };
	struct dirent *de;
	DIR *d;
	int fd, n = 0;

	fd = openat(run_dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		(void) close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		for (size_t i = 0; i < BK_ELEMENTSOF(prefixes); i++)
			if (strncmp(de->d_name, prefixes[i], strlen(prefixes[i])) == 0 &&
			    de->d_type == DT_LNK && unlinkat(run_dfd, de->d_name, 0) == 0)
				n++;
	}
	(void) closedir(d);
	if (n > 0)
		(void) bk_fsync_dir(run_dfd);
	return n;
}

int bk_rev_dev(int run_dfd, const char *id, dev_t *ret_dev, struct bk_err *err)
{
	char path[sizeof(BK_REV_DIR) + BK_REV_ID_MAX + 2];
	struct stat st;

	if (!bk_rev_id_is_valid(id))
		return bk_err_set(err, -EINVAL, "invalid revision id '%s'", id ? id : "");
	(void) snprintf(path, sizeof(path), BK_REV_DIR "/%s", id);
	if (fstatat(run_dfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return bk_err_set(err, -errno, "revision '%s' is not mounted: %m", id);
	if (!S_ISDIR(st.st_mode))
		return bk_err_set(err, -ENOTDIR, "revision '%s' is not a directory", id);
	*ret_dev = st.st_dev;
	return 0;
}

static int statx_view(int dfd, const char *path, dev_t *ret_dev, bool *ret_is_mount)
{
	struct statx stx;

	if (statx(dfd, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx) < 0)
		return -errno;
	if (!S_ISDIR(stx.stx_mode))
		return -ENOTDIR;
	*ret_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	*ret_is_mount = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
			(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
	return 0;
}

int bk_view_stat(pid_t pid, const char *view, dev_t *ret_dev, bool *ret_is_mount,
		 struct bk_err *err)
{
	char path[64 + BK_REV_ID_MAX + 1100];
	int r;

	(void) snprintf(path, sizeof(path), "/proc/%d/root%s", (int) pid, view);
	r = statx_view(AT_FDCWD, path, ret_dev, ret_is_mount);
	if (r < 0)
		return bk_err_set(err, r, "cannot look at view '%s' of pid %d: %s", view, (int) pid,
				  strerror(-r));
	return 0;
}

int bk_view_check(int mntns_fd, const char *view, struct bk_err *err)
{
	dev_t dev;
	bool is_mount;
	int status, r;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return bk_err_set(err, -errno, "cannot fork to look at view '%s': %m", view);
	if (pid == 0) {
		/* As the view helper does: the view as the workload's namespace resolves it. */
		if (setns(mntns_fd, CLONE_NEWNS) < 0)
			_exit(100 + (errno < 100 ? errno : EIO));
		r = statx_view(AT_FDCWD, view, &dev, &is_mount);
		_exit(r < 0 && -r < 100 ? -r : r < 0 ? EIO : 0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return bk_err_set(err, -errno, "cannot wait for the view lookup: %m");
	if (!WIFEXITED(status))
		return bk_err_set(err, -EIO, "the lookup of view '%s' died", view);
	r = WEXITSTATUS(status);
	if (r == 0)
		return 0;
	if (r >= 100)
		return bk_err_set(err, -(r - 100), "cannot enter its mount namespace: %s",
				  strerror(r - 100));
	if (r == ENOENT)
		return bk_err_set(err, -ENOENT, "view '%s' does not exist in its mount namespace",
				  view);
	if (r == ENOTDIR)
		return bk_err_set(err, -ENOTDIR, "view '%s' is not a directory", view);
	return bk_err_set(err, -r, "cannot look at view '%s': %s", view, strerror(r));
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *) a, y = *(const int *) b;

	return x < y ? -1 : x > y;
}

/* In a forked child: close every fd but the n in keep (which may be modified). */
static void close_all_except(int *keep, size_t n)
{
	unsigned lo = 0;

	qsort(keep, n, sizeof(*keep), cmp_int);
	for (size_t i = 0; i < n; i++) {
		if (keep[i] < 0)
			continue;
		if ((unsigned) keep[i] > lo)
			(void) close_range(lo, (unsigned) keep[i] - 1, 0);
		lo = (unsigned) keep[i] + 1;
	}
	(void) close_range(lo, ~0U, 0);
}

/*
 * The forked helpers and the watchdog write through the raw system calls: they must keep
 * working whatever happens to the parent, including when an LD_PRELOAD crash injector
 * (tests/crash) kills the parent at its Nth write -- the children inherit its counter.
 */
static ssize_t raw_write(int fd, const void *buf, size_t len)
{
	return syscall(SYS_write, fd, buf, len);
}

static void raw_thaw(int cg_dfd)
{
	int fd = openat(cg_dfd, "cgroup.freeze", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	(void) syscall(SYS_pwrite64, fd, "0", 1, 0);
	(void) close(fd);
}

/* --- the view helper -------------------------------------------------------------------- */

enum helper_step {
	STEP_NONE,
	STEP_OPEN_TREE,
	STEP_SETNS,
	STEP_VIEW,
	STEP_MOVE,
	STEP_DETACH,
	STEP_VERIFY,
};

static const char *const step_names[] = {
	[STEP_NONE] = "helper",
	[STEP_OPEN_TREE] = "open_tree",
	[STEP_SETNS] = "setns",
	[STEP_VIEW] = "view lookup",
	[STEP_MOVE] = "move_mount",
	[STEP_DETACH] = "detach of the old mount",
	[STEP_VERIFY] = "check of the new view",
};

struct helper_msg {
	int32_t r;
	int32_t step;
	uint64_t dev;
	uint8_t is_mount;
	char mode;
	uint64_t new_dev;		 /* ready: the device of the revision to show */
	uint32_t n_sub;			 /* ready: mounts beneath the view (issue 16 item 7) */
	char sub[BK_VIEW_SUBMOUNTS_MAX]; /* ready: the first of them, "'/v/a', '/v/b'" */
};

struct bk_view_swap {
	pid_t pid;
	int sock;
	char *id;
	char *view;
	dev_t old_dev, new_dev;
	bool old_is_mount;
	bool committed;
	unsigned n_sub;
	char sub[BK_VIEW_SUBMOUNTS_MAX];
};

static _noreturn_ void helper_send(int sock, int r, int step, dev_t dev, bool is_mount, char mode)
{
	struct helper_msg m = {
		.r = r, .step = step, .dev = dev, .is_mount = is_mount, .mode = mode
	};

	/* Nothing to do if the caller is gone: our exit status says the same. */
	if (raw_write(sock, &m, sizeof(m)) != (ssize_t) sizeof(m))
		_exit(2);
	_exit(r < 0 ? 1 : 0);
}

/*
 * The switcher and its view helpers run at a real-time priority from the freeze to the thaw
 * of a workload (issue 16 item 8): on a busy machine a normal process waits for a CPU for
 * milliseconds at each wakeup, and every one of those waits lengthens the frozen window.
 * SCHED_RESET_ON_FORK: nothing forked meanwhile inherits it. Failures (no CAP_SYS_NICE, an
 * RT-throttled cgroup) leave the normal priority.
 */
#define SWITCH_RT_PRIO 10

struct sched_saved {
	int policy;
	struct sched_param param;
	bool raised;
};

static void raise_priority(struct sched_saved *sv)
{
	struct sched_param p = { .sched_priority = SWITCH_RT_PRIO };

	sv->raised = false;
	sv->policy = sched_getscheduler(0);
	if (sv->policy < 0 || sched_getparam(0, &sv->param) < 0)
		return;
	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &p) == 0)
		sv->raised = true;
	else
		BK_DBG(REV, "cannot raise the priority: %m, ignoring");
}

static void restore_priority(const struct sched_saved *sv)
{
	if (sv->raised)
		(void) sched_setscheduler(0, sv->policy, &sv->param);
}

/* Copy the mount point (field 5 of a mountinfo line, octal escapes undone) into buf. */
static bool mountinfo_target(const char *line, char *buf, size_t len)
{
	const char *p = line;
	size_t n = 0;

	for (int k = 0; k < 4; k++) {
		p = strchr(p, ' ');
		if (!p)
			return false;
		p++;
	}
	for (; *p && *p != ' ' && *p != '\n'; p++) {
		char c = *p;

		if (c == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			c = (char) ((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		}
		if (n + 1 >= len)
			return false;
		buf[n++] = c;
	}
	buf[n] = '\0';
	return true;
}

/*
 * In the helper, after setns(): the mounts of this namespace whose mount point lies beneath
 * view. Detaching the old top at the swap takes them along (issue 16 item 7), so the caller
 * refuses the switch naming them. Without a readable /proc here nothing is found.
 */
static void find_submounts(const char *view, struct helper_msg *m)
{
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, vl = strlen(view), used = 0;
	char target[PATH_MAX];
	bool full = false;
	FILE *f;

	while (vl > 1 && view[vl - 1] == '/')
		vl--;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		int k;

		if (!mountinfo_target(line, target, sizeof(target)) ||
		    strncmp(target, view, vl) != 0 || target[vl] != '/')
			continue;
		m->n_sub++;
		if (full)
			continue;
		k = snprintf(m->sub + used, sizeof(m->sub) - used, "%s'%s'", used ? ", " : "",
			     target);
		if (k < 0 || (size_t) k >= sizeof(m->sub) - used) {
			m->sub[used] = '\0'; /* no room for more: the count still tells */
			full = true;
		} else
			used += (size_t) k;
	}
	(void) fclose(f);
}

static _noreturn_ void helper_main(int sock, int run_dfd, const char *relpath, int nsfd,
				   const char *view, unsigned flags)
{
	struct helper_msg ready = { 0 };
	_cleanup_close_ int tree = -EBADF;
	dev_t dev, new_dev;
	bool is_mount, dummy;
	struct stat st;
	char go = 0;
	char mode;
	ssize_t n;
	int r;

	tree = open_tree(run_dfd, relpath, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (tree < 0)
		helper_send(sock, -errno, STEP_OPEN_TREE, 0, false, 0);
	/*
	 * A clone of a shared mount (systemd makes / shared) joins its peer group: every view
	 * would be a peer of the host's revision mount and of the other workloads' views. A
	 * beneath move re-mounts the old top on the clone, and that mount would propagate onto
	 * every peer: a view switched at the same time showed the old revision until the old
	 * top was detached (integ/fleet failed so, now and then), and a mount made in one view
	 * showed in the host's revision and in the other views. A view is its workload's own.
	 */
	{
		struct mount_attr attr = { .propagation = MS_PRIVATE };

		if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0 &&
		    errno != ENOSYS)
			helper_send(sock, -errno, STEP_OPEN_TREE, 0, false, 0);
	}
	if (fstat(tree, &st) < 0)
		helper_send(sock, -errno, STEP_OPEN_TREE, 0, false, 0);
	new_dev = st.st_dev;
	if (setns(nsfd, CLONE_NEWNS) < 0)
		helper_send(sock, -errno, STEP_SETNS, 0, false, 0);
	r = statx_view(AT_FDCWD, view, &dev, &is_mount);
	if (r < 0)
		helper_send(sock, r, STEP_VIEW, 0, false, 0);

	ready.dev = dev;
	ready.new_dev = new_dev;
	ready.is_mount = is_mount;
	find_submounts(view, &ready);
	if (raw_write(sock, &ready, sizeof(ready)) != (ssize_t) sizeof(ready))
		_exit(1);
	{
		/* From "go" to the reply the workload is frozen: no waiting for a CPU. */
		struct sched_saved sv;

		raise_priority(&sv);
	}
	do
		n = read(sock, &go, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || go != 'g')
		_exit(0); /* abandoned: change nothing */

	if (is_mount && !(flags & BK_VIEW_NO_BENEATH)) {
		mode = BK_VIEW_BENEATH;
		if (move_mount(tree, "", AT_FDCWD, view,
			       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_BENEATH) < 0) {
			if (errno != EINVAL)
				helper_send(sock, -errno, STEP_MOVE, 0, false, mode);
			mode = BK_VIEW_STACKED; /* no MOVE_MOUNT_BENEATH here (Linux < 6.5) */
		}
	} else
		mode = is_mount ? BK_VIEW_STACKED : BK_VIEW_ATTACHED;

	if (mode == BK_VIEW_BENEATH) {
		/* The new mount is right beneath the old top: detaching the top reveals it. */
		if (umount2(view, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
			helper_send(sock, -errno, STEP_DETACH, 0, false, mode);
	} else if (move_mount(tree, "", AT_FDCWD, view, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		helper_send(sock, -errno, STEP_MOVE, 0, false, mode);

	r = statx_view(AT_FDCWD, view, &dev, &dummy);
	if (r < 0)
		helper_send(sock, r, STEP_VERIFY, 0, false, mode);
	if (dev != new_dev)
		helper_send(sock, -ESTALE, STEP_VERIFY, dev, false, mode);
	helper_send(sock, 0, STEP_NONE, dev, true, mode);
}

static int read_msg(int sock, struct helper_msg *m)
{
	ssize_t n;

	do
		n = read(sock, m, sizeof(*m));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n != (ssize_t) sizeof(*m))
		return -EPIPE; /* the helper died */
	return 0;
}

static const char *step_name(int step)
{
	if (step < 0 || (size_t) step >= BK_ELEMENTSOF(step_names))
		return "helper";
	return step_names[step];
}

int bk_view_swap_fork(int run_dfd, const char *id, int mntns_fd, const char *view, unsigned flags,
		      struct bk_view_swap **ret, struct bk_err *err)
{
	_cleanup_(bk_view_swap_freep) struct bk_view_swap *s = NULL;
	char relpath[sizeof(BK_REV_DIR) + BK_REV_ID_MAX + 2];
	int sv[2], r;

	if (!bk_rev_id_is_valid(id))
		return bk_err_set(err, -EINVAL, "invalid revision id '%s'", id ? id : "");
	(void) snprintf(relpath, sizeof(relpath), BK_REV_DIR "/%s", id);
	s = calloc(1, sizeof(*s));
	if (!s)
		return bk_err_set(err, -ENOMEM, "out of memory");
	s->sock = -EBADF;
	s->id = strdup(id);
	s->view = strdup(view);
	if (!s->id || !s->view)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return bk_err_set(err, -errno, "cannot create a socket pair: %m");

	s->pid = fork();
	if (s->pid < 0) {
		r = -errno;
		(void) close(sv[0]);
		(void) close(sv[1]);
		return bk_err_set(err, r, "cannot fork the view helper: %s", strerror(-r));
	}
	if (s->pid == 0) {
		int keep[] = { sv[1], run_dfd, mntns_fd };

		close_all_except(keep, BK_ELEMENTSOF(keep));
		helper_main(sv[1], run_dfd, relpath, mntns_fd, view, flags);
	}
	(void) close(sv[1]);
	s->sock = sv[0];
	*ret = TAKE_PTR(s);
	return 0;
}

int bk_view_swap_wait_ready(struct bk_view_swap *s, struct bk_err *err)
{
	struct helper_msg m;
	int r;

	r = read_msg(s->sock, &m);
	if (r < 0)
		return bk_err_set(err, r, "view helper for '%s' died", s->view);
	if (m.r < 0)
		return bk_err_set(err, m.r, "view '%s': %s failed: %s", s->view, step_name(m.step),
				  strerror(-m.r));
	s->old_dev = (dev_t) m.dev;
	s->new_dev = (dev_t) m.new_dev;
	s->old_is_mount = m.is_mount;
	s->n_sub = m.n_sub;
	memcpy(s->sub, m.sub, sizeof(s->sub));
	s->sub[sizeof(s->sub) - 1] = '\0';
	BK_DBG(REV, "view helper %d ready for '%s' (%s, dev %u:%u)", (int) s->pid, s->view,
	       s->old_is_mount ? "mount point" : "plain directory", major(s->old_dev),
	       minor(s->old_dev));
	return 0;
}

int bk_view_swap_prepare(int run_dfd, const char *id, int mntns_fd, const char *view,
			 unsigned flags, struct bk_view_swap **ret, struct bk_err *err)
{
	_cleanup_(bk_view_swap_freep) struct bk_view_swap *s = NULL;
	int r;

	r = bk_view_swap_fork(run_dfd, id, mntns_fd, view, flags, &s, err);
	if (r < 0)
		return r;
	r = bk_view_swap_wait_ready(s, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

dev_t bk_view_swap_old_dev(const struct bk_view_swap *s)
{
	return s->old_dev;
}

bool bk_view_swap_old_is_mount(const struct bk_view_swap *s)
{
	return s->old_is_mount;
}

unsigned bk_view_swap_submounts(const struct bk_view_swap *s, const char **ret_list)
{
	if (ret_list)
		*ret_list = s->sub;
	return s->n_sub;
}

int bk_view_swap_fd(const struct bk_view_swap *s)
{
	return s->sock;
}

bool bk_view_swap_shows_new(const struct bk_view_swap *s)
{
	char path[64 + PATH_MAX];
	dev_t dev;
	bool is_mount;

	/* A view on the target's device already (not as its mount): nothing to tell apart. */
	if (s->old_dev == s->new_dev)
		return false;
	/* The helper's root is the workload's: its /proc root shows the view as they see it. */
	if (snprintf(path, sizeof(path), "/proc/%d/root%s", (int) s->pid, s->view) >=
	    (int) sizeof(path))
		return false;
	return statx_view(AT_FDCWD, path, &dev, &is_mount) == 0 && dev == s->new_dev;
}

int bk_view_swap_start(struct bk_view_swap *s, struct bk_err *err)
{
	ssize_t n;

	if (s->committed)
		return bk_err_set(err, -EALREADY, "view '%s' was already swapped", s->view);
	s->committed = true;
	do
		n = write(s->sock, "g", 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		return bk_err_set(err, n < 0 ? -errno : -EIO,
				  "cannot reach the view helper of '%s'", s->view);
	return 0;
}

int bk_view_swap_finish(struct bk_view_swap *s, enum bk_view_mode *ret_mode, bool *ret_changed,
			struct bk_err *err)
{
	struct helper_msg m;
	int r;

	if (ret_changed)
		*ret_changed = false;
	r = read_msg(s->sock, &m);
	if (r < 0)
		return bk_err_set(err, r, "view helper for '%s' died", s->view);
	/* Only the check comes after the view changed: a failure before it changed nothing. */
	if (m.r < 0 && m.step == STEP_VERIFY && ret_changed)
		*ret_changed = true;
	if (m.r == -ESTALE) {
		dev_t seen = (dev_t) m.dev;

		/* The devices tell which mount the view shows: the old one, or neither. */
		return bk_err_set(
			err, m.r,
			"view '%s' does not show revision '%s' after the swap (%s: it "
			"shows device %u:%u%s, the revision is %u:%u)",
			s->view, s->id,
			m.mode == BK_VIEW_BENEATH  ? "mounted beneath, the old top detached" :
			m.mode == BK_VIEW_STACKED  ? "stacked on the old mount" :
			m.mode == BK_VIEW_ATTACHED ? "attached, the view was no mount" :
						     "no mode",
			major(seen), minor(seen), seen == s->old_dev ? ", the old one" : "",
			major(s->new_dev), minor(s->new_dev));
	}
	if (m.r < 0)
		return bk_err_set(err, m.r, "view '%s': %s failed: %s", s->view, step_name(m.step),
				  strerror(-m.r));
	if (ret_mode)
		*ret_mode = (enum bk_view_mode) m.mode;
	return 0;
}

int bk_view_swap_commit(struct bk_view_swap *s, enum bk_view_mode *ret_mode, struct bk_err *err)
{
	int r;

	r = bk_view_swap_start(s, err);
	if (r < 0)
		return r;
	return bk_view_swap_finish(s, ret_mode, NULL, err);
}

struct bk_view_swap *bk_view_swap_free(struct bk_view_swap *s)
{
	if (!s)
		return NULL;
	closep(&s->sock);
	if (s->pid > 0)
		while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
			;
	free(s->id);
	free(s->view);
	free(s);
	return NULL;
}

/* --- the watchdog ----------------------------------------------------------------------- */

/*
 * Arming and disarming must cost nothing in the frozen window (no system call, no wakeup of
 * another process on a busy machine): the deadlines live in a shared anonymous mapping that
 * the caller writes and the watchdog reads on a short tick. The pipe only carries "stop" and,
 * by its EOF, the caller's death.
 */
struct bk_watchdog {
	pid_t pid;
	int fd;
	size_t n;
	uint64_t *deadline; /* shared with the watchdog; 0 = not armed */
	uint64_t timeout_ns;
};

static void wd_thaw_armed(const int *cg, uint64_t *deadline, size_t n, bool all)
{
	uint64_t now = bk_now_ns();

	for (size_t i = 0; i < n; i++) {
		uint64_t d = __atomic_load_n(&deadline[i], __ATOMIC_ACQUIRE);

		if (d != 0 && (all || d <= now)) {
			/* Frozen for too long, or the caller is gone: thaw, whatever happens. */
			raw_thaw(cg[i]);
			__atomic_store_n(&deadline[i], 0, __ATOMIC_RELEASE);
		}
	}
}

static _noreturn_ void watchdog_main(int fd, const int *cg, uint64_t *deadline, size_t n,
				     int tick_ms)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char c;

		wd_thaw_armed(cg, deadline, n, false);
		if (poll(&pfd, 1, tick_ms) <= 0)
			continue;
		if (read(fd, &c, 1) == 1 && c != 'Q')
			continue;
		/* "stop", or EOF: the caller died; nothing may stay frozen. */
		wd_thaw_armed(cg, deadline, n, true);
		_exit(0);
	}
}

int bk_watchdog_start(const int *cg_dfds, size_t n, uint64_t timeout_ms, struct bk_watchdog **ret,
		      struct bk_err *err)
{
	_cleanup_free_ struct bk_watchdog *wd = NULL;
	_cleanup_free_ int *keep = NULL;
	size_t len = (n ? n : 1) * sizeof(uint64_t);
	void *map;
	int p[2], r, tick;

	wd = calloc(1, sizeof(*wd));
	keep = calloc(n + 1, sizeof(*keep));
	if (!wd || !keep)
		return bk_err_set(err, -ENOMEM, "out of memory");
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		return bk_err_set(err, -errno, "cannot map the watchdog's table: %m");
	wd->deadline = map;
	wd->timeout_ns = timeout_ms * 1000000ull;
	/* The bound is kept within a tenth of itself (at least 1 ms, at most 20 ms late). */
	tick = (int) (timeout_ms / 10);
	tick = tick < 1 ? 1 : tick > 20 ? 20 : tick;
	if (pipe2(p, O_CLOEXEC) < 0) {
		r = -errno;
		(void) munmap(map, len);
		return bk_err_set(err, r, "cannot create the watchdog pipe: %s", strerror(-r));
	}
	wd->pid = fork();
	if (wd->pid < 0) {
		r = -errno;
		(void) close(p[0]);
		(void) close(p[1]);
		(void) munmap(map, len);
		return bk_err_set(err, r, "cannot fork the watchdog: %s", strerror(-r));
	}
	if (wd->pid == 0) {
		/* Own session: survives a kill of the caller's process group. */
		(void) setsid();
		(void) signal(SIGPIPE, SIG_IGN);
		(void) signal(SIGINT, SIG_IGN);
		(void) signal(SIGTERM, SIG_IGN);
		(void) signal(SIGHUP, SIG_IGN);
		memcpy(keep, cg_dfds, n * sizeof(*keep));
		keep[n] = p[0];
		close_all_except(keep, n + 1);
		watchdog_main(p[0], cg_dfds, wd->deadline, n, tick);
	}
	(void) close(p[0]);
	wd->fd = p[1];
	wd->n = n;
	BK_DBG(REV, "watchdog %d started for %zu cgroups, bound %llu ms", (int) wd->pid, n,
	       (unsigned long long) timeout_ms);
	*ret = TAKE_PTR(wd);
	return 0;
}

int bk_watchdog_arm(struct bk_watchdog *wd, size_t i, struct bk_err *err)
{
	if (i >= wd->n)
		return bk_err_set(err, -EINVAL, "watchdog: no cgroup %zu", i);
	__atomic_store_n(&wd->deadline[i], bk_now_ns() + wd->timeout_ns, __ATOMIC_RELEASE);
	return 0;
}

int bk_watchdog_disarm(struct bk_watchdog *wd, size_t i, struct bk_err *err)
{
	if (i >= wd->n)
		return bk_err_set(err, -EINVAL, "watchdog: no cgroup %zu", i);
	__atomic_store_n(&wd->deadline[i], 0, __ATOMIC_RELEASE);
	return 0;
}

struct bk_watchdog *bk_watchdog_stop(struct bk_watchdog *wd)
{
	ssize_t n;

	if (!wd)
		return NULL;
	do
		n = write(wd->fd, "Q", 1);
	while (n < 0 && errno == EINTR);
	closep(&wd->fd);
	while (waitpid(wd->pid, NULL, 0) < 0 && errno == EINTR)
		;
	(void) munmap(wd->deadline, (wd->n ? wd->n : 1) * sizeof(uint64_t));
	free(wd);
	return NULL;
}

pid_t bk_watchdog_pid(const struct bk_watchdog *wd)
{
	return wd->pid;
}

/* --- the switch-over -------------------------------------------------------------------- */

/* SWAPPING: frozen, the helper told to swap; ANSWER: swapped and thawed, its answer awaited. */
enum wl_state { WL_IDLE, WL_FREEZING, WL_SWAPPING, WL_ANSWER, WL_DONE };

struct wl {
	enum wl_state state;
	uint64_t t0;	   /* when its freeze was asked for */
	uint64_t t_frozen; /* when it was seen frozen (debug trace) */
	bool thaw_done;	   /* its thaw was tried */
	bool asked;
	bool thawed;   /* its thaw was written (to be confirmed) */
	bool seen_new; /* its view was seen showing the target */
	int thaw_r;
	struct bk_err thaw_err;
	size_t pfd_i; /* its entry in the poll set of this round, or SIZE_MAX */
};

struct engine {
	const struct bk_switch_opts *o;
	struct bk_watchdog *wd;
	struct bk_switch_item *items;
	struct bk_view_swap **swaps;
	struct wl *wl;
	size_t n;
	bool back;	 /* a rollback: the items go back to o->from */
	size_t n_active; /* freezing or swapping */
	size_t n_waiting;
	size_t n_freezing;
	int first; /* the first error */
	struct bk_err *err;
};

/* Record a failure of workload i (only the first is kept, with the workload named). */
static void fail_item(struct engine *e, size_t i, int r, const struct bk_err *ie)
{
	if (e->first < 0)
		return;
	e->first = r;
	if (e->err) {
		*e->err = *ie;
		(void) bk_err_prefix(e->err, "workload '%s'", e->items[i].name);
	}
}

/*
 * Thaw workload i at once and record its stopped time: freeze asked -> thaw written, also
 * after a timeout or a failure (issue 16 item 6). A failed thaw leaves it armed: the watchdog
 * thaws it.
 */
static void thaw_item(struct engine *e, size_t i)
{
	struct bk_switch_item *it = &e->items[i];
	struct wl *w = &e->wl[i];
	uint64_t frozen;

	if (w->thaw_done)
		return;
	w->thaw_done = true;
	w->thaw_r = bk_cgroup_set_frozen(it->cg, false, &w->thaw_err);
	frozen = bk_now_ns() - w->t0;
	if (e->back)
		it->rollback_frozen_ns = frozen;
	else
		it->frozen_ns = frozen;
	if (w->thaw_r >= 0) {
		w->thawed = true;
		(void) bk_watchdog_disarm(e->wd, i, NULL);
	}
	BK_DBG(REV, "workload '%s' thawed after %llu us frozen (%llu us to freeze)", it->name,
	       (unsigned long long) (frozen / 1000),
	       (unsigned long long) (w->t_frozen ? (w->t_frozen - w->t0) / 1000 : 0));
}

/* The end of workload i's turn, whatever happened: thawed, its outcome recorded. */
static void end_item(struct engine *e, size_t i, int r, const struct bk_err *ie, bool swapped)
{
	struct bk_switch_item *it = &e->items[i];
	struct wl *w = &e->wl[i];

	if (w->state == WL_FREEZING)
		e->n_freezing--;
	thaw_item(e, i);
	if (swapped || w->seen_new)
		it->switched = !e->back;
	if (r < 0)
		fail_item(e, i, r, ie);
	else if (w->thaw_r < 0)
		fail_item(e, i, w->thaw_r, &w->thaw_err);
	w->state = WL_DONE;
	e->n_active--;
	BK_DBG(REV, "workload '%s' %s (%c)", it->name,
	       r < 0   ? "failed" :
	       e->back ? "switched back" :
			 "switched",
	       (char) it->mode);
}

/* A frozen workload: tell its helper to swap. */
static void start_swap(struct engine *e, size_t i)
{
	struct bk_err ie = { 0 };
	int r;

	e->wl[i].t_frozen = bk_now_ns();
	e->n_freezing--;
	e->wl[i].state = WL_SWAPPING;
	r = bk_view_swap_start(e->swaps[i], &ie);
	if (r < 0)
		end_item(e, i, r, &ie, false);
}

static void finish_swap(struct engine *e, size_t i)
{
	enum bk_view_mode mode = e->items[i].mode;
	struct bk_err ie = { 0 };
	bool changed;
	int r;

	r = bk_view_swap_finish(e->swaps[i], &mode, &changed, &ie);
	if (!e->back)
		e->items[i].mode = mode;
	end_item(e, i, r, &ie, r == 0 || changed);
}

/*
 * How many workloads may be freezing at once. A freeze ends when every task of the workload
 * has been scheduled once; asked of all workloads together, the last ones wait behind every
 * task of the others (50 workloads on 2 cores: p99 10-11 ms at a load of 13-29, against
 * 3.5-5.4 ms four at a time in the same run). Twice the online CPUs keeps the CPUs busy
 * freezing without a queue.
 */
static size_t freeze_batch(const struct bk_switch_opts *o)
{
	long cpus;

	if (o->freeze_batch > 0)
		return (size_t) o->freeze_batch;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus > 0 ? 2 * (size_t) cpus : 2;
}

/*
 * Freeze, swap and thaw every workload i that has a ready helper (swaps[i]), overlapped
 * (issue 16 item 8): freezes are asked for up to freeze_batch() at a time, the next one as
 * soon as one is frozen; each workload is swapped as soon as it is frozen and thawed as soon
 * as its helper answers, so none waits for another's swap and each one's frozen window is
 * its own freeze, its own swap and one write. The switcher runs
 * at a real-time priority meanwhile. A workload that does not freeze within the bound is
 * thawed and fails. Every workload is thawed on every path. Returns 0 or the first error.
 */
static int switch_all(struct engine *e)
{
	const uint64_t timeout_ns = e->o->freeze_timeout_ms * 1000000ull;
	struct bk_switch_item *items = e->items;
	_cleanup_free_ struct pollfd *pfd = NULL;
	uint64_t confirm_ms = e->o->freeze_timeout_ms;
	long step_ns = 100 * 1000;
	struct sched_saved sv;
	size_t i, n = e->n;
	size_t batch = freeze_batch(e->o);

	e->n_active = e->n_waiting = e->n_freezing = 0;
	pfd = calloc(n ? n : 1, sizeof(*pfd));
	if (!pfd)
		return bk_err_set(e->err, -ENOMEM, "out of memory");

	raise_priority(&sv);
	for (i = 0; i < n; i++) {
		e->wl[i] = (struct wl){ .state = WL_IDLE };
		if (e->swaps[i])
			e->n_waiting++;
	}

	/* 2. Swap each as it is frozen, thaw each as its helper answers. */
	while (e->n_active > 0 || e->n_waiting > 0) {
		struct timespec ts = { .tv_nsec = step_ns };
		bool swapping = false;
		size_t k = 0;
		int r;

		/* 1. Ask the freezes, at most batch at a time: a write each, nothing waits yet. */
		for (i = 0; i < n && e->n_waiting > 0 && e->n_freezing < batch; i++) {
			struct bk_err ie = { 0 };

			if (!e->swaps[i] || e->wl[i].state != WL_IDLE || e->wl[i].asked)
				continue;
			e->wl[i].asked = true;
			e->n_waiting--;
			(void) bk_watchdog_arm(e->wd, i, NULL);
			e->wl[i].t0 = bk_now_ns();
			e->wl[i].state = WL_FREEZING;
			e->n_active++;
			e->n_freezing++;
			r = bk_cgroup_set_frozen(items[i].cg, true, &ie);
			if (r < 0)
				end_item(e, i, r, &ie, false);
		}

		for (i = 0; i < n; i++) {
			struct bk_err ie = { 0 };
			bool frozen;

			e->wl[i].pfd_i = SIZE_MAX;
			if (e->wl[i].state != WL_FREEZING)
				continue;
			r = bk_cgroup_get_state(items[i].cg, &frozen, NULL, &ie);
			if (r < 0) {
				end_item(e, i, r, &ie, false);
				continue;
			}
			if (frozen) {
				start_swap(e, i);
				continue;
			}
			if (bk_now_ns() - e->wl[i].t0 >= timeout_ns) {
				r = bk_err_set(&ie, -ETIMEDOUT,
					       "cgroup '%s' did not freeze within %llu ms",
					       bk_cgroup_path(items[i].cg),
					       (unsigned long long) e->o->freeze_timeout_ms);
				end_item(e, i, r, &ie, false);
			}
		}
		/*
		 * The view changes inside the helper's umount2(), which then waits for an RCU
		 * grace period (milliseconds on a busy machine) before it returns: seen from
		 * outside, the workload is thawed as soon as its view shows the target.
		 */
		for (i = 0; i < n; i++) {
			if (e->wl[i].state != WL_SWAPPING || !bk_view_swap_shows_new(e->swaps[i]))
				continue;
			e->wl[i].seen_new = true;
			e->wl[i].state = WL_ANSWER;
			thaw_item(e, i);
		}
		for (i = 0; i < n; i++) {
			if (e->wl[i].state == WL_FREEZING)
				pfd[k] = (struct pollfd){ .fd = bk_cgroup_events_fd(items[i].cg),
							  .events = POLLPRI };
			else if (e->wl[i].state == WL_SWAPPING || e->wl[i].state == WL_ANSWER)
				pfd[k] = (struct pollfd){ .fd = bk_view_swap_fd(e->swaps[i]),
							  .events = POLLIN };
			else
				continue;
			swapping = swapping || e->wl[i].state == WL_SWAPPING;
			e->wl[i].pfd_i = k++;
		}
		/* A swapping workload is frozen: look at its view again within 50 us. */
		if (swapping && ts.tv_nsec > 50 * 1000)
			ts.tv_nsec = 50 * 1000;
		if (k == 0)
			continue;
		/*
		 * cgroup.events notifies at most once per 10 ms, late: poll briefly and look
		 * again (100 us, backing off to 1 ms), as bk_cgroup_freeze() does.
		 */
		r = ppoll(pfd, k, &ts, NULL);
		if (r < 0 && errno != EINTR) {
			struct bk_err ie = { 0 };

			r = bk_err_set(&ie, -errno, "cannot poll: %m");
			for (i = 0; i < n; i++)
				if (e->wl[i].state == WL_FREEZING)
					end_item(e, i, r, &ie, false);
				else if (e->wl[i].state == WL_SWAPPING ||
					 e->wl[i].state == WL_ANSWER)
					finish_swap(e, i); /* the helper answers: a blocking read */
			continue;
		}
		for (i = 0; i < n; i++)
			if ((e->wl[i].state == WL_SWAPPING || e->wl[i].state == WL_ANSWER) &&
			    e->wl[i].pfd_i != SIZE_MAX && pfd[e->wl[i].pfd_i].revents)
				finish_swap(e, i);
		if (step_ns < 1000 * 1000)
			step_ns *= 2;
	}
	restore_priority(&sv);

	/* 3. Out of the frozen window: the thaws took effect. */
	for (i = 0; i < n; i++) {
		struct bk_err ie = { 0 };

		if (e->wl[i].thawed &&
		    bk_cgroup_wait_frozen(items[i].cg, false, confirm_ms, &ie) < 0)
			fail_item(e, i, ie.code ? ie.code : -EIO, &ie);
	}
	return e->first;
}

/* Switch the workloads marked switched back to o->from (prepared again, then switch_all). */
static void rollback(const struct bk_switch_opts *o, struct bk_watchdog *wd,
		     struct bk_switch_item *items, size_t n)
{
	_cleanup_free_ struct bk_view_swap **swaps = NULL;
	_cleanup_free_ struct wl *wl = NULL;
	struct bk_err e = { 0 };
	struct engine eng;
	size_t j;

	swaps = calloc(n ? n : 1, sizeof(*swaps));
	wl = calloc(n ? n : 1, sizeof(*wl));
	if (!swaps || !wl)
		return;
	for (j = 0; j < n; j++) {
		if (!items[j].switched)
			continue;
		if (bk_view_swap_prepare(o->run_dfd, o->from, items[j].mntns_fd, items[j].view,
					 o->view_flags, &swaps[j], &e) < 0)
			BK_DBG(REV, "rollback of '%s' failed: %s", items[j].name, e.msg);
	}
	eng = (struct engine){
		.o = o,
		.wd = wd,
		.items = items,
		.swaps = swaps,
		.wl = wl,
		.n = n,
		.back = true,
		.err = &e,
	};
	if (switch_all(&eng) < 0)
		BK_DBG(REV, "rollback failed: %s", e.msg);
	for (j = 0; j < n; j++)
		bk_view_swap_free(swaps[j]);
}

int bk_switch_run(const struct bk_switch_opts *o, struct bk_switch_item *items, size_t n,
		  uint64_t *ret_total_ns, struct bk_err *err)
{
	_cleanup_(bk_watchdog_stopp) struct bk_watchdog *wd = NULL;
	_cleanup_free_ char *old_previous = NULL;
	struct bk_view_swap **swaps = NULL;
	_cleanup_free_ struct wl *wl = NULL;
	_cleanup_free_ int *cg_fds = NULL;
	uint64_t t0 = bk_now_ns();
	struct engine eng;
	int r;
	dev_t to_dev;
	size_t i;

	r = bk_rev_dev(o->run_dfd, o->to, &to_dev, err);
	if (r < 0)
		return r;
	if (o->from) {
		dev_t from_dev;

		r = bk_rev_dev(o->run_dfd, o->from, &from_dev, err);
		if (r < 0)
			return r;
	}
	swaps = calloc(n ? n : 1, sizeof(*swaps));
	cg_fds = calloc(n ? n : 1, sizeof(*cg_fds));
	wl = calloc(n ? n : 1, sizeof(*wl));
	if (!swaps || !cg_fds || !wl) {
		free(swaps);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}

	/*
	 * 1. Everything that can fail without changing anything: one ready helper each, all
	 * forked first, so their setup runs side by side.
	 */
	for (i = 0; i < n; i++) {
		items[i].switched = items[i].skipped = false;
		items[i].frozen_ns = items[i].rollback_frozen_ns = 0;
		cg_fds[i] = bk_cgroup_dfd(items[i].cg);
		r = bk_view_swap_fork(o->run_dfd, o->to, items[i].mntns_fd, items[i].view,
				      o->view_flags, &swaps[i], err);
		if (r < 0) {
			(void) bk_err_prefix(err, "workload '%s'", items[i].name);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		const char *sub;
		unsigned n_sub;

		r = bk_view_swap_wait_ready(swaps[i], err);
		if (r < 0) {
			(void) bk_err_prefix(err, "workload '%s'", items[i].name);
			goto out;
		}
		if (bk_view_swap_old_dev(swaps[i]) == to_dev &&
		    bk_view_swap_old_is_mount(swaps[i])) {
			items[i].skipped = true;
			swaps[i] = bk_view_swap_free(swaps[i]);
			continue;
		}
		/*
		 * Mounts the workload made inside its view go with the old revision at the
		 * swap (issue 16 item 7): refuse rather than drop them silently. A recovery
		 * (best effort) must end the interrupted patch: it goes on, and says so in
		 * the debug trace.
		 */
		n_sub = bk_view_swap_submounts(swaps[i], &sub);
		if (n_sub > 0 && !o->best_effort) {
			r = bk_err_set(err, -EBUSY,
				       "workload '%s': %u %s beneath its view '%s' would vanish "
				       "with the old revision: %s; unmount %s first",
				       items[i].name, n_sub, n_sub == 1 ? "mount" : "mounts",
				       items[i].view, sub[0] ? sub : "(too long to list)",
				       n_sub == 1 ? "it" : "them");
			goto out;
		}
		if (n_sub > 0)
			BK_DBG(REV, "workload '%s': %u mounts beneath the view dropped: %s",
			       items[i].name, n_sub, sub);
	}
	r = bk_watchdog_start(cg_fds, n, o->freeze_timeout_ms, &wd, err);
	if (r < 0)
		goto out;

	/* 2. The pointer: one rename each; previous first, it is only advisory. */
	if (!o->keep_pointer) {
		r = bk_rev_pointer_get(o->run_dfd, BK_REV_PREVIOUS, &old_previous, NULL);
		if (r < 0 && r != -ENOENT)
			old_previous = NULL;
		if (o->from) {
			r = bk_rev_pointer_set(o->run_dfd, BK_REV_PREVIOUS, o->from, err);
			if (r < 0)
				goto out;
		}
		r = bk_rev_pointer_set(o->run_dfd, BK_REV_CURRENT, o->to, err);
		if (r < 0)
			goto restore;
	}

	/* 3. Every workload at once: freeze, swap, thaw. */
	eng = (struct engine){
		.o = o,
		.wd = wd,
		.items = items,
		.swaps = swaps,
		.wl = wl,
		.n = n,
		.err = err,
	};
	r = switch_all(&eng);
	for (i = 0; i < n; i++)
		swaps[i] = bk_view_swap_free(swaps[i]);
	if (r < 0 && !o->best_effort) {
		if (o->from)
			rollback(o, wd, items, n);
		goto restore;
	}
	goto out;

restore:
	if (!o->keep_pointer) {
		struct bk_err e = { 0 };

		if (bk_rev_pointer_set(o->run_dfd, BK_REV_CURRENT, o->from, &e) < 0)
			BK_DBG(REV, "cannot restore the current pointer: %s", e.msg);
		if (bk_rev_pointer_set(o->run_dfd, BK_REV_PREVIOUS, old_previous, &e) < 0)
			BK_DBG(REV, "cannot restore the previous pointer: %s", e.msg);
	}
out:
	for (i = 0; i < n; i++)
		bk_view_swap_free(swaps[i]);
	free(swaps);
	wd = bk_watchdog_stop(wd);
	if (ret_total_ns)
		*ret_total_ns = bk_now_ns() - t0;
	return r;
}
