/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The switch-over mechanism: the revision pointer, the view swap inside a workload's mount
 * namespace, the watchdog that thaws frozen workloads, and the switch-over of a set of
 * workloads with rollback. Revisions live in RUN/rev/<id> (RUN = ROOT/run/bootbank), each a
 * read-only mount; RUN/current and RUN/previous are symlinks "rev/<id>".
 * Everything here needs root (setns, open_tree, move_mount, cgroup.freeze). Never logs.
 * docs/livepatch.md describes the protocol and what a crash at each step leaves.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bk-cgroup.h"
#include "bk-err.h"

#define BK_REV_DIR	"rev"
#define BK_REV_CURRENT	"current"
#define BK_REV_PREVIOUS "previous"
#define BK_REV_ID_MAX	64

/* [A-Za-z0-9][A-Za-z0-9_.+-]*, at most BK_REV_ID_MAX bytes. */
bool bk_rev_id_is_valid(const char *id);

/*
 * Read the pointer (run_dfd, name) (BK_REV_CURRENT or BK_REV_PREVIOUS): a symlink to
 * "rev/<id>". *ret_id gets <id> (malloc'ed). -ENOENT when absent, -EBADMSG when it is not
 * such a symlink.
 */
int bk_rev_pointer_get(int run_dfd, const char *name, char **ret_id, struct bk_err *err);

/*
 * Atomically replace the pointer: symlink "rev/<id>" under a temp name, renameat() over name,
 * fsync(run_dfd). id NULL removes the pointer (unlink + fsync). Returns 0 or -errno.
 */
int bk_rev_pointer_set(int run_dfd, const char *name, const char *id, struct bk_err *err);

/*
 * Remove the temp symlinks (".#current.*", ".#previous.*") a killed bk_rev_pointer_set() may
 * have left in run_dfd. Returns the number removed or -errno; fsyncs run_dfd when any was.
 */
int bk_rev_pointer_cleanup(int run_dfd);

/* The device (st_dev) of the mounted revision RUN/rev/<id>; -ENOENT, -ENOTDIR, -errno. */
int bk_rev_dev(int run_dfd, const char *id, dev_t *ret_dev, struct bk_err *err);

/*
 * What a workload's view shows, seen from outside its namespace (/proc/PID/root/VIEW):
 * *ret_dev the st_dev, *ret_is_mount whether the view is a mount point.
 * -ENOENT when the view does not exist in that namespace.
 */
int bk_view_stat(pid_t pid, const char *view, dev_t *ret_dev, bool *ret_is_mount,
		 struct bk_err *err);

/*
 * Whether view exists, a directory, in the mount namespace mntns_fd, resolved as the view
 * helper of a switch resolves it (a forked child setns()s into it; reads only). 0, -ENOENT
 * ("view '/x' does not exist in its mount namespace"), -ENOTDIR, -errno.
 */
int bk_view_check(int mntns_fd, const char *view, struct bk_err *err);

enum bk_view_mode {
	BK_VIEW_BENEATH = 'B', /* new mount moved beneath the old top, old top detached */
	BK_VIEW_STACKED = 'S', /* fallback (no MOVE_MOUNT_BENEATH): new mount on top, old kept */
	BK_VIEW_ATTACHED = 'A' /* the view was not a mount point: the revision mounted on it */
};

enum bk_view_flags {
	BK_VIEW_NO_BENEATH = 1 << 0, /* use the stacking fallback even where BENEATH works */
};

struct bk_view_swap;

/*
 * Prepare the swap of one view (no change yet, the workload is not frozen): fork a helper
 * that clones the revision mount RUN/rev/<id> with open_tree(OPEN_TREE_CLONE) in our mount
 * namespace, then setns() into mntns_fd (it stays in our user namespace), checks that view
 * exists there and reports back; it then waits for bk_view_swap_commit(). The helper holds no
 * other fd of ours (not the lock). Blocks until the helper is ready.
 * Returns 0, -ENOENT (the view does not exist in the workload's namespace), or -errno.
 */
