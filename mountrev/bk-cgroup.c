/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmount.h>

#include "bk-cgroup.h"
#include "bk-fs.h"
#include "bk-log.h"

BK_DEFINE_CLEANUP(struct libmnt_table *, mnt_unref_table)
BK_DEFINE_CLEANUP(struct libmnt_iter *, mnt_free_iter)
BK_DEFINE_CLEANUP(DIR *, closedir)

struct bk_cgroup {
	char *path; /* normalised, relative to the cgroup2 root */
	int dfd;
	int freeze_fd;
	int events_fd;
};

/* The most pids we look at when checking that a workload has a single mount namespace. */
#define MAX_PIDS_CHECKED 4096
/* How deep we search for a unit's cgroup, and for processes below a cgroup. */
#define MAX_SEARCH_DEPTH 8

static uint64_t now_ms(void)
{
	struct timespec ts;

	(void) clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

int bk_cgroup_find_root(char **ret_path, struct bk_err *err)
{
	_cleanup_(mnt_unref_tablep) struct libmnt_table *tb = NULL;
	_cleanup_(mnt_free_iterp) struct libmnt_iter *it = NULL;
	struct libmnt_fs *fs;
	char *p;

	tb = mnt_new_table_from_file("/proc/self/mountinfo");
	if (!tb)
		return bk_err_set(err, -EIO, "cannot read the mount table '/proc/self/mountinfo'");
	it = mnt_new_iter(MNT_ITER_FORWARD);
	if (!it)
		return bk_err_set(err, -ENOMEM, "out of memory");
	while (mnt_table_next_fs(tb, it, &fs) == 0) {
		const char *type = mnt_fs_get_fstype(fs);
		const char *target = mnt_fs_get_target(fs);

		if (!type || !target || strcmp(type, "cgroup2") != 0)
			continue;
		p = strdup(target);
		if (!p)
			return bk_err_set(err, -ENOMEM, "out of memory");
		BK_DBG(REV, "cgroup2 root is '%s'", p);
		*ret_path = p;
		return 0;
	}
	return bk_err_set(err, -ENOENT, "no cgroup2 file system is mounted");
}

int bk_cgroup_path_normalize(const char *path, char **ret, struct bk_err *err)
{
	_cleanup_free_ char *copy = NULL, *out = NULL;
	size_t n = 0;
	char *save = NULL, *c;

	if (!path || strlen(path) > BK_CGROUP_PATH_MAX)
		return bk_err_set(err, -EINVAL, "cgroup path '%s' is too long", path ? path : "");
	while (*path == '/')
		path++;
	copy = strdup(path);
	out = malloc(strlen(path) + 1);
	if (!copy || !out)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		size_t l = strlen(c);

		if (!bk_filename_is_valid(c))
			return bk_err_set(err, -EINVAL, "invalid cgroup path '%s'", path);
		if (n > 0)
			out[n++] = '/';
		memcpy(out + n, c, l);
		n += l;
	}
	out[n] = '\0';
	if (n == 0)
		return bk_err_set(err, -EINVAL,
				  "invalid cgroup path '/': the root cgroup cannot be a workload");
	if (ret)
		*ret = TAKE_PTR(out);
	return 0;
}

struct bk_cgroup *bk_cgroup_free(struct bk_cgroup *cg)
{
	if (!cg)
		return NULL;
	closep(&cg->dfd);
	closep(&cg->freeze_fd);
	closep(&cg->events_fd);
	free(cg->path);
	free(cg);
	return NULL;
}

int bk_cgroup_open(const char *root_path, const char *relpath, struct bk_cgroup **ret,
		   struct bk_err *err)
{
	_cleanup_(bk_cgroup_freep) struct bk_cgroup *cg = NULL;
	_cleanup_free_ char *root_found = NULL;
	_cleanup_close_ int root_fd = -EBADF;
	int r;

