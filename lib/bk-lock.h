/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one lock that serialises every mutating bootbank operation, across bankctl processes
 * and bankd: flock(LOCK_EX) on "<run dir>/lock". The holder writes its pid into the file so a
 * refused caller can say who holds it. The lock dies with its fd (a killed holder releases it).
 */
#pragma once

#include <stdbool.h>

#include "bk-err.h"

#define BK_LOCK_FILE "lock"

/*
 * Take the lock in directory dfd (created if missing). wait=false fails at once with -EBUSY
 * ("busy: another bootbank operation (pid N) holds '<path>'"); wait=true blocks until free.
 * On success *ret_fd holds the lock; release with bk_lock_release() or close().
 * dfd_path is used in messages only.
 */
int bk_lock_acquire(int dfd, const char *dfd_path, bool wait, int *ret_fd, struct bk_err *err);

/* Release a lock taken by bk_lock_acquire() (accepts a negative fd). Returns -EBADF. */
int bk_lock_release(int fd);
