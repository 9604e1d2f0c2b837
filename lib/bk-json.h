/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON helpers over json-c: strict parsing with limits, typed field access with messages that
 * name the field, and atomic writes of documents.
 *
 * Field getters return 0 when the field is present and of the right type, 1 when it is absent
 * and not required (the output is left alone), and -EINVAL ("missing field 'x'", "field 'x'
 * must be a string") otherwise. Callers that need a domain code re-code it (bk_err_recode()).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-err.h"

BK_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define BK_JSON_MAX_DEPTH 32

/*
 * Parse exactly one JSON document from buf[0..len) (strict mode, depth limit, no trailing
 * bytes other than whitespace, no NUL inside). *ret gets a new reference.
 */
int bk_json_parse(const char *buf, size_t len, struct json_object **ret, struct bk_err *err);

int bk_json_get_string(struct json_object *o, const char *key, bool required, const char **ret,
		       struct bk_err *err);
/* A non-negative integer (json-c int or uint), at most max. */
int bk_json_get_u64(struct json_object *o, const char *key, bool required, uint64_t max,
		    uint64_t *ret, struct bk_err *err);
int bk_json_get_bool(struct json_object *o, const char *key, bool required, bool *ret,
		     struct bk_err *err);
int bk_json_get_array(struct json_object *o, const char *key, bool required,
		      struct json_object **ret, struct bk_err *err);
int bk_json_get_object(struct json_object *o, const char *key, bool required,
		       struct json_object **ret, struct bk_err *err);

/* Add a member, taking ownership of v even on failure. Returns 0 or -ENOMEM. */
int bk_json_add(struct json_object *o, const char *key, struct json_object *v);
/* s NULL adds JSON null. */
int bk_json_add_string(struct json_object *o, const char *key, const char *s);
int bk_json_add_u64(struct json_object *o, const char *key, uint64_t v);
int bk_json_add_bool(struct json_object *o, const char *key, bool v);

/* Serialise (pretty: two-space indent, no escaped slashes), newline-terminated. */
const char *bk_json_to_string(struct json_object *o, bool pretty);

/*
 * Atomically write o (pretty, with trailing newline) to (dfd, name) with bk_write_atomic_at;
 * flags as there (BK_WRITE_NOREPLACE: -EEXIST when name exists).
 */
int bk_json_write_atomic_at(int dfd, const char *name, struct json_object *o, mode_t mode,
			    unsigned flags, struct bk_err *err);

/*
 * Copy the string member key of o into *ret (malloc'ed): 0 copied, 1 absent and not required
 * (*ret untouched), <0 as bk_json_get_string() or -ENOMEM.
 */
int bk_json_dup_string(struct json_object *o, const char *key, bool required, char **ret,
		       struct bk_err *err);

/* Read and parse (dfd, name), at most max bytes. */
int bk_json_read_at(int dfd, const char *name, size_t max, struct json_object **ret,
		    struct bk_err *err);