	if (!root_path) {
		r = bk_cgroup_find_root(&root_found, err);
		if (r < 0)
			return r;
		root_path = root_found;
	}
	cg = calloc(1, sizeof(*cg));
	if (!cg)
		return bk_err_set(err, -ENOMEM, "out of memory");
	cg->dfd = cg->freeze_fd = cg->events_fd = -EBADF;
	r = bk_cgroup_path_normalize(relpath, &cg->path, err);
	if (r < 0)
		return r;

	root_fd = open(root_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		return bk_err_set(err, -errno, "cannot open the cgroup2 root '%s': %m", root_path);
	cg->dfd = bk_open_beneath(root_fd, cg->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, true);
	if (cg->dfd == -ENOENT || cg->dfd == -ENOTDIR)
		return bk_err_set(err, -ENOENT, "cgroup '%s' does not exist under '%s'", cg->path,
				  root_path);
	if (cg->dfd < 0)
		return bk_err_set(err, cg->dfd, "cannot open cgroup '%s': %s", cg->path,
				  strerror(-cg->dfd));
	cg->events_fd = openat(cg->dfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
	if (cg->events_fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s/cgroup.events': %m", cg->path);
	cg->freeze_fd = openat(cg->dfd, "cgroup.freeze", O_WRONLY | O_CLOEXEC);
	if (cg->freeze_fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s/cgroup.freeze': %m", cg->path);
	*ret = TAKE_PTR(cg);
	return 0;
}

const char *bk_cgroup_path(const struct bk_cgroup *cg)
{
	return cg->path;
}

int bk_cgroup_dfd(const struct bk_cgroup *cg)
{
	return cg->dfd;
}

/* Read cgroup.events from its start; kernfs re-arms POLLPRI on every read. */
static int read_events(int fd, bool *ret_frozen, bool *ret_populated)
{
	char buf[256];
	const char *p;
	ssize_t n;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	p = strstr(buf, "frozen ");
	if (!p)
		return -EBADMSG;
	*ret_frozen = p[7] == '1';
	if (ret_populated) {
		p = strstr(buf, "populated ");
		*ret_populated = p && p[10] == '1';
	}
	return 0;
}

/*
 * Wait until cgroup.events says "frozen <want>". The kernel rate-limits the POLLPRI
 * notification of cgroup.events to one per 10 ms (CGROUP_FILE_NOTIFY_MIN_INTV) and delivers
 * it from a work item, so a freeze that follows a thaw closely would be seen up to 10 ms late:
 * poll() is used with a short timeout and the file is re-read after each, 100 us apart at
 * first, backing off to 1 ms. A freeze of a few tasks completes in tens of microseconds.
 */
static int wait_frozen(struct bk_cgroup *cg, bool want, uint64_t timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	long step_ns = 100 * 1000;

	for (;;) {
		struct pollfd pfd = { .fd = cg->events_fd, .events = POLLPRI };
		struct timespec ts = { .tv_nsec = step_ns };
		bool frozen;
		int r;

		r = read_events(cg->events_fd, &frozen, NULL);
		if (r < 0)
			return r;
		if (frozen == want)
			return 0;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		r = ppoll(&pfd, 1, &ts, NULL);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (step_ns < 1000 * 1000)
			step_ns *= 2;
	}
}

static int write_freeze(int fd, char c)
{
	ssize_t n;

	do
		n = pwrite(fd, &c, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 1 ? 0 : -EIO;
}

int bk_cgroup_freeze(struct bk_cgroup *cg, uint64_t timeout_ms, struct bk_err *err)
{
	int r;

	r = write_freeze(cg->freeze_fd, '1');
	if (r < 0)
		return bk_err_set(err, r, "cannot freeze cgroup '%s': %s", cg->path, strerror(-r));
	r = wait_frozen(cg, true, timeout_ms);
	if (r == 0)
		return 0;
	/* Never leave it half-frozen behind an error. */
	(void) write_freeze(cg->freeze_fd, '0');
	if (r == -ETIMEDOUT)
		return bk_err_set(err, r, "cgroup '%s' did not freeze within %llu ms", cg->path,
				  (unsigned long long) timeout_ms);
	return bk_err_set(err, r, "cannot read '%s/cgroup.events': %s", cg->path, strerror(-r));
}

int bk_cgroup_thaw(struct bk_cgroup *cg, uint64_t timeout_ms, struct bk_err *err)
{
	int r;

	r = write_freeze(cg->freeze_fd, '0');
	if (r < 0)
		return bk_err_set(err, r, "cannot thaw cgroup '%s': %s", cg->path, strerror(-r));
	r = wait_frozen(cg, false, timeout_ms);
	if (r == -ETIMEDOUT)
		return bk_err_set(err, r, "cgroup '%s' did not thaw within %llu ms", cg->path,
				  (unsigned long long) timeout_ms);
	if (r < 0)
		return bk_err_set(err, r, "cannot read '%s/cgroup.events': %s", cg->path,
				  strerror(-r));
	return 0;
}

int bk_cgroup_set_frozen(struct bk_cgroup *cg, bool frozen, struct bk_err *err)
{
	int r;

	r = write_freeze(cg->freeze_fd, frozen ? '1' : '0');
	if (r < 0)
		return bk_err_set(err, r, "cannot %s cgroup '%s': %s", frozen ? "freeze" : "thaw",
				  cg->path, strerror(-r));
	return 0;
}

int bk_cgroup_wait_frozen(struct bk_cgroup *cg, bool frozen, uint64_t timeout_ms,
			  struct bk_err *err)
{
	int r;

	r = wait_frozen(cg, frozen, timeout_ms);
	if (r == -ETIMEDOUT)
		return bk_err_set(err, r, "cgroup '%s' did not %s within %llu ms", cg->path,
				  frozen ? "freeze" : "thaw", (unsigned long long) timeout_ms);
	if (r < 0)
		return bk_err_set(err, r, "cannot read '%s/cgroup.events': %s", cg->path,
				  strerror(-r));
	return 0;
}

int bk_cgroup_events_fd(const struct bk_cgroup *cg)
{
	return cg->events_fd;
}

int bk_cgroup_get_state(struct bk_cgroup *cg, bool *ret_frozen, bool *ret_populated,
			struct bk_err *err)
{
	bool frozen, populated;
	int r;

	r = read_events(cg->events_fd, &frozen, &populated);
	if (r < 0)
		return bk_err_set(err, r, "cannot read '%s/cgroup.events': %s", cg->path,
				  strerror(-r));
	*ret_frozen = frozen;
	if (ret_populated)
		*ret_populated = populated;
	return 0;
}

/*
 * Whether the process of pidfd still runs: a pidfd polls readable once its process has exited
 * (a zombie too, which has no namespace left), and signal 0 fails with ESRCH once it is reaped.
 */
static bool pid_is_alive(int pidfd)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

	if (poll(&pfd, 1, 0) > 0)
		return false;
	return syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0;
}

/* Open /proc/PID/ns/mnt and make sure PID was still the same process afterwards. */
static int open_mntns_of(pid_t pid, int *ret_nsfd, struct stat *ret_st)
{
	_cleanup_close_ int pidfd = -EBADF, nsfd = -EBADF;
	char path[64];
	long fd;

	fd = syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -errno;
	pidfd = (int) fd;
	(void) snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int) pid);
	nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0) {
		int r = -errno;

		/*
		 * A process reaped between pidfd_open() and here makes /proc/PID/ns/mnt fail with
		 * EACCES (the kernel's answer when the task of a /proc entry is gone), not ESRCH
		 * (issue 16 item 5). Whatever the error, the pidfd tells whether it has exited:
		 * then it is "gone", never a failure of the switch or the recovery.
		 */
		if (!pid_is_alive(pidfd))
			return -ESRCH;
		return r;
	}
	/* Signal 0 through the pidfd: fails with ESRCH if the process is gone (pid recycled). */
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0)
		return -errno;
	if (fstat(nsfd, ret_st) < 0)
		return -errno;
	*ret_nsfd = TAKE_FD(nsfd);
	return 0;
}

