/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cgroup v2 glue for live patching: find the cgroup2 mount (through libmount, never a fixed
 * path), open a workload's cgroup, freeze and thaw it (cgroup.freeze, waiting for "frozen 1" in
 * cgroup.events with poll()), and find the mount namespace of its processes.
 * Freezing and thawing need write access to the cgroup (root). Never logs.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "bk-err.h"

/* Longest cgroup path (relative to the cgroup2 root) we accept from a user or systemd. */
#define BK_CGROUP_PATH_MAX 1024

struct bk_cgroup;

/*
 * Find the cgroup v2 hierarchy in this process's mount table (/proc/self/mountinfo through
 * libmount): the first mount of type "cgroup2". *ret_path gets its mount point (malloc'ed).
 * Returns 0, -ENOENT ("no cgroup2 file system is mounted") or -errno.
 */
int bk_cgroup_find_root(char **ret_path, struct bk_err *err);

/*
 * Check a cgroup path given relative to the cgroup2 root ("bk/w1", "/system.slice/x.service";
 * one leading '/' is allowed): every component a valid file name, at most BK_CGROUP_PATH_MAX.
 * "" and "/" (the root cgroup itself, which cannot be frozen) are refused.
 * *ret (optional) gets the normalised form without leading or trailing '/' (malloc'ed).
 * Returns 0 or -EINVAL with a message naming the path.
 */
int bk_cgroup_path_normalize(const char *path, char **ret, struct bk_err *err);

/*
 * Open the cgroup relpath (see bk_cgroup_path_normalize) beneath the cgroup2 root root_path
 * (from bk_cgroup_find_root; NULL: find it). The object keeps fds of the directory,
 * cgroup.freeze and cgroup.events, so a later freeze costs no path lookup.
 * Returns 0, -ENOENT ("cgroup 'x' does not exist"), -EINVAL, or -errno.
 */
int bk_cgroup_open(const char *root_path, const char *relpath, struct bk_cgroup **ret,
		   struct bk_err *err);

/* Free the object (closes its fds). Accepts NULL, returns NULL. */
struct bk_cgroup *bk_cgroup_free(struct bk_cgroup *cg);
BK_DEFINE_CLEANUP(struct bk_cgroup *, bk_cgroup_free)

/* The normalised relative path and the directory fd (owned by cg). */
const char *bk_cgroup_path(const struct bk_cgroup *cg);
int bk_cgroup_dfd(const struct bk_cgroup *cg);

/*
 * Freeze: write "1" to cgroup.freeze, then wait (poll() on cgroup.events, which signals
 * POLLPRI on every change) until it reads "frozen 1", at most timeout_ms. On a timeout the
 * cgroup is thawed again and -ETIMEDOUT is returned ("cgroup 'x' did not freeze within N ms").
 * Blocks; needs write access to the cgroup.
 */
int bk_cgroup_freeze(struct bk_cgroup *cg, uint64_t timeout_ms, struct bk_err *err);

/*
 * Thaw: write "0" to cgroup.freeze and wait until cgroup.events reads "frozen 0" (at most
 * timeout_ms; -ETIMEDOUT otherwise). Thawing a cgroup that is not frozen is a no-op.
 */
int bk_cgroup_thaw(struct bk_cgroup *cg, uint64_t timeout_ms, struct bk_err *err);

/*
 * The two halves of a freeze or thaw, for a caller that handles several cgroups at once:
 * bk_cgroup_set_frozen() writes "1" or "0" to cgroup.freeze and returns at once (the tasks of
 * a thawed cgroup run again from that write); bk_cgroup_wait_frozen() waits until
 * cgroup.events reads "frozen 1" or "frozen 0", at most timeout_ms (-ETIMEDOUT, "cgroup 'x'
 * did not freeze within N ms"), and changes nothing. bk_cgroup_events_fd() is the fd of
 * cgroup.events (owned by cg) to poll() for POLLPRI.
 */
int bk_cgroup_set_frozen(struct bk_cgroup *cg, bool frozen, struct bk_err *err);
int bk_cgroup_wait_frozen(struct bk_cgroup *cg, bool frozen, uint64_t timeout_ms,
			  struct bk_err *err);
int bk_cgroup_events_fd(const struct bk_cgroup *cg);

/*
 * Read cgroup.events: *ret_frozen (the effective state), *ret_populated (optional, any
 * process in it or below). Returns 0 or -errno.
 */
int bk_cgroup_get_state(struct bk_cgroup *cg, bool *ret_frozen, bool *ret_populated,
			struct bk_err *err);

/*
 * Find the mount namespace of the workload: the processes in cgroup.procs of the cgroup (or,
 * when it has none, of its descendants, depth first: a systemd unit may keep its processes in
 * sub-cgroups). Every process found must share one mount namespace, otherwise -EUCLEAN
 * ("cgroup 'x' has processes in several mount namespaces"). The namespace file is opened
 * through a pidfd-checked /proc/PID/ns/mnt (the process is checked to be alive after the open,
 * so a recycled pid cannot hand us a stranger's namespace).
 * *ret_nsfd gets an O_RDONLY|O_CLOEXEC fd of the namespace, *ret_pid (optional) the pid used.
 * Returns 0, -ESRCH (no process in the cgroup: the workload is not running), or -errno.
 */
int bk_cgroup_open_mntns(struct bk_cgroup *cg, int *ret_nsfd, pid_t *ret_pid, struct bk_err *err);

/*
 * Resolve a systemd unit to its cgroup path relative to the cgroup2 root: asks
 * `systemctl show -p ControlGroup --value UNIT` (posix_spawn, no shell); when systemctl is
 * missing, fails, or answers nothing, searches the cgroup tree under root_path for a
 * directory named UNIT (breadth first, bounded depth). *ret gets the normalised path.
 * Returns 0, -ENOENT ("unit 'x' has no cgroup"), -EINVAL (bad unit name) or -errno.
 */
int bk_cgroup_resolve_unit(const char *root_path, const char *unit, char **ret, struct bk_err *err);
