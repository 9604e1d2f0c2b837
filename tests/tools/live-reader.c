/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * live-reader VIEW NFILES STATS [PAUSE_US]: the test workload of tests/integ/switch.sh. Reads a set
 * of files from VIEW in a loop, as an application that wants one consistent revision would: each
 * cycle opens VIEW once (a path lookup through the view mount: this is what fails if a switch-over
 * ever leaves nothing mounted), then every file f000..f<N-1> (half of them in the subdirectory d/)
 * relative to that directory fd, and checks that all carry the same stamp (their first line). It
 * also opens VIEW/f000 by absolute path every cycle. Counts: cycles, failed opens (any open or read
 * that fails), mixed cycles (two stamps in one cycle), and the cycles seen per stamp. STATS gets
 * them (atomic rename) after the first good cycle (the test waits for it), on SIGUSR1, and at
 * SIGTERM, after which it exits. PAUSE_US (default 0) sleeps between cycles: a few readers spinning
 * flat out on two cores would otherwise starve the switch-over they are testing.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_STAMPS 8

static volatile sig_atomic_t want_dump, want_exit;

static struct {
	unsigned long long cycles, failed, mixed;
	char stamp[MAX_STAMPS][64];
	unsigned long long seen[MAX_STAMPS];
} st;

static void on_signal(int sig)
{
	if (sig == SIGTERM)
		want_exit = 1;
	want_dump = 1;
}

static void dump(const char *path)
{
	char tmp[4096];
	FILE *f;

	(void) snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return;
	fprintf(f, "cycles %llu\nfailed_opens %llu\nmixed %llu\n", st.cycles, st.failed, st.mixed);
	for (int i = 0; i < MAX_STAMPS; i++)
		if (st.stamp[i][0])
			fprintf(f, "stamp %s %llu\n", st.stamp[i], st.seen[i]);
	if (fclose(f) == 0)
		(void) rename(tmp, path);
}

/* Read the first line of (dfd, name) into buf; -1 on failure. */
static int read_stamp(int dfd, const char *name, char *buf, size_t len)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	(void) close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static void count_stamp(const char *s)
{
	for (int i = 0; i < MAX_STAMPS; i++) {
		if (st.stamp[i][0] == '\0')
			(void) snprintf(st.stamp[i], sizeof(st.stamp[i]), "%s", s);
		if (strcmp(st.stamp[i], s) == 0) {
			st.seen[i]++;
			return;
		}
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	char abs_f0[4096];
	struct timespec pause = { 0 };
	bool dumped = false;
	int nfiles;

	if (argc < 4 || argc > 5 || (nfiles = atoi(argv[2])) <= 0 || nfiles > 1000) {
		fprintf(stderr, "usage: live-reader VIEW NFILES STATS [PAUSE_US]\n");
		return 2;
	}
	if (argc == 5)
		pause.tv_nsec = (long) atoi(argv[4]) % 1000000 * 1000;
	(void) snprintf(abs_f0, sizeof(abs_f0), "%s/f000", argv[1]);
	(void) sigaction(SIGTERM, &sa, NULL);
	(void) sigaction(SIGUSR1, &sa, NULL);

	for (;;) {
		char first[64] = "", cur[64], name[32];
		bool bad = false, mixed = false;
		int dfd, fd;

		if (pause.tv_nsec)
			(void) nanosleep(&pause, NULL);
		if (want_dump) {
			want_dump = 0;
			dump(argv[3]);
			if (want_exit)
				return 0;
		}
		dfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			st.failed++;
			continue;
		}
		for (int i = 0; i < nfiles; i++) {
			(void) snprintf(name, sizeof(name), i % 2 ? "d/f%03d" : "f%03d", i);
			if (read_stamp(dfd, name, cur, sizeof(cur)) < 0) {
				st.failed++;
				bad = true;
				break;
			}
			if (first[0] == '\0')
				memcpy(first, cur, sizeof(first));
			else if (strcmp(first, cur) != 0)
				mixed = true;
		}
		(void) close(dfd);
		fd = open(abs_f0, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			st.failed++;
		else
			(void) close(fd);
		if (bad)
			continue;
		st.cycles++;
		if (mixed)
			st.mixed++;
		else
			count_stamp(first);
		if (!dumped) {
			dump(argv[3]);
			dumped = true;
		}
	}
}
