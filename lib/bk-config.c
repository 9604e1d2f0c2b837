/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <ini.h>

#include "bk-config.h"
#include "bk-fs.h"
#include "bk-log.h"

enum key_type {
	KEY_STRING,
	KEY_PATH, /* absolute path */
	KEY_BOOL,
	KEY_U64,
	KEY_ENUM,
};

struct key {
	const char *section;
	const char *name;
	enum key_type type;
	size_t offset;
	uint64_t min, max;	    /* KEY_U64 */
	const char *const *choices; /* KEY_ENUM, NULL-terminated */
};

static const char *const bootloaders[] = {
	"file", "grub", "uboot", "systemd-boot", "custom", NULL
};

static const char *const live_patch_modes[] = { "disable", "auto", "enforce", NULL };

#define FIELD(f) offsetof(struct bk_config, f)
static const struct key keys[] = {
	{ "system", "compatible", KEY_STRING, FIELD(compatible), 0, 0, NULL },
	{ "system", "bootloader", KEY_ENUM, FIELD(bootloader), 0, 0, bootloaders },
	{ "keyring", "path", KEY_PATH, FIELD(keyring), 0, 0, NULL },
	{ "keyring", "check-time", KEY_BOOL, FIELD(check_time), 0, 0, NULL },
	{ "depot", "path", KEY_PATH, FIELD(depot), 0, 0, NULL },
	{ "disk", "device", KEY_PATH, FIELD(disk), 0, 0, NULL },
	{ "disk", "bank-a", KEY_PATH, FIELD(bank_a), 0, 0, NULL },
	{ "disk", "bank-b", KEY_PATH, FIELD(bank_b), 0, 0, NULL },
	{ "disk", "boot", KEY_PATH, FIELD(boot), 0, 0, NULL },
	{ "boot", "tries", KEY_U64, FIELD(tries), 1, 100, NULL },
	{ "boot", "custom-backend", KEY_PATH, FIELD(custom_backend), 0, 0, NULL },
	{ "livepatch", "hook-timeout-sec", KEY_U64, FIELD(hook_timeout_sec), 1, 3600, NULL },
	{ "livepatch", "freeze-timeout-ms", KEY_U64, FIELD(freeze_timeout_ms), 1, 60000, NULL },
	{ "livepatch", "freeze-batch", KEY_U64, FIELD(freeze_batch), 0, 100000, NULL },
	{ "fetch", "ca-file", KEY_PATH, FIELD(fetch_ca_file), 0, 0, NULL },
	{ "fetch", "client-cert", KEY_PATH, FIELD(fetch_client_cert), 0, 0, NULL },
	{ "fetch", "client-key", KEY_PATH, FIELD(fetch_client_key), 0, 0, NULL },
	{ "fetch", "bearer-token-file", KEY_PATH, FIELD(fetch_bearer_token_file), 0, 0, NULL },
	{ "fetch", "connect-timeout-sec", KEY_U64, FIELD(fetch_connect_timeout_sec), 1, 600, NULL },
	{ "fetch", "timeout-sec", KEY_U64, FIELD(fetch_timeout_sec), 1, 3600, NULL },
	{ "fetch", "retries", KEY_U64, FIELD(fetch_retries), 0, 20, NULL },
	{ "fetch", "retry-delay-ms", KEY_U64, FIELD(fetch_retry_delay_ms), 1, 60000, NULL },
	{ "remediation", "live-patch-mode", KEY_ENUM, FIELD(live_patch_mode), 0, 0,
	  live_patch_modes },
};

struct parse_state {
	struct bk_config *config;
	char msg[256]; /* first problem, without the file:line prefix */
};

