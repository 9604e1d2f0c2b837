/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The manager object, org.bootbank.Manager1 at /org/bootbank/Manager1 (docs/dbus-api.md).
 * Reads answer for everyone; every method that changes something checks the caller's
 * credentials itself (root or group bootbank), whatever the bus policy let through, and is
 * refused as busy at once while an operation holds the lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bankd.h"
#include "bk-bundle.h"
#include "bk-err.h"
#include "bk-events.h"
#include "bk-fetch.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-op-boot.h"
#include "bk-op-depot.h"
#include "bk-op-live.h"
#include "bk-op-remediate.h"
#include "bk-op-status.h"
#include "bk-op.h"

/* A context for one inline read; the caller releases it even after a failure. */
static int ctx_open(struct bankd_manager *m, struct bk_op_ctx *ctx, sd_bus_error *error)
{
	struct bk_err err = { 0 };
	int r;

	*ctx = (struct bk_op_ctx){ 0 };
	r = bk_op_ctx_open(ctx, m->root, m->config, &err);
	if (r < 0)
		return sd_bus_error_set(
			error, bk_exit_code_to_dbus_error(bk_exit_code_from_errno(r)), err.msg);
	return 0;
}

static int reply_error(sd_bus_error *error, int r, const struct bk_err *err)
{
	const char *name = bk_exit_code_to_dbus_error(bk_exit_code_from_errno(r));

	return sd_bus_error_set(error, name ? name : "org.bootbank.Error.Failed",
				err && err->msg[0] ? err->msg : "failed");
}

static int reply_json(sd_bus_message *msg, struct json_object *o)
{
	if (!o)
		return -ENOMEM;
	return sd_bus_reply_method_return(
		msg, "s",
		json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							  JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* ---- access -------------------------------------------------------------------------------- */

/* Whether the user uid is a member of group gid in the user database (NSS). */
static bool user_in_group(uid_t uid, gid_t gid)
{
	_cleanup_free_ gid_t *groups = NULL;
	struct passwd *pw;
	int n = 64;

	pw = getpwuid(uid);
	if (!pw)
		return false;
	if (pw->pw_gid == gid)
		return true;
	for (int tries = 0; tries < 4; tries++) {
		gid_t *g = realloc(groups, sizeof(gid_t) * (size_t) n);
		int want = n;

		if (!g)
			return false;
		groups = g;
		if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &want) >= 0) {
			for (int i = 0; i < want; i++)
				if (groups[i] == gid)
					return true;
			return false;
		}
		if (want <= n)
			return false;
		n = want;
	}
	return false;
}

/*
 * Root or a member of the admin group. Only what the bus itself vouches for counts: with
 * dbus-daemon that is the sender's pid and effective uid (SO_PEERCRED at connect); sd-bus
 * fills the uid, gid and supplementary groups in from /proc/PID ("augmented"), which a caller
 * can race by exiting and letting a privileged process reuse its pid, so sd-bus itself never
 * authorises on them. Root is an effective uid of 0 from the bus; the group is the user
 * database's membership of that uid (its primary group or a member list), as dbus-daemon's
 * own <policy group="..."> and polkit's unix-group: rules decide it.
 */
static int check_admin(struct bankd_manager *m, sd_bus_message *msg, const char *what,
		       sd_bus_error *error)
{
	_cleanup_(sd_bus_creds_unrefp) sd_bus_creds *c = NULL;
	struct group *gr;
	uid_t euid = 1;
	int r;

	r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID, &c);
	if (r >= 0 && (sd_bus_creds_get_augmented_mask(c) & SD_BUS_CREDS_EUID))
		r = -EPERM; /* not from the bus: never trusted */
	if (r >= 0)
		r = sd_bus_creds_get_euid(c, &euid);
	if (r < 0)
		return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
					 "cannot learn who is calling: %s", strerror(-r));
	if (euid == 0)
		return 0;
	gr = getgrnam(m->admin_group);
	if (gr && user_in_group(euid, gr->gr_gid))
		return 0;
	bk_log(LOG_NOTICE, "%s refused to uid %u: not root, not in group '%s'", what,
	       (unsigned) euid, m->admin_group);
	return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "%s needs root or group '%s'",
				 what, m->admin_group);
}