int bk_view_swap_prepare(int run_dfd, const char *id, int mntns_fd, const char *view,
			 unsigned flags, struct bk_view_swap **ret, struct bk_err *err);

/*
 * The two halves of bk_view_swap_prepare(), to prepare several views at once:
 * bk_view_swap_fork() forks the helper and returns at once (*ret is owned by the caller even
 * before it is ready); bk_view_swap_wait_ready() blocks until the helper reports back and
 * returns as prepare does.
 */
int bk_view_swap_fork(int run_dfd, const char *id, int mntns_fd, const char *view, unsigned flags,
		      struct bk_view_swap **ret, struct bk_err *err);
int bk_view_swap_wait_ready(struct bk_view_swap *s, struct bk_err *err);

/* What the view showed when the helper got ready: its st_dev and whether it is a mount. */
dev_t bk_view_swap_old_dev(const struct bk_view_swap *s);
bool bk_view_swap_old_is_mount(const struct bk_view_swap *s);

/*
 * Do the swap: move_mount(MOVE_MOUNT_BENEATH) beneath the current top at view, then
 * umount2(view, MNT_DETACH) of the old top, so a path lookup sees either the old or the new
 * revision and never nothing. Where BENEATH is refused with EINVAL (kernels before 6.5) or
 * BK_VIEW_NO_BENEATH was given, the new mount goes on top and the old one stays beneath
 * (BK_VIEW_STACKED). A view that is not a mount point gets the revision mounted on it.
 * Checks afterwards that the view shows the new revision's device.
 * *ret_mode (optional) gets what was done. Returns 0 or -errno naming the step.
 */
int bk_view_swap_commit(struct bk_view_swap *s, enum bk_view_mode *ret_mode, struct bk_err *err);

/*
 * The two halves of bk_view_swap_commit(), for a caller that swaps several views at once:
 * bk_view_swap_start() tells the helper to swap (one write, no wait); bk_view_swap_fd() polls
 * readable (POLLIN) when its answer is there; bk_view_swap_finish() reads it (blocks until
 * then) and returns as commit does. *ret_changed (optional) tells whether the view may have
 * changed although the swap failed (only its final check failed).
 */
int bk_view_swap_start(struct bk_view_swap *s, struct bk_err *err);
int bk_view_swap_fd(const struct bk_view_swap *s);
int bk_view_swap_finish(struct bk_view_swap *s, enum bk_view_mode *ret_mode, bool *ret_changed,
			struct bk_err *err);
/*
 * Whether the view, seen from outside through the helper's /proc/PID/root, shows the target
 * revision yet: after bk_view_swap_start() it does as soon as the swap took effect, before
 * the helper's umount2() returns (it then waits for an RCU grace period). No system call but
 * a statx(); false on any error, and always when the view showed the target's device before
 * (then only the helper's answer tells).
 */
bool bk_view_swap_shows_new(const struct bk_view_swap *s);

/*
 * The mounts the workload has beneath its view (mount points inside it, from the workload's
 * /proc/self/mountinfo when the helper got ready): their number, and in *ret_list (optional,
 * owned by s) the first of them as "'/v/a', '/v/b'" (BK_VIEW_SUBMOUNTS_MAX bytes at most; ""
 * when even the first does not fit). A swap detaches the old top with its sub-mounts, so
 * these vanish from the workload's view.
 */
#define BK_VIEW_SUBMOUNTS_MAX 512
unsigned bk_view_swap_submounts(const struct bk_view_swap *s, const char **ret_list);

/* End the helper (if it was not committed it changes nothing) and free. Accepts NULL. */
struct bk_view_swap *bk_view_swap_free(struct bk_view_swap *s);
BK_DEFINE_CLEANUP(struct bk_view_swap *, bk_view_swap_free)

