/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The registry of boot state backends and what every backend shares. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bk-boot-backend.h"
#include "bk-json.h"
#include "bk-log.h"

/* The registry: one line per backend. */
static const struct bk_boot_ops *const backends[] = {
	&bk_boot_file_ops,   &bk_boot_grub_ops,	  &bk_boot_uboot_ops,
	&bk_boot_sdboot_ops, &bk_boot_custom_ops,
};

static const struct bk_boot_ops *find_backend(const char *name)
{
	for (size_t i = 0; i < BK_ELEMENTSOF(backends); i++)
		if (name && strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

bool bk_boot_backend_exists(const char *name)
{
	return find_backend(name) != NULL;
}

const char *bk_boot_backend_name(size_t i)
{
	return i < BK_ELEMENTSOF(backends) ? backends[i]->name : NULL;
}

void bk_boot_data_init(struct bk_boot_data *d)
{
	memset(d, 0, sizeof(*d));
	bk_bootstate_init(&d->state);
	d->last.bank = _BK_BANK_INVALID;
	d->last.reason = _BK_REASON_INVALID;
}

static int check_reason_text(const char *text, struct bk_err *err)
{
	size_t len = strlen(text);

	if (len > BK_BOOT_BAD_REASON_MAX)
		return bk_err_set(err, -EINVAL, "bad reason is longer than %d bytes",
				  BK_BOOT_BAD_REASON_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) text[i] < 0x20 || text[i] == 0x7f)
			return bk_err_set(err, -EINVAL,
					  "bad reason must be one line without control characters");
	return 0;
}

int bk_boot_data_set_bad_reason(struct bk_boot_data *d, enum bk_bank_id bank, const char *text,
				struct bk_err *err)
{
	int r;

	if (!bk_bank_id_to_string(bank))
		return bk_err_set(err, -EINVAL, "invalid bank %d", (int) bank);
	if (!text)
		text = "";
	r = check_reason_text(text, err);
	if (r < 0)
		return r;
	/* Length checked above: the copy always fits. */
	memcpy(d->bad_reason[bank], text, strlen(text) + 1);
	return 0;
}

int bk_boot_open(const char *name, const struct bk_boot_env *env, struct bk_boot **ret,
		 struct bk_err *err)
{
	const struct bk_boot_ops *ops = find_backend(name);
	struct bk_boot *b;
	int r;

	if (!ops) {
		char list[128] = "";

		for (size_t i = 0; i < BK_ELEMENTSOF(backends); i++) {
			if (i > 0)
				strncat(list, ", ", sizeof(list) - strlen(list) - 1);
			strncat(list, backends[i]->name, sizeof(list) - strlen(list) - 1);
		}
		return bk_err_set(err, -EOPNOTSUPP,
				  "boot state backend '%s' is not available (available: %s)",
				  name ? name : "", list);
	}

	b = calloc(1, sizeof(*b));
	if (!b)
		return bk_err_set(err, -ENOMEM, "out of memory");
	b->ops = ops;
	b->env = *env;
	if (ops->priv_size > 0) {
		b->priv = calloc(1, ops->priv_size);
		if (!b->priv) {
			free(b);
			return bk_err_set(err, -ENOMEM, "out of memory");
		}
	}
	if (ops->open) {
		r = ops->open(b, err);
		if (r < 0) {
			free(b->priv);
			free(b);
			return r;
		}
	}
	BK_DBG(BOOT, "opened backend '%s' at '%s'", ops->name, b->location);
	*ret = b;
	return 0;
}

struct bk_boot *bk_boot_free(struct bk_boot *b)
{
	if (!b)
		return NULL;
	if (b->ops->close)
		b->ops->close(b);
	free(b->priv);
	free(b);
	return NULL;
}

const char *bk_boot_name(const struct bk_boot *b)
{
	return b->ops->name;
}

const char *bk_boot_location(const struct bk_boot *b)
{
	return b->location;
}

unsigned bk_boot_features(const struct bk_boot *b)
{
	return b->ops->features;
}

static int check_data(const struct bk_boot_data *d, struct bk_err *err)
{
	int r;

	r = bk_bootstate_check(&d->state, err);
	if (r < 0)
		return r;
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		if (!memchr(d->bad_reason[i], '\0', sizeof(d->bad_reason[i])))
			return bk_err_set(err, -EINVAL, "bank %s: bad reason is not terminated",
					  bk_bank_id_to_string((enum bk_bank_id) i));
		r = check_reason_text(d->bad_reason[i], err);
		if (r < 0)
			return bk_err_prefix(err, "bank %s",
					     bk_bank_id_to_string((enum bk_bank_id) i));
	}
	if (d->has_last && !bk_bank_id_to_string(d->last.bank))
		return bk_err_set(err, -EINVAL, "last boot: invalid bank %d", (int) d->last.bank);
	return 0;
}

