/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bk-looptool: drives lib/bk-loop and lib/bk-mount from the integration tests
 * (tests/integ/loop-mount.sh). One verb per library call; errors are one line on stderr and
 * the exit code of bk_exit_code_from_errno().
 *
 *   attach FILE OFFSET SIZE [ro] [partscan] [autoclear]   print the loop device
 *   detach DEV
 *   find FILE                      print the loop device backing FILE
 *   list FILE                      print every loop device backing FILE, best first
 *   info DEV                       print "offset=N size=N ro=0|1 partscan=0|1 autoclear=0|1"
 *   mount-fd FILE OFFSET SIZE FSTYPE TARGET   bk_mount_loop_fd() on FILE opened read-only
 *   mount SOURCE TARGET FSTYPE|- [ro] [nosuid] [OPTIONS]
 *   umount TARGET [detach-loop] [lazy]
 *   busy DEV                       print "busy" or "free"
 *   mountpoint DEV                 print where DEV is mounted in this namespace
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bk-err.h"
#include "bk-fs.h"
#include "bk-loop.h"
#include "bk-mount.h"

static int fail(int r, const struct bk_err *err)
{
	fprintf(stderr, "bk-looptool: %s\n", err->code < 0 ? err->msg : strerror(-r));
	return bk_exit_code_from_errno(r);
}

static int usage(void)
{
	fprintf(stderr, "usage: bk-looptool attach|detach|find|list|info|mount-fd|mount|umount|"
			"busy|mountpoint ARGS\n");
	return BK_EXIT_USAGE;
}

static bool has_word(int argc, char **argv, int from, const char *word)
{
	for (int i = from; i < argc; i++)
		if (strcmp(argv[i], word) == 0)
			return true;
	return false;
}

static int parse_range(const char *o, const char *s, uint64_t *offset, uint64_t *size)
{
	if (bk_parse_size(o, offset) < 0 || bk_parse_size(s, size) < 0) {
		fprintf(stderr, "bk-looptool: bad offset '%s' or size '%s'\n", o, s);
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bk_err err = { 0 };
	uint64_t offset, size;
	const char *verb;
	int r;

	if (argc < 3)
		return usage();
	verb = argv[1];

	if (strcmp(verb, "attach") == 0 && argc >= 5) {
		_cleanup_close_ int fd = -EBADF;
		_cleanup_free_ char *dev = NULL;
		unsigned flags = 0;
		bool ro = has_word(argc, argv, 5, "ro");

		if (parse_range(argv[3], argv[4], &offset, &size) < 0)
			return BK_EXIT_USAGE;
		fd = open(argv[2], (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (fd < 0)
			return fail(bk_err_set(&err, -errno, "cannot open '%s': %m", argv[2]),
				    &err);
		if (ro)
			flags |= BK_LOOP_READ_ONLY;
		if (has_word(argc, argv, 5, "partscan"))
			flags |= BK_LOOP_PARTSCAN;
		if (has_word(argc, argv, 5, "autoclear"))
			flags |= BK_LOOP_AUTOCLEAR;
		r = bk_loop_attach(fd, offset, size, flags, &dev, NULL, &err);
		if (r < 0)
			return fail(r, &err);
		printf("%s\n", dev);
		return 0;
	}
	if (strcmp(verb, "detach") == 0) {
		r = bk_loop_detach(argv[2], &err);
		return r < 0 ? fail(r, &err) : 0;
	}
	if (strcmp(verb, "find") == 0) {
		_cleanup_free_ char *dev = NULL;

		r = bk_loop_find_by_file(argv[2], &dev, &err);
		if (r < 0)
			return fail(r, &err);
		printf("%s\n", dev);
		return 0;
	}
	if (strcmp(verb, "list") == 0) {
		char **l = NULL;

		r = bk_loop_list_by_file(argv[2], &l, &err);
		if (r < 0)
			return fail(r, &err);
		for (char **p = l; *p; p++)
			printf("%s\n", *p);
		bk_loop_strv_free(l);
		return 0;
	}
	if (strcmp(verb, "info") == 0) {
		struct bk_loop_info info;

		r = bk_loop_get_info(argv[2], &info, &err);
		if (r < 0)
			return fail(r, &err);
		printf("offset=%llu size=%llu ro=%d partscan=%d autoclear=%d\n",
		       (unsigned long long) info.offset, (unsigned long long) info.size_limit,
		       info.read_only, info.partscan, info.autoclear);
		return 0;
	}
	if (strcmp(verb, "mount-fd") == 0 && argc == 7) {
		_cleanup_close_ int fd = -EBADF;

		if (parse_range(argv[3], argv[4], &offset, &size) < 0)
			return BK_EXIT_USAGE;
		fd = open(argv[2], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fail(bk_err_set(&err, -errno, "cannot open '%s': %m", argv[2]),
				    &err);
		r = bk_mount_loop_fd(fd, offset, size, argv[5], argv[6], &err);
		return r < 0 ? fail(r, &err) : 0;
	}
	if (strcmp(verb, "mount") == 0 && argc >= 5) {
		unsigned flags = 0;
		const char *options = NULL;

		for (int i = 5; i < argc; i++) {
			if (strcmp(argv[i], "ro") == 0)
				flags |= BK_MOUNT_RDONLY;
			else if (strcmp(argv[i], "nosuid") == 0)
				flags |= BK_MOUNT_NOSUID_NODEV;
			else
				options = argv[i];
		}
		r = bk_mount(argv[2], argv[3], strcmp(argv[4], "-") == 0 ? NULL : argv[4], flags,
			     options, &err);
		return r < 0 ? fail(r, &err) : 0;
	}
	if (strcmp(verb, "umount") == 0) {
		unsigned flags = 0;

		if (has_word(argc, argv, 3, "detach-loop"))
			flags |= BK_UMOUNT_DETACH_LOOP;
		if (has_word(argc, argv, 3, "lazy"))
			flags |= BK_UMOUNT_LAZY;
		r = bk_umount(argv[2], flags, &err);
		return r < 0 ? fail(r, &err) : 0;
	}
	if (strcmp(verb, "busy") == 0) {
		r = bk_blockdev_is_busy(argv[2], &err);
		if (r < 0)
			return fail(r, &err);
		printf("%s\n", r > 0 ? "busy" : "free");
		return 0;
	}
	if (strcmp(verb, "mountpoint") == 0) {
		_cleanup_free_ char *target = NULL;

		r = bk_mount_find_device(argv[2], &target, &err);
		if (r < 0)
			return fail(r, &err);
		printf("%s\n", target);
		return 0;
	}
	return usage();
}