static int set_string(char **field, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

int bk_config_init(struct bk_config *c)
{
	memset(c, 0, sizeof(*c));
	c->check_time = true;
	c->tries = 3;
	c->hook_timeout_sec = 30;
	c->freeze_timeout_ms = 2000;
	c->fetch_connect_timeout_sec = 15;
	c->fetch_timeout_sec = 30;
	c->fetch_retries = 3;
	c->fetch_retry_delay_ms = 1000;
	if (set_string(&c->bootloader, "file") < 0 ||
	    set_string(&c->keyring, "/etc/bootbank/keyring.pem") < 0 ||
	    set_string(&c->depot, "/var/lib/bootbank/depot") < 0 ||
	    set_string(&c->live_patch_mode, "auto") < 0) {
		bk_config_release(c);
		return -ENOMEM;
	}
	return 0;
}

void bk_config_release(struct bk_config *c)
{
	for (size_t i = 0; i < BK_ELEMENTSOF(keys); i++)
		if (keys[i].type == KEY_STRING || keys[i].type == KEY_PATH ||
		    keys[i].type == KEY_ENUM) {
			char **field = (char **) ((char *) c + keys[i].offset);

			free(*field);
			*field = NULL;
		}
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_state *st = user;
	const struct key *k = NULL;
	bool known_section = false;
	void *field;
	int r;

	if (st->msg[0])
		return 1; /* keep the first problem only */

	for (size_t i = 0; i < BK_ELEMENTSOF(keys); i++) {
		if (strcmp(keys[i].section, section) != 0)
			continue;
		known_section = true;
		if (strcmp(keys[i].name, name) == 0) {
			k = &keys[i];
			break;
		}
	}
	if (!known_section) {
		(void) snprintf(st->msg, sizeof(st->msg), "unknown section [%s]", section);
		return 0;
	}
	if (!k) {
		(void) snprintf(st->msg, sizeof(st->msg), "unknown key '%s' in section [%s]", name,
				section);
		return 0;
	}

	field = (char *) st->config + k->offset;
	switch (k->type) {
	case KEY_PATH:
		if (value[0] != '/') {
			(void) snprintf(st->msg, sizeof(st->msg),
					"%s.%s must be an absolute path, not '%s'", section, name,
					value);
			return 0;
		}
		_fallthrough_;
	case KEY_STRING:
		if (value[0] == '\0') {
			(void) snprintf(st->msg, sizeof(st->msg), "%s.%s must not be empty",
					section, name);
			return 0;
		}
		r = set_string(field, value);
		if (r < 0) {
			(void) snprintf(st->msg, sizeof(st->msg), "out of memory");
			return 0;
		}
		break;
	case KEY_ENUM: {
		bool ok = false;

		for (const char *const *c = k->choices; *c; c++)
			ok = ok || strcmp(*c, value) == 0;
		if (!ok) {
			(void) snprintf(st->msg, sizeof(st->msg), "%s.%s: unknown value '%s'",
					section, name, value);
			return 0;
		}
		if (set_string(field, value) < 0) {
			(void) snprintf(st->msg, sizeof(st->msg), "out of memory");
			return 0;
		}
		break;
	}
	case KEY_BOOL:
		if (bk_parse_bool(value, field) < 0) {
			(void) snprintf(st->msg, sizeof(st->msg),
					"%s.%s must be yes or no, not '%s'", section, name, value);
			return 0;
		}
		break;
	case KEY_U64: {
		uint64_t v;

		if (bk_parse_u64(value, &v) < 0 || v < k->min || v > k->max) {
			(void) snprintf(st->msg, sizeof(st->msg),
					"%s.%s must be a number from %llu to %llu, not '%s'",
					section, name, (unsigned long long) k->min,
					(unsigned long long) k->max, value);
			return 0;
		}
		*(uint64_t *) field = v;
		break;
	}
	}
	BK_DBG(CONFIG, "%s.%s = '%s'", section, name, value);
	return 1;
}

static int finish(struct parse_state *st, int line, const char *path, struct bk_err *err)
{
	if (line == 0)
		return 0;
	if (line < 0)
		return bk_err_set(err, -ENOMEM, "'%s': cannot parse: out of memory", path);
	return bk_err_set(err, -EINVAL, "'%s':%d: %s", path, line,
			  st->msg[0] ? st->msg :
				       "syntax error (expected [section] or key = value)");
}

int bk_config_load_string(struct bk_config *c, const char *text, const char *path,
			  struct bk_err *err)
{
	struct parse_state st = { .config = c };
	int line = ini_parse_string(text, handler, &st);

	return finish(&st, line, path, err);
}

int bk_config_load_at(struct bk_config *c, int dfd, const char *name, const char *path,
		      struct bk_err *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r;

	r = bk_read_file_at(dfd, name, BK_CONFIG_MAX_SIZE, &text, &len, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return -ENOENT;
	}
	if (r < 0) {
		(void) bk_err_prefix(err, "configuration '%s'", path);
		return r;
	}
	if (strlen(text) != len)
		return bk_err_set(err, -EINVAL, "'%s': contains a NUL byte", path);
	return bk_config_load_string(c, text, path, err);
}