/*
 * Busy at once: a job of ours runs, or someone (bankctl) holds ROOT/run/bootbank/lock. The
 * probe takes the lock for an instant when it is free: the operation is about to take it
 * anyway. Someone taking it between the probe and the child's bk_op_lock() makes the job end
 * with org.bootbank.Error.Busy instead (docs/dbus-api.md).
 */
static int check_not_busy(struct bankd_manager *m, sd_bus_error *error)
{
	_cleanup_close_ int fd = -EBADF;
	char path[4096], pid[32] = "";
	ssize_t n;

	if (m->current)
		return sd_bus_error_setf(error, "org.bootbank.Error.Busy",
					 "busy: job %u (%s) is running", m->current->id,
					 bankd_op_to_string(m->current->op));
	(void) snprintf(path, sizeof(path), "%s/%s/lock", m->root, BK_OP_RUN_DIR);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return 0; /* no lock file: nobody ever held it here */
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return 0; /* released when fd is closed */
	if (errno != EWOULDBLOCK)
		return 0;
	n = pread(fd, pid, sizeof(pid) - 1, 0);
	pid[n > 0 ? n : 0] = '\0';
	pid[strcspn(pid, "\n")] = '\0';
	return sd_bus_error_setf(error, "org.bootbank.Error.Busy",
				 "busy: another bootbank operation%s%s%s holds '%s'",
				 pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", path);
}

/*
 * The caller's bundle: the daemon reads exactly the bytes behind this fd, long after the
 * checks (a stage copies them, a depot import keeps them), so only root may be able to change
 * them: bk_bundle_check_trusted() without a path (renaming or replacing the file does not
 * change the inode we read), the rule every verb that trusts a bundle applies
 * (docs/bundle-format.md, "Trust in the bundle file"). Refused with org.bootbank.Error.Refused
 * (Malformed when it is not a regular file).
 */
static int check_bundle_fd(int fd, sd_bus_error *error)
{
	struct bk_err err = { 0 };
	int r;

	r = bk_bundle_check_trusted(fd, NULL, &err);
	if (r == -ENOEXEC)
		return sd_bus_error_set(error, "org.bootbank.Error.Malformed", err.msg);
	if (r < 0)
		return sd_bus_error_set(error, "org.bootbank.Error.Refused", err.msg);
	return 0;
}

/* Read the a{sv} options; every key must be one of the booleans allowed (or "id", a string). */
static int read_options(sd_bus_message *msg, struct bankd_request *req, const char *const *allowed,
			sd_bus_error *error)
{
	int r;

	r = sd_bus_message_enter_container(msg, 'a', "{sv}");
	if (r < 0)
		return r;
	for (;;) {
		const char *key;
		bool found = false;
		int b;

		r = sd_bus_message_enter_container(msg, 'e', "sv");
		if (r < 0)
			return r;
		if (r == 0)
			break;
		r = sd_bus_message_read(msg, "s", &key);
		if (r < 0)
			return r;
		for (size_t i = 0; allowed[i]; i++)
			found = found || strcmp(allowed[i], key) == 0;
		if (!found)
			return sd_bus_error_setf(error, "org.bootbank.Error.Usage",
						 "unknown option '%s'", key);
		if (strcmp(key, "id") == 0) {
			const char *s;

			r = sd_bus_message_read(msg, "v", "s", &s);
			if (r < 0)
				return sd_bus_error_setf(error, "org.bootbank.Error.Usage",
							 "option 'id' must be a string");
			free(req->name);
			req->name = strdup(s);
			if (!req->name)
				return -ENOMEM;
		} else {
			r = sd_bus_message_read(msg, "v", "b", &b);
			if (r < 0)
				return sd_bus_error_setf(error, "org.bootbank.Error.Usage",
							 "option '%s' must be a boolean", key);
			if (strcmp(key, "activate") == 0)
				req->activate = b;
			else if (strcmp(key, "allow_downgrade") == 0)
				req->allow_downgrade = b;
			else if (strcmp(key, "ignore_compatible") == 0)
				req->ignore_compatible = b;
			else if (strcmp(key, "no_check_time") == 0)
				req->no_check_time = b;
			else if (strcmp(key, "force") == 0)
				req->force = b;
			else if (strcmp(key, "no_beneath") == 0)
				req->no_beneath = b;
			else if (strcmp(key, "reboot") == 0)
				req->reboot = b;
		}
		r = sd_bus_message_exit_container(msg);
		if (r < 0)
			return r;
	}
	return sd_bus_message_exit_container(msg);
}

/* ---- methods that start a child ------------------------------------------------------------ */

/*
 * Check the caller and the lock, then start req in a child: an exported job; the reply is its
 * path (reply_mode PATH) or, once the child ends, its result (RESULT). req is always released.
 */
static int start(struct bankd_manager *m, sd_bus_message *msg, struct bankd_request *req,
		 enum bankd_reply reply_mode, sd_bus_error *error)
{
	struct bankd_job *j = NULL;
	int r;

	r = bankd_job_start(m, req, reply_mode, reply_mode == BANKD_REPLY_RESULT ? msg : NULL, &j,
			    error);
	if (r < 0)
		return r;
	if (reply_mode == BANKD_REPLY_PATH)
		return sd_bus_reply_method_return(msg, "o", j->path);
	return 1; /* answered when the child ends */
}

/* Admin, not busy, then the request from the message's arguments. */
static int prepare(struct bankd_manager *m, sd_bus_message *msg, enum bankd_op op,
		   struct bankd_request *req, sd_bus_error *error)
{
	int r;

	*req = (struct bankd_request){ .op = op, .fd = -EBADF };
	r = check_admin(m, msg, bankd_op_to_string(op), error);
	if (r < 0)
		return r;
	return check_not_busy(m, error);
}

static int method_with_bundle(sd_bus_message *msg, struct bankd_manager *m, enum bankd_op op,
			      const char *const *allowed, sd_bus_error *error)
{
	struct bankd_request req;
	int fd, r;

	r = prepare(m, msg, op, &req, error);
	if (r < 0)
		return r;
	r = sd_bus_message_read(msg, "h", &fd);
	if (r < 0)
		return r;
	r = read_options(msg, &req, allowed, error);
	if (r >= 0)
		r = check_bundle_fd(fd, error);
	if (r >= 0) {
		req.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (req.fd < 0)
			r = sd_bus_error_set_errnof(error, errno, "cannot duplicate the fd: %m");
	}
	if (r < 0) {
		bankd_request_release(&req);
		return r;
	}
	return start(m, msg, &req, BANKD_REPLY_PATH, error);
}

/* The options of Stage and StageURL, of DepotImport and DepotImportURL. */
static const char *const stage_options[] = { "activate", "allow_downgrade", "ignore_compatible",
					     "no_check_time", NULL };
static const char *const import_options[] = { "force", "no_check_time", NULL };

static int method_stage(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	return method_with_bundle(msg, userdata, BANKD_OP_STAGE, stage_options, error);
}

/*
 * StageURL, DepotImportURL: the bundle at an http(s) URL, fetched by the job with the
 * credentials and trust of system.conf's [fetch] (docs/stage-url.md); the caller gives no file.
 */
static int method_with_url(sd_bus_message *msg, struct bankd_manager *m, enum bankd_op op,
			   const char *const *allowed, sd_bus_error *error)
{
	struct bankd_request req;
	const char *url;
	int r;

	r = prepare(m, msg, op, &req, error);
	if (r < 0)
		return r;
	r = sd_bus_message_read(msg, "s", &url);
	if (r < 0)
		return r;
	r = read_options(msg, &req, allowed, error);
	if (r >= 0 && !bk_fetch_is_url(url))
		r = sd_bus_error_setf(error, "org.bootbank.Error.Usage",
				      "'%s' is not an http:// or https:// URL", url);
	if (r >= 0) {
		req.url = strdup(url);
		if (!req.url)
			r = -ENOMEM;
	}
	if (r < 0) {
		bankd_request_release(&req);
		return r;
	}
	return start(m, msg, &req, BANKD_REPLY_PATH, error);
}

static int method_stage_url(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	return method_with_url(msg, userdata, BANKD_OP_STAGE, stage_options, error);
}

static int method_depot_import_url(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	return method_with_url(msg, userdata, BANKD_OP_DEPOT_IMPORT, import_options, error);
}

static int method_depot_import(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	return method_with_bundle(msg, userdata, BANKD_OP_DEPOT_IMPORT, import_options, error);
}

static int method_livepatch_apply(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	static const char *const allowed[] = { "no_check_time", "id", "no_beneath", NULL };

	return method_with_bundle(msg, userdata, BANKD_OP_LIVEPATCH_APPLY, allowed, error);
}

static int method_livepatch_rollback(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	struct bankd_request req;
	int r;

	r = prepare(userdata, msg, BANKD_OP_LIVEPATCH_ROLLBACK, &req, error);
	if (r < 0)
		return r;
	return start(userdata, msg, &req, BANKD_REPLY_PATH, error);
}

/* The boot-state verbs, recover and depot remove: short, answered with their result. */
static int method_short(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	struct bankd_manager *m = userdata;
	const char *member = sd_bus_message_get_member(msg);
	struct bankd_request req;
	enum bankd_op op;
	const char *a = NULL, *b = NULL;
	uint32_t tries = 0;
	int r;

	if (strcmp(member, "Activate") == 0)
		op = BANKD_OP_ACTIVATE;
	else if (strcmp(member, "MarkGood") == 0)
		op = BANKD_OP_MARK_GOOD;
	else if (strcmp(member, "MarkBad") == 0)
		op = BANKD_OP_MARK_BAD;
	else if (strcmp(member, "Rollback") == 0)
		op = BANKD_OP_ROLLBACK;
	else if (strcmp(member, "RollForward") == 0)
		op = BANKD_OP_ROLL_FORWARD;
	else if (strcmp(member, "Recover") == 0)
		op = BANKD_OP_RECOVER;
	else
		op = BANKD_OP_DEPOT_REMOVE;

	r = prepare(m, msg, op, &req, error);
	if (r < 0)
		return r;
	switch (op) {
	case BANKD_OP_ACTIVATE:
		r = sd_bus_message_read(msg, "su", &a, &tries);
		break;
	case BANKD_OP_MARK_GOOD:
		r = sd_bus_message_read(msg, "s", &a);
		break;
	case BANKD_OP_MARK_BAD:
	case BANKD_OP_DEPOT_REMOVE:
		r = sd_bus_message_read(msg, "ss", &a, &b);
		break;
	case BANKD_OP_ROLLBACK:
	case BANKD_OP_ROLL_FORWARD:
	case BANKD_OP_RECOVER:
	case BANKD_OP_STAGE:
	case BANKD_OP_DEPOT_IMPORT:
	case BANKD_OP_LIVEPATCH_APPLY:
	case BANKD_OP_LIVEPATCH_ROLLBACK:
	case BANKD_OP_DESIRED_SET:
	case BANKD_OP_DESIRED_CLEAR:
	case BANKD_OP_PRECHECK:
	case BANKD_OP_REMEDIATE:
	case _BANKD_OP_MAX:
	case _BANKD_OP_INVALID:
	default:
		break;
	}
	if (r < 0)
		return r;
	req.tries = tries;
	if (op == BANKD_OP_DEPOT_REMOVE) {
		req.name = strdup(a);
		req.version = strdup(b);
		if (!req.name || !req.version) {
			bankd_request_release(&req);
			return -ENOMEM;
		}
	} else if (a) {
		req.bank = strdup(a);
		req.reason = b ? strdup(b) : NULL;
		if (!req.bank || (b && !req.reason)) {
			bankd_request_release(&req);
			return -ENOMEM;
		}
	}
	return start(m, msg, &req, BANKD_REPLY_RESULT, error);
}

/* ---- reads answered inline ------------------------------------------------------------- */

/*
 * Release a context used inline. Status may mount a bank to read its record when the copy in
 * the state directory is missing (bk_op_bank_content()), and the first mount moves the process
 * into a private mount namespace for good (bk_op_mount_part()). The daemon must stay in the
 * host's: a live patch forked later makes mounts the host must see. So it goes back at once
 * (setns to the namespace it started in; the private one, and the bank's mount in it, vanish
 * with their last user). If it cannot, it stops rather than serve from the wrong namespace.
 */
static void ctx_end(struct bankd_manager *m, struct bk_op_ctx *ctx)
{
	bool private = ctx->ns_private;

	bk_op_ctx_release(ctx);
	if (!private)
		return;
	if (setns(m->host_mntns_fd, CLONE_NEWNS) < 0) {
		bk_log(LOG_CRIT, "cannot return to the host's mount namespace: %m; stopping");
		m->exiting = true;
		(void) sd_event_exit(m->event, BK_EXIT_FAILURE);
		return;
	}
	BK_DBG(MOUNT, "bankd: back in the host's mount namespace");
}

static int method_status(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	struct bankd_manager *m = userdata;
	struct bk_op_ctx ctx;
	struct bk_op_status v;
	struct json_object *o;
	int r;

	r = ctx_open(m, &ctx, error);
	if (r >= 0) {
		bk_op_status_load(&ctx, &v);
		o = bk_op_status_to_json(&ctx, &v);
		r = reply_json(msg, o);
		json_object_put(o);
		bk_op_status_release(&v);
	}
	ctx_end(m, &ctx);
	return r;
}

static int method_explain(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	struct bk_op_ctx ctx;
	struct bk_boot_data d;
	struct bk_boot_explain x;
	struct bk_err err = { 0 };
	struct json_object *o;
	int r;

	r = ctx_open(userdata, &ctx, error);
	if (r >= 0) {
		r = bk_op_explain(&ctx, &d, &x, &err);
		if (r < 0)
			r = reply_error(error, r, &err);
	}
	if (r >= 0) {
		o = bk_op_explain_to_json(&d, &x);
		r = reply_json(msg, o);
		json_object_put(o);
	}
	ctx_end(userdata, &ctx);
	return r;
}

static int method_events(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	struct bk_op_ctx ctx;
	struct bk_event *evs = NULL;
	struct bk_err err = { 0 };
	struct json_object *arr = NULL;
	size_t n = 0;
	uint32_t max_n;
	int r;

	r = sd_bus_message_read(msg, "u", &max_n);
	if (r < 0)
		return r;
	r = ctx_open(userdata, &ctx, error);
	if (r >= 0) {
		r = bk_op_events(&ctx, max_n, &evs, &n, &err);
		if (r < 0)
			r = reply_error(error, r, &err);
	}
	if (r >= 0) {
		arr = json_object_new_array();
		for (size_t i = 0; arr && i < n; i++) {
			struct json_object *e = bk_event_to_json(&evs[i]);

			if (!e || json_object_array_add(arr, e) < 0) {
				json_object_put(e);
				json_object_put(arr);
				arr = NULL;
			}
		}
		r = reply_json(msg, arr);
		json_object_put(arr);
		bk_events_free(evs, n);
	}
	ctx_end(userdata, &ctx);
	return r;
}

static int method_depot_list(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	struct bk_op_ctx ctx;
	struct bk_depot_entry *v = NULL;
	struct bk_err err = { 0 };
	struct json_object *o;
	size_t n = 0;
	int r;

	r = ctx_open(userdata, &ctx, error);
	if (r >= 0) {
		r = bk_op_depot_list(&ctx, &v, &n, &err);
		if (r < 0)
			r = reply_error(error, r, &err);
	}
	if (r >= 0) {
		o = bk_op_depot_list_to_json(v, n);
		r = reply_json(msg, o);
		json_object_put(o);
		bk_depot_entries_free(v, n);
	}
	ctx_end(userdata, &ctx);
	return r;
}

static int method_livepatch_status(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	struct bk_op_ctx ctx;
	struct bk_err err = { 0 };
	struct json_object *o = NULL;
	int r;

	r = ctx_open(userdata, &ctx, error);
	if (r >= 0) {
		r = bk_op_livepatch_status(&ctx, &o, &err);
		if (r < 0)
			r = reply_error(error, r, &err);
	}
	if (r >= 0)
		r = reply_json(msg, o);
	json_object_put(o);
	ctx_end(userdata, &ctx);
	return r;
}

/* ---- properties ---------------------------------------------------------------------------- */

static int prop_state(sd_bus *bus, const char *path, const char *interface, const char *property,
		      sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
	struct bankd_manager *m = userdata;
	struct bk_op_ctx ctx = { 0 };
	struct bk_err err = { 0 };
	const char *s = "";
	char buf[600] = "";
	int r;

	if (strcmp(property, "OperationInProgress") == 0)
		return sd_bus_message_append(reply, "s", m->current ? m->current->path : "");
	if (strcmp(property, "Root") == 0)
		return sd_bus_message_append(reply, "s", m->root);
	if (strcmp(property, "Version") == 0)
		return sd_bus_message_append(reply, "s", BK_VERSION);

	r = bk_op_ctx_open(&ctx, m->root, m->config, &err);
	if (strcmp(property, "MaintenanceMode") == 0) {
		_cleanup_close_ int dfd = -EBADF;
		struct bk_maint mt;
		bool on = false;

		if (r >= 0)
			dfd = openat(ctx.root_fd, BK_OP_STATE_DIR,
				     O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (dfd >= 0 && bk_maint_get(dfd, &mt, NULL) > 0) {
			on = true;
			bk_maint_release(&mt);
		}
		ctx_end(m, &ctx);
		return sd_bus_message_append(reply, "b", on);
	}
	if (r >= 0 && ctx.configured && strcmp(property, "BootedBank") == 0) {
		struct bk_booted b;

		if (bk_op_booted(&ctx, &b, NULL, NULL) == 0)
			s = bk_bank_id_to_string(b.bank);
	} else if (r >= 0 && ctx.configured && strcmp(property, "NextBank") == 0) {
		struct bk_boot_data d;
		struct bk_boot_explain x;

		if (bk_op_explain(&ctx, &d, &x, NULL) >= 0 && x.next.bank != _BK_BANK_INVALID)
			s = bk_bank_id_to_string(x.next.bank);
	} else if (r >= 0 && strcmp(property, "LastError") == 0) {
		_cleanup_close_ int dfd = -EBADF;
		struct bk_event ev;

		dfd = openat(ctx.root_fd, BK_OP_STATE_DIR,
			     O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (dfd >= 0 && bk_events_last_failure(dfd, &ev, NULL) > 0) {
			(void) snprintf(buf, sizeof(buf), "%s: %s", ev.operation,
					ev.message ? ev.message : "");
			s = buf;
			bk_event_release(&ev);
		}
	}
	r = sd_bus_message_append(reply, "s", s ? s : "");
	ctx_end(userdata, &ctx);
	return r;
}

/* ---- remediation (docs/remediation.md) ------------------------------------------------- */

/* A request with a live-patch mode ("" for the desired state's) and, for DesiredSet, an image. */
static int method_remediation(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	static const char *const allowed[] = { "reboot", "no_check_time", NULL };
	struct bankd_manager *m = userdata;
	const char *member = sd_bus_message_get_member(msg);
	const char *name = NULL, *version = NULL, *mode = "";
	struct bankd_request req;
	enum bankd_op op;
	int r;

	op = strcmp(member, "DesiredSet") == 0	 ? BANKD_OP_DESIRED_SET :
	     strcmp(member, "DesiredClear") == 0 ? BANKD_OP_DESIRED_CLEAR :
	     strcmp(member, "Precheck") == 0	 ? BANKD_OP_PRECHECK :
						   BANKD_OP_REMEDIATE;
	r = prepare(m, msg, op, &req, error);
	if (r < 0)
		return r;
	if (op == BANKD_OP_DESIRED_SET)
		r = sd_bus_message_read(msg, "sss", &name, &version, &mode);
	else if (op != BANKD_OP_DESIRED_CLEAR)
		r = sd_bus_message_read(msg, "s", &mode);
	if (r >= 0 && op == BANKD_OP_REMEDIATE)
		r = read_options(msg, &req, allowed, error);
	if (r >= 0 && mode[0] && bk_lp_mode_from_string(mode) < 0)
		r = sd_bus_error_setf(error, "org.bootbank.Error.Usage",
				      "unknown live-patch mode '%s' (disable, auto, enforce)",
				      mode);
	if (r >= 0) {
		req.reason = strdup(mode);
		req.name = name ? strdup(name) : NULL;
		req.version = version ? strdup(version) : NULL;
		if (!req.reason || (name && !req.name) || (version && !req.version))
			r = -ENOMEM;
	}
	if (r < 0) {
		bankd_request_release(&req);
		return r;
	}
	return start(m, msg, &req, op == BANKD_OP_REMEDIATE ? BANKD_REPLY_PATH : BANKD_REPLY_RESULT,
		     error);
}

/* Scan: read-only and inline, as Status (it may mount a bank's record: ctx_end() returns). */
static int method_scan(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	struct bankd_manager *m = userdata;
	struct bk_op_scan_result s;
	struct bk_op_ctx ctx;
	struct json_object *o;
	int r;

	r = ctx_open(m, &ctx, error);
	if (r >= 0) {
		bk_op_scan(&ctx, &s);
		o = bk_op_scan_to_json(&s);
		r = reply_json(msg, o);
		json_object_put(o);
	}
	ctx_end(m, &ctx);
	return r;
}

static int method_desired_show(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
	struct bankd_manager *m = userdata;
	struct bk_op_desired d;
	struct bk_err err = { 0 };
	struct bk_op_ctx ctx;
	struct json_object *o;
	int r;

	r = ctx_open(m, &ctx, error);
	if (r >= 0) {
		r = bk_op_desired_get(&ctx, &d, &err);
		if (r < 0)
			r = reply_error(error, r, &err);
		else if (r > 0)
			r = sd_bus_reply_method_return(msg, "s", "null");
		else {
			o = bk_op_desired_to_json(&d);
			r = reply_json(msg, o);
			json_object_put(o);
		}
	}
	ctx_end(m, &ctx);
	return r;
}

static const sd_bus_vtable manager_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_PROPERTY("Version", "s", prop_state, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Root", "s", prop_state, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("BootedBank", "s", prop_state, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
	SD_BUS_PROPERTY("NextBank", "s", prop_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
	SD_BUS_PROPERTY("OperationInProgress", "s", prop_state, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaintenanceMode", "b", prop_state, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
	SD_BUS_PROPERTY("LastError", "s", prop_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
	SD_BUS_METHOD_WITH_NAMES("Status", "", , "s", SD_BUS_PARAM(json), method_status,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("ExplainNextBoot", "", , "s", SD_BUS_PARAM(json), method_explain,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("Stage", "ha{sv}", SD_BUS_PARAM(bundle) SD_BUS_PARAM(options), "o",
				 SD_BUS_PARAM(job), method_stage, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("StageURL", "sa{sv}", SD_BUS_PARAM(url) SD_BUS_PARAM(options), "o",
				 SD_BUS_PARAM(job), method_stage_url, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("Activate", "su", SD_BUS_PARAM(bank) SD_BUS_PARAM(tries), "s",
				 SD_BUS_PARAM(json), method_short, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("MarkGood", "s", SD_BUS_PARAM(bank), "s", SD_BUS_PARAM(json),
				 method_short, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("MarkBad", "ss", SD_BUS_PARAM(bank) SD_BUS_PARAM(reason), "s",
				 SD_BUS_PARAM(json), method_short, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("Rollback", "", , "s", SD_BUS_PARAM(json), method_short,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("RollForward", "", , "s", SD_BUS_PARAM(json), method_short,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("Recover", "", , "s", SD_BUS_PARAM(json), method_short,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("DepotImport", "ha{sv}",
				 SD_BUS_PARAM(bundle) SD_BUS_PARAM(options), "o", SD_BUS_PARAM(job),
				 method_depot_import, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("DepotImportURL", "sa{sv}",
				 SD_BUS_PARAM(url) SD_BUS_PARAM(options), "o", SD_BUS_PARAM(job),
				 method_depot_import_url, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("DepotList", "", , "s", SD_BUS_PARAM(json), method_depot_list,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("DepotRemove", "ss", SD_BUS_PARAM(name) SD_BUS_PARAM(version), "s",
				 SD_BUS_PARAM(json), method_short, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("Events", "u", SD_BUS_PARAM(n), "s", SD_BUS_PARAM(json),
				 method_events, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("LivePatchApply", "ha{sv}",
				 SD_BUS_PARAM(bundle) SD_BUS_PARAM(options), "o", SD_BUS_PARAM(job),
				 method_livepatch_apply, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("LivePatchRollback", "", , "o", SD_BUS_PARAM(job),
				 method_livepatch_rollback, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("LivePatchStatus", "", , "s", SD_BUS_PARAM(json),
				 method_livepatch_status, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES(
		"DesiredSet", "sss", SD_BUS_PARAM(name) SD_BUS_PARAM(version) SD_BUS_PARAM(mode),
		"s", SD_BUS_PARAM(json), method_remediation, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("DesiredShow", "", , "s", SD_BUS_PARAM(json), method_desired_show,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("DesiredClear", "", , "s", SD_BUS_PARAM(json), method_remediation,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("Scan", "", , "s", SD_BUS_PARAM(json), method_scan,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("Precheck", "s", SD_BUS_PARAM(mode), "s", SD_BUS_PARAM(json),
				 method_remediation, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_NAMES("Remediate", "sa{sv}", SD_BUS_PARAM(mode) SD_BUS_PARAM(options),
				 "o", SD_BUS_PARAM(job), method_remediation,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END,
};

int bankd_manager_export(struct bankd_manager *m)
{
	int r;

	r = sd_bus_add_object_vtable(m->bus, NULL, BANKD_OBJECT_PATH, BANKD_INTERFACE,
				     manager_vtable, m);
	if (r < 0)
		return bk_log_errno(LOG_ERR, r, "cannot export %s: %s", BANKD_OBJECT_PATH,
				    strerror(-r));
	return 0;
}

void bankd_manager_state_changed(struct bankd_manager *m)
{
	if (m->exiting)
		return;
	(void) sd_bus_emit_properties_changed(m->bus, BANKD_OBJECT_PATH, BANKD_INTERFACE,
					      "OperationInProgress", "BootedBank", "NextBank",
					      "MaintenanceMode", "LastError", NULL);
}
