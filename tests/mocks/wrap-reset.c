/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mocks.h"

int wrap_fsync_armed, wrap_fsync_skip;
unsigned wrap_fsync_calls;
int wrap_write_armed, wrap_write_skip;
int wrap_renameat_armed, wrap_renameat_skip;
int wrap_renameat2_armed, wrap_renameat2_skip;
int wrap_close_armed, wrap_close_skip;
int wrap_open64_armed, wrap_open64_skip;
const char *wrap_open64_match;
void (*wrap_open64_before)(const char *path);
int wrap_unlinkat_armed, wrap_unlinkat_skip;
int wrap_read_armed, wrap_read_skip;
int wrap_pwrite64_armed, wrap_pwrite64_skip, wrap_pwrite64_errno;
void (*wrap_pwrite64_observe)(int fd, const void *buf, size_t len, off_t offset);
void (*wrap_pread64_observe)(int fd, const void *buf, size_t len, off_t offset);

void wrap_reset(void)
{
	wrap_fsync_armed = wrap_fsync_skip = 0;
	wrap_fsync_calls = 0;
	wrap_write_armed = wrap_write_skip = 0;
	wrap_renameat_armed = wrap_renameat_skip = 0;
	wrap_renameat2_armed = wrap_renameat2_skip = 0;
	wrap_close_armed = wrap_close_skip = 0;
	wrap_open64_armed = wrap_open64_skip = 0;
	wrap_open64_match = NULL;
	wrap_open64_before = NULL;
	wrap_unlinkat_armed = wrap_unlinkat_skip = 0;
	wrap_read_armed = wrap_read_skip = 0;
	wrap_pwrite64_armed = wrap_pwrite64_skip = wrap_pwrite64_errno = 0;
	wrap_pwrite64_observe = NULL;
	wrap_pread64_observe = NULL;
}