struct ns_search {
	const char *cgpath;
	int nsfd;
	pid_t pid;
	struct stat st;
	unsigned n_checked;
};

/* Look at the processes of one cgroup directory; 0 when it had none, 1 when some, <0 error. */
static int scan_procs(int dfd, struct ns_search *s, struct bk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	char *line, *save = NULL;
	int found = 0, r;

	r = bk_read_file_at(dfd, "cgroup.procs", 4 << 20, &buf, NULL, NULL);
	if (r < 0)
		return bk_err_set(err, r, "cannot read '%s/cgroup.procs': %s", s->cgpath,
				  strerror(-r));
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		_cleanup_close_ int nsfd = -EBADF;
		struct stat st;
		uint64_t v;

		if (bk_parse_u64(line, &v) < 0 || v == 0 || v > INT32_MAX)
			continue;
		r = open_mntns_of((pid_t) v, &nsfd, &st);
		if (r == -ESRCH || r == -ENOENT)
			continue; /* exited meanwhile */
		if (r < 0)
			return bk_err_set(err, r, "cannot open the mount namespace of pid %s: %s",
					  line, strerror(-r));
		if (s->nsfd < 0) {
			s->nsfd = TAKE_FD(nsfd);
			s->pid = (pid_t) v;
			s->st = st;
		} else if (st.st_ino != s->st.st_ino || st.st_dev != s->st.st_dev)
			return bk_err_set(err, -EUCLEAN,
					  "cgroup '%s' has processes in several mount namespaces "
					  "(pids %d and %s)",
					  s->cgpath, (int) s->pid, line);
		found = 1;
		if (++s->n_checked >= MAX_PIDS_CHECKED)
			break;
	}
	return found;
}

