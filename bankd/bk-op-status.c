/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The status operation: what is configured, the banks and the boot state (bk-op-status.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "bk-events.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-maint.h"
#include "bk-op-stage.h"
#include "bk-op-status.h"
#include "bk-op.h"
#include "bk-select.h"

/* What the initramfs and the boot assessment left in run/bootbank (a host only). */
static void load_run(struct bk_op_ctx *ctx, struct bk_op_status *v)
{
	_cleanup_(json_object_putp) struct json_object *a = NULL;
	_cleanup_close_ int dfd = -EBADF;
	_cleanup_free_ char *env = NULL, *js = NULL;
	struct json_object *wanted = NULL;
	const char *action = NULL, *reason = NULL;
	size_t len = 0, pos = 0;
	char *line, *save = NULL;

	dfd = bk_open_beneath(ctx->root_fd, BK_OP_RUN_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			      false);
	if (dfd < 0)
		return;
	if (bk_read_file_at(dfd, "root.env", 64 * 1024, &env, NULL, NULL) >= 0)
		for (line = strtok_r(env, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			if (strncmp(line, "DATA=", 5) == 0)
				(void) snprintf(v->data_where, sizeof(v->data_where), "%s",
						line + 5);
	if (bk_read_file_at(dfd, "assess.json", 4 * 1024 * 1024, &js, &len, NULL) < 0 ||
	    bk_json_parse(js, len, &a, NULL) < 0 ||
	    bk_json_get_string(a, "action", true, &action, NULL) < 0 ||
	    bk_json_get_string(a, "reason", false, &reason, NULL) < 0 ||
	    bk_json_get_u64(a, "wanted_failed", true, UINT64_MAX, &v->assess_wanted_failed, NULL) <
		    0)
		return;
	v->has_assess = true;
	(void) snprintf(v->assess_action, sizeof(v->assess_action), "%s", action);
	(void) snprintf(v->assess_reason, sizeof(v->assess_reason), "%s", reason ? reason : "");
	if (json_object_object_get_ex(a, "wanted", &wanted) &&
	    json_object_is_type(wanted, json_type_array))
		for (size_t i = 0; i < json_object_array_length(wanted); i++) {
			struct json_object *c = json_object_array_get_idx(wanted, i), *okv, *name;

			if (json_object_object_get_ex(c, "ok", &okv) &&
			    !json_object_get_boolean(okv) &&
			    json_object_object_get_ex(c, "name", &name))
				bk_op_listf(v->assess_wanted, sizeof(v->assess_wanted), &pos, "%s",
					    json_object_get_string(name));
		}
}

void bk_op_status_load(struct bk_op_ctx *ctx, struct bk_op_status *v)
{
	_cleanup_close_ int dfd = -EBADF;

	*v = (struct bk_op_status){ 0 };
	/* Unconfigured: nothing to read (and status must not create anything). */
	if (!ctx->configured)
		return;
	v->load_r = bk_op_boot_load(ctx, &v->boot, &v->data, &v->load_err);
	v->booted_r = bk_op_booted(ctx, &v->booted, &v->booted_source, &v->booted_err);
	for (int i = 0; v->load_r >= 0 && i < _BK_BANK_MAX; i++)
		if (bk_op_bank_content(ctx, (enum bk_bank_id) i, &v->content[i]) != 0)
			v->content[i] = NULL;
	load_run(ctx, v);

	/* The maintenance flag and the last failed operation (read-only, no lock). */
	dfd = bk_open_beneath(ctx->root_fd, BK_OP_STATE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			      false);
	if (dfd < 0)
		return;
	v->maint_r = bk_maint_get(dfd, &v->maint, &v->maint_err);
	v->event_r = bk_events_last_failure(dfd, &v->last_error, NULL);
}

void bk_op_status_release(struct bk_op_status *v)
{
	v->boot = bk_boot_free(v->boot);
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		json_object_put(v->content[i]);
		v->content[i] = NULL;
	}
	if (v->maint_r > 0)
		bk_maint_release(&v->maint);
	v->maint_r = 0;
	if (v->event_r > 0)
		bk_event_release(&v->last_error);
	v->event_r = 0;
}

static int add_state_json(struct json_object *o, struct bk_op_status *v)
{
	struct json_object *m;

	if (v->maint_r > 0) {
		m = json_object_new_object();
		if (bk_json_add(o, "maintenance", m) < 0 ||
		    bk_json_add_string(m, "operation", v->maint.operation) < 0 ||
		    bk_op_json_add_nullable(m, "reason", v->maint.reason) < 0 ||
		    bk_json_add_string(m, "phase", bk_maint_phase_to_string(v->maint.phase)) < 0 ||
		    bk_json_add_u64(m, "started", v->maint.started) < 0 ||
		    bk_op_json_add_nullable(m, "from", v->maint.from) < 0 ||
		    bk_op_json_add_nullable(m, "to", v->maint.to) < 0 ||
		    bk_op_json_add_nullable(m, "bank", v->maint.bank) < 0 ||
		    bk_json_add_u64(m, "pid", v->maint.pid) < 0)
			return -ENOMEM;
	} else if (v->maint_r < 0) {
		m = json_object_new_object();
		if (bk_json_add(o, "maintenance", m) < 0 ||
		    bk_json_add_string(m, "error", v->maint_err.msg) < 0)
			return -ENOMEM;
	} else if (json_object_object_add(o, "maintenance", NULL) < 0) {
		return -ENOMEM;
	}
	if (v->event_r > 0)
		return bk_json_add(o, "last_error", bk_event_to_json(&v->last_error));
	return json_object_object_add(o, "last_error", NULL) < 0 ? -ENOMEM : 0;
}
static int add_boot_json(struct bk_op_ctx *ctx, struct json_object *o, struct bk_op_status *v)
{
	struct json_object *boot, *banks = NULL, *booted;

	if (v->load_r < 0) {
		boot = json_object_new_object();
		if (bk_json_add(o, "boot", boot) < 0 ||
		    bk_json_add_string(boot, "backend", ctx->config.bootloader) < 0 ||
		    bk_json_add_string(boot, "error", v->load_err.msg) < 0)
			return -ENOMEM;
		return 0;
	}
	boot = bk_op_bootstate_json(&v->data);
	if (bk_json_add(o, "boot", boot) < 0 ||
	    bk_json_add_string(boot, "backend", bk_boot_name(v->boot)) < 0 ||
	    bk_json_add_string(boot, "location", bk_boot_location(v->boot)) < 0 ||
	    json_object_object_add(boot, "error", NULL) < 0)
		return -ENOMEM;

	if (!json_object_object_get_ex(boot, "banks", &banks) || !banks)
		return -ENOMEM;
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		struct json_object *b = NULL, *content = NULL;

		if (!json_object_object_get_ex(banks, bk_bank_id_to_string((enum bk_bank_id) i),
					       &b) ||
		    !b)
			return -ENOMEM;
		content = v->content[i] ? json_object_get(v->content[i]) : NULL;
		if (json_object_object_add(b, "content", content) < 0)
			return -ENOMEM;
	}

	if (v->booted_r == 0) {
		booted = json_object_new_object();
		if (bk_json_add(boot, "booted", booted) < 0 ||
		    bk_json_add_string(booted, "bank", bk_bank_id_to_string(v->booted.bank)) < 0 ||
		    bk_op_json_add_nullable(booted, "reason",
					    bk_boot_reason_to_string(v->booted.reason)) < 0 ||
		    bk_json_add_string(booted, "source",
				       bk_op_booted_source_to_string(ctx, v->booted_source)) < 0)
			return -ENOMEM;
	} else if (json_object_object_add(boot, "booted", NULL) < 0) {
		return -ENOMEM;
	}
	if (bk_op_json_add_nullable(boot, "booted_error",
				    v->booted_r < 0 ? v->booted_err.msg : NULL) < 0)
		return -ENOMEM;
	return 0;
}

struct json_object *bk_op_status_to_json(struct bk_op_ctx *ctx, struct bk_op_status *v)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *cfg;

	if (!o)
		return NULL;
	if (bk_json_add_string(o, "root", ctx->root) < 0 ||
	    bk_json_add_string(o, "config", ctx->config_path) < 0 ||
	    bk_json_add_bool(o, "configured", ctx->configured) < 0)
		return NULL;
	if (ctx->configured) {
		cfg = json_object_new_object();
		if (bk_json_add(o, "system", cfg) < 0 ||
		    bk_op_json_add_nullable(cfg, "compatible", ctx->config.compatible) < 0 ||
		    bk_json_add_string(cfg, "bootloader", ctx->config.bootloader) < 0 ||
		    bk_json_add_string(cfg, "keyring", ctx->config.keyring) < 0 ||
		    bk_json_add_string(cfg, "depot", ctx->config.depot) < 0)
			return NULL;
		if (add_boot_json(ctx, o, v) < 0 || add_state_json(o, v) < 0 ||
		    bk_op_json_add_nullable(o, "data", v->data_where[0] ? v->data_where : NULL) < 0)
			return NULL;
		if (v->has_assess) {
			struct json_object *as = json_object_new_object();

			if (bk_json_add(o, "assessment", as) < 0 ||
			    bk_json_add_string(as, "action", v->assess_action) < 0 ||
			    bk_op_json_add_nullable(as, "reason",
						    v->assess_reason[0] ? v->assess_reason : NULL) <
				    0 ||
			    bk_json_add_u64(as, "wanted_failed", v->assess_wanted_failed) < 0 ||
			    bk_json_add_string(as, "wanted", v->assess_wanted) < 0)
				return NULL;
		} else if (json_object_object_add(o, "assessment", NULL) < 0) {
			return NULL;
		}
	} else if (json_object_object_add(o, "boot", NULL) < 0) {
		return NULL;
	}
	return TAKE_PTR(o);
}
