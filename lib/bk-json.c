/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"

BK_DEFINE_CLEANUP(struct json_tokener *, json_tokener_free)

int bk_json_parse(const char *buf, size_t len, struct json_object **ret, struct bk_err *err)
{
	_cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
	struct json_object *o;
	enum json_tokener_error jerr;
	size_t used;

	if (len > INT_MAX)
		return bk_err_set(err, -EFBIG, "JSON document too large (%zu bytes)", len);
	if (memchr(buf, '\0', len))
		return bk_err_set(err, -EINVAL, "JSON document contains a NUL byte");

	tok = json_tokener_new_ex(BK_JSON_MAX_DEPTH);
	if (!tok)
		return bk_err_set(err, -ENOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);

	o = json_tokener_parse_ex(tok, buf, (int) len);
	jerr = json_tokener_get_error(tok);
	if (!o && jerr == json_tokener_continue)
		/* json-c waits for more input: terminate the document explicitly. */
		o = json_tokener_parse_ex(tok, "", 1);
	jerr = json_tokener_get_error(tok);
	if (jerr != json_tokener_success || !o) {
		if (o)
			json_object_put(o);
		return bk_err_set(err, -EINVAL, "invalid JSON at offset %zu: %s",
				  json_tokener_get_parse_end(tok),
				  jerr == json_tokener_continue ? "unexpected end of input" :
								  json_tokener_error_desc(jerr));
	}
	used = json_tokener_get_parse_end(tok);
	for (size_t i = used; i < len; i++)
		if (!strchr(" \t\r\n", buf[i])) {
			json_object_put(o);
			return bk_err_set(err, -EINVAL, "trailing data after JSON at offset %zu",
					  i);
		}
	*ret = o;
	return 0;
}

static int get_typed(struct json_object *o, const char *key, bool required, enum json_type type,
		     const char *type_name, struct json_object **ret, struct bk_err *err)
{
	struct json_object *v = NULL;

	if (!o || !json_object_is_type(o, json_type_object))
		return bk_err_set(err, -EINVAL, "expected an object holding '%s'", key);
	if (!json_object_object_get_ex(o, key, &v) || !v) {
		if (required)
			return bk_err_set(err, -EINVAL, "missing field '%s'", key);
		return 1;
	}
	if (!json_object_is_type(v, type))
		return bk_err_set(err, -EINVAL, "field '%s' must be %s", key, type_name);
	*ret = v;
	return 0;
}

int bk_json_get_string(struct json_object *o, const char *key, bool required, const char **ret,
		       struct bk_err *err)
{
	struct json_object *v;
	int r = get_typed(o, key, required, json_type_string, "a string", &v, err);

	if (r != 0)
		return r;
	if ((size_t) json_object_get_string_len(v) != strlen(json_object_get_string(v)))
		return bk_err_set(err, -EINVAL, "field '%s' contains a NUL byte", key);
	*ret = json_object_get_string(v);
	return 0;
}

int bk_json_get_u64(struct json_object *o, const char *key, bool required, uint64_t max,
		    uint64_t *ret, struct bk_err *err)
{
	struct json_object *v;
	uint64_t u;
	int r = get_typed(o, key, required, json_type_int, "an integer", &v, err);

	if (r != 0)
		return r;
	/* json-c keeps integers above INT64_MAX as uint64; negative ones as int64. */
	errno = 0;
	if (json_object_get_int64(v) < 0)
		return bk_err_set(err, -EINVAL, "field '%s' must not be negative", key);
	u = json_object_get_uint64(v);
	if (errno == ERANGE || u > max)
		return bk_err_set(err, -EINVAL, "field '%s' out of range (max %llu)", key,
				  (unsigned long long) max);
	*ret = u;
	return 0;
}

int bk_json_get_bool(struct json_object *o, const char *key, bool required, bool *ret,
		     struct bk_err *err)
{
	struct json_object *v;
	int r = get_typed(o, key, required, json_type_boolean, "true or false", &v, err);

	if (r != 0)
		return r;
	*ret = json_object_get_boolean(v);
	return 0;
}

int bk_json_get_array(struct json_object *o, const char *key, bool required,
		      struct json_object **ret, struct bk_err *err)
{
	return get_typed(o, key, required, json_type_array, "an array", ret, err);
}

int bk_json_get_object(struct json_object *o, const char *key, bool required,
		       struct json_object **ret, struct bk_err *err)
{
	return get_typed(o, key, required, json_type_object, "an object", ret, err);
}

int bk_json_add(struct json_object *o, const char *key, struct json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

int bk_json_add_string(struct json_object *o, const char *key, const char *s)
{
	/* json-c represents JSON null as a NULL object. */
	if (!s)
		return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
	return bk_json_add(o, key, json_object_new_string(s));
}

int bk_json_add_u64(struct json_object *o, const char *key, uint64_t v)
{
	return bk_json_add(o, key, json_object_new_uint64(v));
}

int bk_json_add_bool(struct json_object *o, const char *key, bool v)
{
	return bk_json_add(o, key, json_object_new_boolean(v));
}

const char *bk_json_to_string(struct json_object *o, bool pretty)
{
	int flags = JSON_C_TO_STRING_NOSLASHESCAPE;

	flags |=
		pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED : JSON_C_TO_STRING_PLAIN;
	return json_object_to_json_string_ext(o, flags);
}

int bk_json_write_atomic_at(int dfd, const char *name, struct json_object *o, mode_t mode,
			    unsigned flags, struct bk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	const char *s = bk_json_to_string(o, true);
	size_t len;

	if (!s)
		return bk_err_set(err, -ENOMEM, "cannot serialise '%s'", name);
	len = strlen(s);
	buf = malloc(len + 2);
	if (!buf)
		return bk_err_set(err, -ENOMEM, "out of memory");
	memcpy(buf, s, len);
	buf[len] = '\n';
	return bk_write_atomic_at(dfd, name, buf, len + 1, mode, flags, err);
}

int bk_json_read_at(int dfd, const char *name, size_t max, struct json_object **ret,
		    struct bk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r;

	r = bk_read_file_at(dfd, name, max, &buf, &len, err);
	if (r < 0)
		return r;
	r = bk_json_parse(buf, len, ret, err);
	if (r < 0) {
		(void) bk_err_prefix(err, "'%s'", name);
		return r;
	}
	return 0;
}

int bk_json_dup_string(struct json_object *o, const char *key, bool required, char **ret,
		       struct bk_err *err)
{
	const char *s = NULL;
	char *copy;
	int r;

	r = bk_json_get_string(o, key, required, &s, err);
	if (r != 0)
		return r;
	copy = strdup(s);
	if (!copy)
		return bk_err_set(err, -ENOMEM, "out of memory");
	*ret = copy;
	return 0;
}