static int scan_tree(int dfd, struct ns_search *s, unsigned depth, struct bk_err *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int fd, r;

	r = scan_procs(dfd, s, err);
	if (r != 0)
		return r;
	if (depth >= MAX_SEARCH_DEPTH)
		return 0;
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open cgroup '%s': %m", s->cgpath);
	d = fdopendir(fd);
	if (!d) {
		(void) close(fd);
		return bk_err_set(err, -errno, "cannot open cgroup '%s': %m", s->cgpath);
	}
	while ((de = readdir(d))) {
		_cleanup_close_ int sub = -EBADF;

		if (de->d_type != DT_DIR || !bk_filename_is_valid(de->d_name))
			continue;
		sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		r = scan_tree(sub, s, depth + 1, err);
		if (r != 0)
			return r;
	}
	return 0;
}

int bk_cgroup_open_mntns(struct bk_cgroup *cg, int *ret_nsfd, pid_t *ret_pid, struct bk_err *err)
{
	struct ns_search s = { .cgpath = cg->path, .nsfd = -EBADF };
	int r;

	r = scan_tree(cg->dfd, &s, 0, err);
	if (r < 0) {
		closep(&s.nsfd);
		return r;
	}
	if (s.nsfd < 0)
		return bk_err_set(err, -ESRCH, "cgroup '%s' has no process", cg->path);
	BK_DBG(REV, "cgroup '%s': mount namespace of pid %d", cg->path, (int) s.pid);
	*ret_nsfd = s.nsfd;
	if (ret_pid)
		*ret_pid = s.pid;
	return 0;
}

static bool unit_name_is_valid(const char *unit)
{
	if (!bk_filename_is_valid(unit) || unit[0] == '-' || strlen(unit) > 255)
		return false;
	for (const char *p = unit; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@",
			    *p))
			return false;
	return true;
}

