/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared fixtures of the unit tests: a fresh mkdtemp() directory per test. */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

struct bk_test_dir {
	char path[64];
	int dfd;
};

/* A fresh mkdtemp() directory in *d, opened; for fixtures that embed a struct bk_test_dir. */
static inline void bk_test_dir_open(struct bk_test_dir *d)
{
	snprintf(d->path, sizeof(d->path), "/tmp/bk-unit-XXXXXX");
	assert_non_null(mkdtemp(d->path));
	d->dfd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(d->dfd >= 0);
}

/* Close d and remove its directory with everything in it. */
static inline void bk_test_dir_close(struct bk_test_dir *d)
{
	char cmd[128];

	close(d->dfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
	assert_int_equal(system(cmd), 0);
}

static inline int bk_test_dir_setup(void **state)
{
	struct bk_test_dir *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	bk_test_dir_open(d);
	*state = d;
	return 0;
}

static inline int bk_test_dir_teardown(void **state)
{
	struct bk_test_dir *d = *state;

	bk_test_dir_close(d);
	free(d);
	return 0;
}

/* mkdir -p beneath dfd: each component of path, 0755; one that exists already is kept. */
static inline void bk_test_mkdir_p(int dfd, const char *path)
{
	char buf[256];

	assert_true(strlen(path) < sizeof(buf));
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf; (p = strchr(p, '/')); p++) {
		*p = '\0';
		assert_true(mkdirat(dfd, buf, 0755) == 0 || errno == EEXIST);
		*p = '/';
	}
	assert_true(mkdirat(dfd, buf, 0755) == 0 || errno == EEXIST);
}

/* Number of directory entries whose name starts with prefix. */
static inline int bk_test_count_prefix(int dfd, const char *prefix)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fdopendir(fd);
	struct dirent *de;
	int n = 0;

	assert_non_null(dir);
	while ((de = readdir(dir)))
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(dir);
	return n;
}

/* Content of (dfd, name) into buf (NUL-terminated); returns the length or -1. */
static inline ssize_t bk_test_read(int dfd, const char *name, char *buf, size_t len)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

static inline void bk_test_write(int dfd, const char *name, const char *text)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
	close(fd);
}
