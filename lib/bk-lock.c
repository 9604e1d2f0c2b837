/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "bk-fs.h"
#include "bk-lock.h"
#include "bk-log.h"

static void read_holder(int fd, char *buf, size_t len)
{
	ssize_t n = bk_pread_full(fd, buf, len - 1, 0);

	if (n <= 0) {
		buf[0] = '\0';
		return;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

int bk_lock_acquire(int dfd, const char *dfd_path, bool wait, int *ret_fd, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	char pid[32];
	int r;

	fd = openat(dfd, BK_LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open lock '%s/%s': %m", dfd_path,
				  BK_LOCK_FILE);

	for (;;) {
		r = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
		if (r == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK) {
			char holder[32];

			read_holder(fd, holder, sizeof(holder));
			return bk_err_set(err, -EBUSY,
					  "busy: another bootbank operation%s%s%s holds '%s/%s'",
					  holder[0] ? " (pid " : "", holder, holder[0] ? ")" : "",
					  dfd_path, BK_LOCK_FILE);
		}
		return bk_err_set(err, -errno, "cannot lock '%s/%s': %m", dfd_path, BK_LOCK_FILE);
	}

	/* Advisory only: who holds it, for the message of the next caller. */
	(void) snprintf(pid, sizeof(pid), "%d\n", (int) getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) < 0)
		BK_DBG(LOCK, "cannot record the holder's pid: %m");
	BK_DBG(LOCK, "acquired '%s/%s'", dfd_path, BK_LOCK_FILE);

	*ret_fd = TAKE_FD(fd);
	return 0;
}

int bk_lock_release(int fd)
{
	if (fd >= 0) {
		if (ftruncate(fd, 0) < 0)
			BK_DBG(LOCK, "cannot clear the holder's pid: %m");
		(void) close(fd);
	}
	return -EBADF;
}
