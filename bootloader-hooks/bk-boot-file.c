/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `file` backend: the boot state as one JSON document, ROOT/var/lib/bootbank/bootstate.json,
 * replaced atomically. It is the store of sandboxes (`bankctl --root DIR`) and of the sandbox
 * boot (`bankctl boot --simulate`); no real loader reads it. Format (docs/banks.md):
 *
 *   { "format": 1,
 *     "banks": { "A": { "state": "good", "generation": 1, "tries_left": 0, "epoch": 1 },
 *                "B": { "state": "bad", ..., "bad_reason": "no tries left" } },
 *     "floor": 1, "pin": null,
 *     "last_boot": { "bank": "A", "reason": "fallback", "time": 1763800000 } }
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bk-boot-backend.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"

#define FILE_DIR      "var/lib/bootbank"
#define FILE_NAME     "bootstate.json"
#define FILE_FORMAT   1
#define FILE_MAX_SIZE (64 * 1024)

static int file_open(struct bk_boot *b, struct bk_err *err)
{
	const char *root = b->env.root;
	const char *sep = root[0] != '\0' && root[strlen(root) - 1] == '/' ? "" : "/";
	int n;

	n = snprintf(b->location, sizeof(b->location), "%s%s%s/%s", root, sep, FILE_DIR, FILE_NAME);
	if (n < 0 || (size_t) n >= sizeof(b->location))
		return bk_err_set(err, -ENAMETOOLONG, "root '%s' is too long", root);
	return 0;
}

/* Every key of o must be one of allowed (NULL-terminated): a stray key is corruption. */
static int only_keys(struct json_object *o, const char *const *allowed, struct bk_err *err)
{
	json_object_object_foreach(o, key, val)
	{
		bool ok = false;

		(void) val;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(key, *a) == 0)
				ok = true;
		if (!ok)
			return bk_err_set(err, -ENOEXEC, "unknown field '%s'", key);
	}
	return 0;
}

static int load_bank(struct json_object *banks, enum bk_bank_id id, struct bk_boot_data *d,
		     struct bk_err *err)
{
	static const char *const keys[] = { "state", "generation", "tries_left",
					    "epoch", "bad_reason", NULL };
	const char *name = bk_bank_id_to_string(id);
	struct bk_bank_boot *bb = &d->state.bank[id];
	struct json_object *o;
	const char *s = NULL;
	int r;

	r = bk_json_get_object(banks, name, true, &o, err);
	if (r < 0)
		goto fail;
	r = only_keys(o, keys, err);
	if (r < 0)
		goto fail;
	r = bk_json_get_string(o, "state", true, &s, err);
	if (r < 0)
		goto fail;
	bb->state = bk_bank_state_from_string(s);
	if (bb->state < 0) {
		r = bk_err_set(err, -ENOEXEC, "unknown state '%s'", s);
		goto fail;
	}
	r = bk_json_get_u64(o, "generation", true, BK_GENERATION_MAX, &bb->generation, err);
	if (r < 0)
		goto fail;
	r = bk_json_get_u64(o, "tries_left", true, BK_TRIES_MAX, &bb->tries_left, err);
	if (r < 0)
		goto fail;
	r = bk_json_get_u64(o, "epoch", true, BK_EPOCH_MAX, &bb->epoch, err);
	if (r < 0)
		goto fail;
	s = NULL;
	r = bk_json_get_string(o, "bad_reason", false, &s, err);
	if (r < 0)
		goto fail;
	if (s) {
		r = bk_boot_data_set_bad_reason(d, id, s, err);
		if (r < 0)
			goto fail;
	}
	return 0;

fail:
	(void) bk_err_recode(err, -ENOEXEC);
	return bk_err_prefix(err, "bank %s", name);
}

static int load_last(struct json_object *top, struct bk_boot_data *d, struct bk_err *err)
{
	static const char *const keys[] = { "bank", "reason", "time", NULL };
	struct json_object *o = NULL;
	const char *s;
	int r;

	/* Absent or null: no boot recorded yet. */
	if (!json_object_object_get_ex(top, "last_boot", &o) || !o)
		return 0;
	r = bk_json_get_object(top, "last_boot", true, &o, err);
	if (r < 0)
		return r;
	r = only_keys(o, keys, err);
	if (r < 0)
		goto fail;
	r = bk_json_get_string(o, "bank", true, &s, err);
	if (r < 0)
		goto fail;
	d->last.bank = bk_bank_id_from_string(s);
	if (d->last.bank < 0 || strlen(s) != 1) {
		r = bk_err_set(err, -ENOEXEC, "field 'bank' must be A or B");
		goto fail;
	}
	r = bk_json_get_string(o, "reason", true, &s, err);
	if (r < 0)
		goto fail;
	d->last.reason = bk_boot_reason_from_string(s);
	if (d->last.reason < 0) {
		r = bk_err_set(err, -ENOEXEC, "unknown reason '%s'", s);
		goto fail;
	}
	r = bk_json_get_u64(o, "time", true, UINT64_MAX, &d->last.time, err);
	if (r < 0)
		goto fail;
	d->has_last = true;
	return 0;

fail:
	return bk_err_prefix(err, "last_boot");
}