int bk_boot_load(struct bk_boot *b, struct bk_boot_data *ret, struct bk_err *err)
{
	struct bk_boot_data d;
	int r;

	bk_boot_data_init(&d);
	r = b->ops->load(b, &d, err);
	if (r == -ENOEXEC)
		return bk_err_prefix(err, "corrupt boot state '%s'", b->location);
	if (r < 0)
		return r;
	r = check_data(&d, err);
	if (r < 0) {
		(void) bk_err_recode(err, -ENOEXEC);
		return bk_err_prefix(err, "corrupt boot state '%s'", b->location);
	}
	BK_DBG(BOOT, "loaded '%s'", b->location);
	*ret = d;
	return 0;
}

int bk_boot_save(struct bk_boot *b, const struct bk_boot_data *data, struct bk_err *err)
{
	int r;

	r = check_data(data, err);
	if (r < 0)
		return bk_err_prefix(err, "refusing to save the boot state to '%s'", b->location);
	r = b->ops->save(b, data, err);
	if (r < 0)
		return r;
	BK_DBG(BOOT, "saved '%s'", b->location);
	return 0;
}

int bk_booted_parse_cmdline(const char *cmdline, struct bk_booted *ret, struct bk_err *err)
{
	static const char bank_key[] = "bootbank.bank=", reason_key[] = "bootbank.reason=";
	struct bk_booted b = { _BK_BANK_INVALID, _BK_REASON_INVALID, 0 };
	const char *p = cmdline;
	bool found = false;

	for (;;) {
		char word[64];
		size_t n;

		p += strspn(p, " \t\n");
		if (*p == '\0')
			break;
		n = strcspn(p, " \t\n");
		if (n >= sizeof(word)) {
			/* Not one of ours (ours are short): skip it whole. */
			p += n;
			continue;
		}
		memcpy(word, p, n);
		word[n] = '\0';
		p += n;

		if (strncmp(word, bank_key, sizeof(bank_key) - 1) == 0) {
			const char *v = word + sizeof(bank_key) - 1;

			b.bank = bk_bank_id_from_string(v);
			if (b.bank < 0 || strlen(v) != 1)
				return bk_err_set(err, -EINVAL,
						  "kernel command line: invalid bootbank.bank='%s'",
						  v);
			found = true;
		} else if (strncmp(word, reason_key, sizeof(reason_key) - 1) == 0) {
			const char *v = word + sizeof(reason_key) - 1;

			b.reason = bk_boot_reason_from_string(v);
			if (b.reason < 0)
				return bk_err_set(
					err, -EINVAL,
					"kernel command line: invalid bootbank.reason='%s'", v);
		}
	}
	if (!found)
		return 1;
	*ret = b;
	return 0;
}

#define BOOTED_MAX_SIZE 4096

int bk_booted_read_at(int dfd, const char *path, struct bk_booted *ret, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct bk_booted b = { _BK_BANK_INVALID, _BK_REASON_INVALID, 0 };
	struct bk_err e = { 0 };
	const char *s;
	int r;

	r = bk_json_read_at(dfd, BK_BOOTED_FILE, BOOTED_MAX_SIZE, &o, &e);
	if (r == -ENOENT)
		return -ENOENT;
	if (r == -EINVAL || r == -EFBIG || r == -EBADFD)
		goto corrupt;
	if (r < 0)
		return bk_err_set(err, r, "cannot read '%s': %s", path, e.msg);

	bk_err_clear(&e);
	r = bk_json_get_string(o, "bank", true, &s, &e);
	if (r < 0)
		goto corrupt;
	b.bank = bk_bank_id_from_string(s);
	if (b.bank < 0 || strlen(s) != 1) {
		(void) bk_err_set(&e, -EINVAL, "field 'bank' must be A or B");
		goto corrupt;
	}
	r = bk_json_get_string(o, "reason", true, &s, &e);
	if (r < 0)
		goto corrupt;
	b.reason = bk_boot_reason_from_string(s);
	if (b.reason < 0) {
		(void) bk_err_set(&e, -EINVAL, "unknown reason '%s'", s);
		goto corrupt;
	}
	r = bk_json_get_u64(o, "time", false, UINT64_MAX, &b.time, &e);
	if (r < 0)
		goto corrupt;
	*ret = b;
	return 0;

corrupt:
	return bk_err_set(err, -ENOEXEC, "corrupt boot record '%s': %s", path, e.msg);
}

int bk_booted_write_at(int dfd, const char *path, const struct bk_booted *b, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	int r;

	if (!bk_bank_id_to_string(b->bank) || !bk_boot_reason_to_string(b->reason))
		return bk_err_set(err, -EINVAL, "invalid boot record for '%s'", path);
	if (!o || bk_json_add_string(o, "bank", bk_bank_id_to_string(b->bank)) < 0 ||
	    bk_json_add_string(o, "reason", bk_boot_reason_to_string(b->reason)) < 0 ||
	    bk_json_add_u64(o, "time", b->time) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = bk_json_write_atomic_at(dfd, BK_BOOTED_FILE, o, 0644, 0, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot write '%s'", path);
	return 0;
}