/*
 * The watchdog: a separate process (its own session, so it outlives a SIGKILL of the caller
 * and of the caller's process group) that holds the directory fds of n cgroups, a table of
 * deadlines shared with the caller (MAP_SHARED), and the read end of a pipe.
 * bk_watchdog_arm(i) before cgroup i is frozen and bk_watchdog_disarm(i) after it is thawed
 * only write that table (no system call in the frozen window). The watchdog thaws a cgroup
 * that stays armed longer than timeout_ms (checked every timeout_ms / 10, 1 to 20 ms), and
 * every armed cgroup at once when the pipe reaches EOF without a stop message (the caller
 * died). It holds no other fd of the caller (not the lock).
 */
struct bk_watchdog;

int bk_watchdog_start(const int *cg_dfds, size_t n, uint64_t timeout_ms, struct bk_watchdog **ret,
		      struct bk_err *err);
int bk_watchdog_arm(struct bk_watchdog *wd, size_t i, struct bk_err *err);
int bk_watchdog_disarm(struct bk_watchdog *wd, size_t i, struct bk_err *err);
/* Send "stop" (armed cgroups are thawed by the watchdog), wait for it to exit, free. NULL ok. */
struct bk_watchdog *bk_watchdog_stop(struct bk_watchdog *wd);
BK_DEFINE_CLEANUP(struct bk_watchdog *, bk_watchdog_stop)
/* The pid of the watchdog process (tests). */
pid_t bk_watchdog_pid(const struct bk_watchdog *wd);

/* One workload of a switch-over. */
struct bk_switch_item {
	const char *name;     /* for messages */
	struct bk_cgroup *cg; /* opened cgroup (not owned) */
	int mntns_fd;	      /* its mount namespace (not owned) */
	const char *view;     /* absolute path inside it */
	/* results */
	uint64_t frozen_ns; /* freeze asked -> thaw written, CLOCK_MONOTONIC; on failure too */
	uint64_t rollback_frozen_ns;
	bool switched; /* its view now shows the target (before a rollback) */
	bool skipped;  /* it already showed the target: nothing done */
	enum bk_view_mode mode;
};

struct bk_switch_opts {
	int run_dfd;		    /* ROOT/run/bootbank */
	const char *from;	    /* revision in service (NULL: none) */
	const char *to;		    /* revision to switch to */
	uint64_t freeze_timeout_ms; /* bound on one workload's freeze (watchdog too) */
	uint64_t freeze_batch;	    /* workloads freezing at once (0: twice the online CPUs) */
	unsigned view_flags;	    /* enum bk_view_flags */
	bool keep_pointer;	    /* do not touch RUN/current and RUN/previous */
	bool best_effort;	    /* recovery: no rollback, go on after a failing workload */
};

/*
 * Switch over: prepare a view helper per workload (nothing changes if one fails; a workload
 * with mounts beneath its view is refused with -EBUSY naming them, since the swap would drop
 * them, except with best_effort), start the watchdog, point RUN/previous at `from` and
 * RUN/current at `to`, then the workloads overlapped: freezes are asked for up to
 * freeze_batch at a time (the next as soon as one is frozen), each workload is swapped as
 * soon as it is frozen and thawed as soon as its view shows `to` (seen from outside), so
 * none waits for another's swap; the caller runs at a real-time priority
 * (SCHED_FIFO) meanwhile. Each item's frozen_ns is the time from its freeze request to its
 * thaw, whatever the outcome (a freeze timeout too). Workloads whose view already shows
 * `to` are skipped. If any step fails, every workload that was switched is swapped back to
 * `from` (frozen, swapped, thawed likewise) and the pointers are restored, then -errno is
 * returned with the first error (the workload named); every workload is thawed on every
 * path. With best_effort, a failing workload is left as it is (thawed), the others are
 * still switched, nothing is rolled back and the first error is returned. The lock must
 * be held by the caller. Blocks. *ret_total_ns (optional): duration of the whole switch-over.
 */
int bk_switch_run(const struct bk_switch_opts *o, struct bk_switch_item *items, size_t n,
		  uint64_t *ret_total_ns, struct bk_err *err);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bk_now_ns(void);