static int file_load(struct bk_boot *b, struct bk_boot_data *ret, struct bk_err *err)
{
	static const char *const keys[] = { "format", "banks", "floor", "pin", "last_boot", NULL };
	static const char *const bank_keys[] = { "A", "B", NULL };
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	_cleanup_free_ char *buf = NULL;
	_cleanup_close_ int dfd = -EBADF;
	struct json_object *banks, *pin = NULL;
	struct bk_boot_data d = *ret;
	uint64_t format;
	size_t len;
	int r;

	dfd = bk_open_beneath(b->env.root_fd, FILE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			      false);
	if (dfd == -ENOENT)
		return 0; /* never written: both banks empty */
	if (dfd < 0)
		return bk_err_set(err, dfd, "cannot open the directory of '%s': %m", b->location);

	r = bk_read_file_at(dfd, FILE_NAME, FILE_MAX_SIZE, &buf, &len, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 0;
	}
	if (r == -EFBIG || r == -EBADFD) {
		(void) bk_err_recode(err, -ENOEXEC);
		return r == -EFBIG ?
			       bk_err_set(err, -ENOEXEC, "larger than %d bytes", FILE_MAX_SIZE) :
			       -ENOEXEC;
	}
	if (r < 0) {
		bk_err_clear(err);
		return bk_err_set(err, r, "cannot read '%s': %m", b->location);
	}

	r = bk_json_parse(buf, len, &o, err);
	if (r < 0)
		return bk_err_recode(err, -ENOEXEC);
	if (!json_object_is_type(o, json_type_object))
		return bk_err_set(err, -ENOEXEC, "not a JSON object");
	r = only_keys(o, keys, err);
	if (r < 0)
		return r;
	r = bk_json_get_u64(o, "format", true, UINT64_MAX, &format, err);
	if (r < 0)
		return bk_err_recode(err, -ENOEXEC);
	if (format != FILE_FORMAT)
		return bk_err_set(err, -ENOEXEC, "unsupported format %llu (this bankctl reads %d)",
				  (unsigned long long) format, FILE_FORMAT);

	r = bk_json_get_object(o, "banks", true, &banks, err);
	if (r < 0)
		return bk_err_recode(err, -ENOEXEC);
	r = only_keys(banks, bank_keys, err);
	if (r < 0)
		return bk_err_prefix(err, "banks");
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		r = load_bank(banks, (enum bk_bank_id) i, &d, err);
		if (r < 0)
			return r;
	}

	r = bk_json_get_u64(o, "floor", true, BK_EPOCH_MAX, &d.state.floor, err);
	if (r < 0)
		return bk_err_recode(err, -ENOEXEC);

	if (!json_object_object_get_ex(o, "pin", &pin))
		return bk_err_set(err, -ENOEXEC, "missing field 'pin'");
	if (!pin) {
		d.state.pin = _BK_BANK_INVALID;
	} else {
		const char *s;

		r = bk_json_get_string(o, "pin", true, &s, err);
		if (r < 0)
			return bk_err_set(err, -ENOEXEC,
					  "field 'pin' must be \"A\", \"B\" or null");
		d.state.pin = bk_bank_id_from_string(s);
		if (d.state.pin < 0 || strlen(s) != 1)
			return bk_err_set(err, -ENOEXEC,
					  "field 'pin' must be \"A\", \"B\" or null");
	}

	r = load_last(o, &d, err);
	if (r < 0)
		return bk_err_recode(err, -ENOEXEC);
	*ret = d;
	return 0;
}

static int add_bank(struct json_object *banks, enum bk_bank_id id, const struct bk_boot_data *d)
{
	const struct bk_bank_boot *bb = &d->state.bank[id];
	struct json_object *o = json_object_new_object();

	if (bk_json_add(banks, bk_bank_id_to_string(id), o) < 0 ||
	    bk_json_add_string(o, "state", bk_bank_state_to_string(bb->state)) < 0 ||
	    bk_json_add_u64(o, "generation", bb->generation) < 0 ||
	    bk_json_add_u64(o, "tries_left", bb->tries_left) < 0 ||
	    bk_json_add_u64(o, "epoch", bb->epoch) < 0)
		return -ENOMEM;
	/* A reason only means something while the bank is bad: any verb that moves it on drops it.
	 */
	if (bb->state == BK_BANK_BAD && d->bad_reason[id][0] != '\0' &&
	    bk_json_add_string(o, "bad_reason", d->bad_reason[id]) < 0)
		return -ENOMEM;
	return 0;
}

static int file_save(struct bk_boot *b, const struct bk_boot_data *d, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	_cleanup_close_ int dfd = -EBADF;
	struct json_object *banks = json_object_new_object();
	int r;

	if (!o || bk_json_add_u64(o, "format", FILE_FORMAT) < 0 ||
	    bk_json_add(o, "banks", banks) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (add_bank(banks, (enum bk_bank_id) i, d) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
	if (bk_json_add_u64(o, "floor", d->state.floor) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	/* No pin is JSON null, which json-c represents as a NULL member. */
	if (d->state.pin == _BK_BANK_INVALID ?
		    json_object_object_add(o, "pin", NULL) < 0 :
		    bk_json_add_string(o, "pin", bk_bank_id_to_string(d->state.pin)) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (d->has_last) {
		struct json_object *last = json_object_new_object();

		if (bk_json_add(o, "last_boot", last) < 0 ||
		    bk_json_add_string(last, "bank", bk_bank_id_to_string(d->last.bank)) < 0 ||
		    bk_json_add_string(last, "reason", bk_boot_reason_to_string(d->last.reason)) <
			    0 ||
		    bk_json_add_u64(last, "time", d->last.time) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
	}

	r = bk_mkdir_p_at(b->env.root_fd, FILE_DIR, 0755, &dfd, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	/* Our own leftovers of a save that was killed; the save goes on regardless. */
	(void) bk_remove_temps_of_at(dfd, FILE_NAME, NULL);
	r = bk_json_write_atomic_at(dfd, FILE_NAME, o, 0644, 0, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	return 0;
}

const struct bk_boot_ops bk_boot_file_ops = {
	.name = "file",
	.features = BK_BOOT_KEEPS_BAD_REASON | BK_BOOT_KEEPS_LAST_BOOT,
	.open = file_open,
	.load = file_load,
	.save = file_save,
};