/* systemctl show -p ControlGroup --value UNIT; 0 with *ret set (maybe ""), <0 when it failed. */
static int ask_systemctl(const char *unit, char **ret)
{
	char a0[] = "systemctl", a1[] = "show", a2[] = "-p", a3[] = "ControlGroup",
	     a4[] = "--value", a5[] = "--";
	_cleanup_free_ char *a6 = strdup(unit);
	char *argv[] = { a0, a1, a2, a3, a4, a5, a6, NULL };
	posix_spawn_file_actions_t fa;
	_cleanup_close_ int rfd = -EBADF;
	char buf[BK_CGROUP_PATH_MAX + 2];
	int pipefd[2], status, r;
	size_t len = 0;
	pid_t pid;

	if (!a6)
		return -ENOMEM;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	rfd = pipefd[0];
	r = posix_spawn_file_actions_init(&fa);
	if (r != 0) {
		(void) close(pipefd[1]);
		return -r;
	}
	r = posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
	if (r == 0)
		r = posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	if (r == 0)
		r = posix_spawnp(&pid, "systemctl", &fa, NULL, argv, environ);
	(void) posix_spawn_file_actions_destroy(&fa);
	(void) close(pipefd[1]);
	if (r != 0)
		return -r;

	for (;;) {
		ssize_t n = read(rfd, buf + len, sizeof(buf) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t) n;
		if (len == sizeof(buf) - 1)
			break;
	}
	(void) close(TAKE_FD(rfd));
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -ENOENT;
	buf[len] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	*ret = strdup(buf);
	return *ret ? 0 : -ENOMEM;
}

/* Breadth-limited depth-first search for a directory called unit; path built in buf. */
static int find_dir(int dfd, const char *unit, char *buf, size_t len, size_t used, unsigned depth)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int fd;

	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		(void) close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		_cleanup_close_ int sub = -EBADF;
		size_t l = strlen(de->d_name);
		int r;

		if (de->d_type != DT_DIR || !bk_filename_is_valid(de->d_name))
			continue;
		if (used + l + 2 > len)
			continue;
		if (used > 0)
			buf[used] = '/';
		memcpy(buf + used + (used > 0), de->d_name, l + 1);
		if (strcmp(de->d_name, unit) == 0)
			return 1;
		if (depth + 1 >= MAX_SEARCH_DEPTH)
			continue;
		sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		r = find_dir(sub, unit, buf, len, used + l + (used > 0), depth + 1);
		if (r != 0)
			return r;
	}
	buf[used] = '\0';
	return 0;
}

int bk_cgroup_resolve_unit(const char *root_path, const char *unit, char **ret, struct bk_err *err)
{
	_cleanup_free_ char *answer = NULL, *root_found = NULL;
	_cleanup_close_ int root_fd = -EBADF;
	char buf[BK_CGROUP_PATH_MAX + 1] = "";
	int r;

	if (!unit || !unit_name_is_valid(unit))
		return bk_err_set(err, -EINVAL, "invalid unit name '%s'", unit ? unit : "");
	if (!root_path) {
		r = bk_cgroup_find_root(&root_found, err);
		if (r < 0)
			return r;
		root_path = root_found;
	}
	r = ask_systemctl(unit, &answer);
	if (r == 0 && answer && answer[0] != '\0' && strcmp(answer, "/") != 0) {
		BK_DBG(REV, "systemd: unit '%s' is in cgroup '%s'", unit, answer);
		return bk_cgroup_path_normalize(answer, ret, err);
	}

	root_fd = open(root_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		return bk_err_set(err, -errno, "cannot open the cgroup2 root '%s': %m", root_path);
	r = find_dir(root_fd, unit, buf, sizeof(buf), 0, 0);
	if (r < 0)
		return bk_err_set(err, r, "cannot search '%s' for unit '%s': %s", root_path, unit,
				  strerror(-r));
	if (r == 0)
		return bk_err_set(err, -ENOENT, "unit '%s' has no cgroup under '%s'", unit,
				  root_path);
	BK_DBG(REV, "unit '%s' found at cgroup '%s'", unit, buf);
	return bk_cgroup_path_normalize(buf, ret, err);
}
