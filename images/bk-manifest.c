/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-manifest.h"
#include "bk-version.h"

static const char *const type_names[_BK_PAYLOAD_TYPE_MAX] = {
	[BK_PAYLOAD_KERNEL] = "kernel", [BK_PAYLOAD_INITRD] = "initrd",
	[BK_PAYLOAD_ROOTFS] = "rootfs", [BK_PAYLOAD_COMPONENT] = "component",
	[BK_PAYLOAD_FILE] = "file",
};

static const char *const fs_names[_BK_FS_MAX] = {
	[BK_FS_RAW] = "raw",
	[BK_FS_SQUASHFS] = "squashfs",
	[BK_FS_EROFS] = "erofs",
	[BK_FS_EXT4] = "ext4",
};

const char *bk_payload_type_to_string(enum bk_payload_type t)
{
	if (t < 0 || t >= _BK_PAYLOAD_TYPE_MAX)
		return NULL;
	return type_names[t];
}

enum bk_payload_type bk_payload_type_from_string(const char *s)
{
	for (int i = 0; s && i < _BK_PAYLOAD_TYPE_MAX; i++)
		if (strcmp(type_names[i], s) == 0)
			return (enum bk_payload_type) i;
	return _BK_PAYLOAD_TYPE_INVALID;
}

const char *bk_payload_fs_to_string(enum bk_payload_fs fs)
{
	if (fs < 0 || fs >= _BK_FS_MAX)
		return NULL;
	return fs_names[fs];
}

enum bk_payload_fs bk_payload_fs_from_string(const char *s)
{
	for (int i = 0; s && i < _BK_FS_MAX; i++)
		if (strcmp(fs_names[i], s) == 0)
			return (enum bk_payload_fs) i;
	return _BK_FS_INVALID;
}

/* ---- value rules ------------------------------------------------------------------------ */

static bool utf8_is_valid_n(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s, *end = p + len;

	while (p < end) {
		unsigned n, c = *p;
		uint32_t cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		if ((size_t) (end - p) <= n)
			return false;
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		/* Overlong forms, surrogates and values above U+10FFFF. */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

static bool utf8_is_valid(const char *s)
{
	return utf8_is_valid_n(s, strlen(s));
}

static bool is_alnum(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* 1..max bytes, each alphanumeric or in extra. */
static bool charset_ok(const char *s, size_t max, const char *extra)
{
	size_t len = strnlen(s, max + 1);

	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && !strchr(extra, s[i]))
			return false;
	return true;
}

static bool image_name_is_valid(const char *s)
{
	return charset_ok(s, BK_MANIFEST_NAME_MAX, "._+-") && is_alnum(s[0]);
}

static bool build_is_valid(const char *s)
{
	size_t len = strnlen(s, BK_MANIFEST_BUILD_MAX + 1);

	if (len == 0 || len > BK_MANIFEST_BUILD_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return false;
	return true;
}

static bool description_is_valid(const char *s)
{
	size_t len = strnlen(s, BK_MANIFEST_DESCRIPTION_MAX + 1);

	if (len > BK_MANIFEST_DESCRIPTION_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char) s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') || s[i] == 0x7f)
			return false;
	return utf8_is_valid(s);
}

/* "YYYY-MM-DDTHH:MM:SSZ", a real UTC date and time. */
static bool created_is_valid(const char *s)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:ddZ";
	struct tm tm = { 0 }, back;
	time_t t;

	if (strlen(s) != sizeof(pattern) - 1)
		return false;
	for (size_t i = 0; i < sizeof(pattern) - 1; i++)
		if (pattern[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pattern[i])
			return false;
	tm.tm_year = atoi(s) - 1900;
	tm.tm_mon = atoi(s + 5) - 1;
	tm.tm_mday = atoi(s + 8);
	tm.tm_hour = atoi(s + 11);
	tm.tm_min = atoi(s + 14);
	tm.tm_sec = atoi(s + 17);
	back = tm;
	t = timegm(&tm);
	/* timegm normalises out-of-range fields: a real date survives unchanged. */
	return t != (time_t) -1 && tm.tm_year == back.tm_year && tm.tm_mon == back.tm_mon &&
	       tm.tm_mday == back.tm_mday && tm.tm_hour == back.tm_hour &&
	       tm.tm_min == back.tm_min && tm.tm_sec == back.tm_sec;
}

static bool mountpoint_is_valid(const char *s)
{
	size_t len = strnlen(s, BK_MANIFEST_MOUNTPOINT_MAX + 1);
	const char *p;

	if (len < 2 || len > BK_MANIFEST_MOUNTPOINT_MAX || s[0] != '/' || s[len - 1] == '/')
		return false;
	if (!utf8_is_valid(s))
		return false;
	for (p = s + 1; *p;) {
		size_t n = strcspn(p, "/");
		char comp[BK_MANIFEST_MOUNTPOINT_MAX + 1];

		memcpy(comp, p, n);
		comp[n] = '\0';
		/* Empty components ("//"), "." and ".." and control characters are refused. */
		if (n == 0 || strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0)
			return false;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char) comp[i] < 0x20 || comp[i] == 0x7f)
				return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

static bool payload_name_is_valid(const char *s)
{
	return bk_filename_is_valid(s) && utf8_is_valid(s);
}

/* ---- the canonical form ---------------------------------------------------------------- */

/*
 * json-c gives some documents a meaning the signer may not have seen: the last of duplicate
 * keys wins, a lone UTF-16 surrogate escape becomes U+FFFD, null reads as an absent field. So
 * the raw bytes are checked once more, after json-c accepted them (issue 17, item 4; the rules
 * are in docs/bundle-format.md, "Canonical form"): no duplicate key in an object, keys
 * without escapes, no null, no \u0000, every surrogate escape paired, numbers as plain
 * decimal digits (no sign, fraction, exponent or leading zero); for a manifest also nothing
 * before the object and at most one newline after it. Recursion is bounded by json-c's depth
 * limit (BK_JSON_MAX_DEPTH), checked again here.
 */
struct scan {
	const char *buf;
	size_t len, pos;
	struct bk_err *err;
};

struct key_ref {
	const char *s;
	size_t len;
};

static void scan_ws(struct scan *s)
{
	while (s->pos < s->len && (s->buf[s->pos] == ' ' || s->buf[s->pos] == '\t' ||
				   s->buf[s->pos] == '\r' || s->buf[s->pos] == '\n'))
		s->pos++;
}

static int scan_fail(struct scan *s, const char *what)
{
	return bk_err_set(s->err, -ENOEXEC, "not canonical JSON at offset %zu: %s", s->pos, what);
}

/* The 4 hex digits at buf[at], or -1. */
static int32_t hex4(const struct scan *s, size_t at)
{
	int32_t v = 0;

	if (at + 4 > s->len)
		return -1;
	for (size_t i = at; i < at + 4; i++) {
		char c = s->buf[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static int scan_string(struct scan *s, bool key, struct key_ref *ret)
{
	size_t start;

	if (s->pos >= s->len || s->buf[s->pos] != '"')
		return scan_fail(s, "expected a string");
	start = ++s->pos;
	for (;;) {
		int32_t cp, lo;

		if (s->pos >= s->len)
			return scan_fail(s, "unterminated string");
		if (s->buf[s->pos] == '"')
			break;
		if (s->buf[s->pos] != '\\') {
			s->pos++;
			continue;
		}
		if (key)
			return scan_fail(s, "an escape in an object key");
		if (s->pos + 1 >= s->len)
			return scan_fail(s, "unterminated escape");
		if (s->buf[s->pos + 1] != 'u') {
			s->pos += 2;
			continue;
		}
		cp = hex4(s, s->pos + 2);
		if (cp < 0)
			return scan_fail(s, "bad \\u escape");
		if (cp == 0)
			return scan_fail(s, "\\u0000 in a string");
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return scan_fail(s, "a lone UTF-16 low surrogate escape");
		if (cp >= 0xd800 && cp <= 0xdbff) {
			lo = s->pos + 7 < s->len && s->buf[s->pos + 6] == '\\' &&
					     s->buf[s->pos + 7] == 'u' ?
				     hex4(s, s->pos + 8) :
				     -1;
			if (lo < 0xdc00 || lo > 0xdfff)
				return scan_fail(s, "a lone UTF-16 high surrogate escape");
			s->pos += 12;
		} else
			s->pos += 6;
	}
	if (ret)
		*ret = (struct key_ref){ s->buf + start, s->pos - start };
	s->pos++;
	return 0;
}

/* Orders by length, then bytes (any total order finds duplicates). */
static int cmp_key(const void *a, const void *b)
{
	const struct key_ref *x = a, *y = b;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->s, y->s, x->len);
}

static int duplicate_key(struct scan *s, const struct key_ref *k)
{
	return bk_err_set(s->err, -ENOEXEC, "duplicate key '%.*s'",
			  (int) (k->len > 64 ? 64 : k->len), k->s);
}

static int scan_value(struct scan *s, unsigned depth);

/* Keys of an object; the first KEYS_INLINE on the stack (a manifest object has at most 10). */
#define KEYS_INLINE 32

static int scan_object(struct scan *s, unsigned depth)
{
	struct key_ref inline_keys[KEYS_INLINE];
	_cleanup_free_ struct key_ref *heap = NULL;
	struct key_ref *keys = inline_keys;
	size_t n = 0, cap = KEYS_INLINE;
	int r;

	s->pos++;
	scan_ws(s);
	if (s->pos < s->len && s->buf[s->pos] == '}') {
		s->pos++;
		return 0;
	}
	for (;;) {
		if (n == cap) {
			struct key_ref *k = reallocarray(heap, cap * 2, sizeof(*keys));

			if (!k)
				return bk_err_set(s->err, -ENOMEM, "out of memory");
			if (!heap)
				memcpy(k, inline_keys, sizeof(inline_keys));
			heap = keys = k;
			cap *= 2;
		}
		scan_ws(s);
		r = scan_string(s, true, &keys[n]);
		if (r < 0)
			return r;
		n++;
		scan_ws(s);
		if (s->pos >= s->len || s->buf[s->pos] != ':')
			return scan_fail(s, "expected ':'");
		s->pos++;
		r = scan_value(s, depth + 1);
		if (r < 0)
			return r;
		scan_ws(s);
		if (s->pos < s->len && s->buf[s->pos] == ',') {
			s->pos++;
			continue;
		}
		if (s->pos < s->len && s->buf[s->pos] == '}') {
			s->pos++;
			break;
		}
		return scan_fail(s, "expected ',' or '}'");
	}
	/* Few keys: compare every pair; many (a hostile object): sort, then neighbours. */
	if (n <= KEYS_INLINE) {
		for (size_t i = 1; i < n; i++)
			for (size_t j = 0; j < i; j++)
				if (cmp_key(&keys[j], &keys[i]) == 0)
					return duplicate_key(s, &keys[i]);
		return 0;
	}
	qsort(keys, n, sizeof(*keys), cmp_key);
	for (size_t i = 1; i < n; i++)
		if (cmp_key(&keys[i - 1], &keys[i]) == 0)
			return duplicate_key(s, &keys[i]);
	return 0;
}

static int scan_array(struct scan *s, unsigned depth)
{
	int r;

	s->pos++;
	scan_ws(s);
	if (s->pos < s->len && s->buf[s->pos] == ']') {
		s->pos++;
		return 0;
	}
	for (;;) {
		r = scan_value(s, depth + 1);
		if (r < 0)
			return r;
		scan_ws(s);
		if (s->pos < s->len && s->buf[s->pos] == ',') {
			s->pos++;
			continue;
		}
		if (s->pos < s->len && s->buf[s->pos] == ']') {
			s->pos++;
			return 0;
		}
		return scan_fail(s, "expected ',' or ']'");
	}
}

static int scan_value(struct scan *s, unsigned depth)
{
	size_t start;

	if (depth > BK_JSON_MAX_DEPTH)
		return scan_fail(s, "nested too deeply");
	scan_ws(s);
	if (s->pos >= s->len)
		return scan_fail(s, "expected a value");
	switch (s->buf[s->pos]) {
	case '{':
		return scan_object(s, depth);
	case '[':
		return scan_array(s, depth);
	case '"':
		return scan_string(s, false, NULL);
	case 't':
		if (s->len - s->pos < 4 || memcmp(s->buf + s->pos, "true", 4) != 0)
			return scan_fail(s, "expected true");
		s->pos += 4;
		return 0;
	case 'f':
		if (s->len - s->pos < 5 || memcmp(s->buf + s->pos, "false", 5) != 0)
			return scan_fail(s, "expected false");
		s->pos += 5;
		return 0;
	case 'n':
		return scan_fail(s, "null (leave an optional field out instead)");
	default:
		break;
	}
	start = s->pos;
	while (s->pos < s->len && s->buf[s->pos] >= '0' && s->buf[s->pos] <= '9')
		s->pos++;
	if (s->pos == start)
		return scan_fail(s, "a number must be plain decimal digits");
	if (s->buf[start] == '0' && s->pos - start > 1)
		return scan_fail(s, "a number with a leading zero");
	if (s->pos < s->len && strchr(".eE+-", s->buf[s->pos]))
		return scan_fail(s, "a number must be plain decimal digits");
	return 0;
}

static int check_canonical(const char *buf, size_t len, bool spec, struct bk_err *err)
{
	struct scan s = { .buf = buf, .len = len, .err = err };
	int r;

	if (!spec && (len == 0 || buf[0] != '{'))
		return scan_fail(&s, "the manifest must start with '{'");
	r = scan_value(&s, 1);
	if (r < 0)
		return r;
	if (spec)
		return 0;
	if (s.pos < len && buf[s.pos] == '\n')
		s.pos++;
	if (s.pos != len)
		return bk_err_set(err, -ENOEXEC,
				  "%zu bytes of trailing data after the manifest's JSON object "
				  "(at most one newline may follow it)",
				  len - s.pos);
	return 0;
}

/* ---- parsing ---------------------------------------------------------------------------- */

static const char *const top_keys[] = { "format",     "name",		"version",     "build",
					"compatible", "security_epoch", "description", "created",
					"live_patch", "payloads" };
static const char *const payload_keys[] = { "name",   "type",	      "fs",   "size",
					    "offset", "sha256",	      "live", "mountpoint",
					    "source", "chunks_sha256" };

static int check_keys(struct json_object *o, const char *const *keys, size_t n_keys,
		      const char *what, struct bk_err *err)
{
	json_object_object_foreach(o, key, val)
	{
		bool known = false;

		(void) val;
		for (size_t i = 0; i < n_keys && !known; i++)
			known = strcmp(keys[i], key) == 0;
		if (!known)
			return bk_err_set(err, -ENOEXEC, "unknown field '%s'%s", key, what);
	}
	return 0;
}

static int dup_string(const char *s, char **ret, struct bk_err *err)
{
	char *d = strdup(s);

	if (!d)
		return bk_err_set(err, -ENOMEM, "out of memory");
	*ret = d;
	return 0;
}

/* Get a string field; json helper errors become -ENOEXEC. 1: absent (optional). */
static int get_str(struct json_object *o, const char *key, bool required, const char **ret,
		   struct bk_err *err)
{
	int r = bk_json_get_string(o, key, required, ret, err);

	return r < 0 ? bk_err_recode(err, -ENOEXEC) : r;
}

static int get_u64(struct json_object *o, const char *key, bool required, uint64_t max,
		   uint64_t *ret, struct bk_err *err)
{
	int r = bk_json_get_u64(o, key, required, max, ret, err);

	return r < 0 ? bk_err_recode(err, -ENOEXEC) : r;
}

/* A required digest field: 64 lower-case hex digits, one spelling per digest (issue 17). */
static int get_digest(struct json_object *o, const char *key, uint8_t ret[BK_SHA256_LEN],
		      struct bk_err *err)
{
	const char *s;
	int r = get_str(o, key, true, &s, err);

	if (r < 0)
		return r;
	if (strlen(s) != BK_SHA256_HEX_LEN || strspn(s, "0123456789abcdef") != BK_SHA256_HEX_LEN ||
	    bk_sha256_from_hex(s, ret) < 0)
		return bk_err_set(err, -ENOEXEC, "field '%s' must be 64 lower-case hex digits",
				  key);
	return 0;
}

static int parse_payload(struct json_object *o, size_t index, unsigned flags, uint64_t format,
			 struct bk_payload *p, struct bk_err *err)
{
	bool chunked = format >= 2;
	bool spec = flags & BK_MANIFEST_PARSE_SPEC;
	const char *s = NULL;
	char what[64];
	int r;

	if (!json_object_is_type(o, json_type_object))
		return bk_err_set(err, -ENOEXEC, "payload #%zu must be an object", index);

	r = get_str(o, "name", true, &s, err);
	if (r < 0)
		return bk_err_prefix(err, "payload #%zu", index);
	if (!payload_name_is_valid(s))
		return bk_err_set(err, -ENOEXEC,
				  "payload #%zu: name '%s' is not a single path component", index,
				  s);
	r = dup_string(s, &p->name, err);
	if (r < 0)
		return r;

	(void) snprintf(what, sizeof(what), " in payload #%zu", index);
	r = check_keys(o, payload_keys, BK_ELEMENTSOF(payload_keys), what, err);
	if (r < 0)
		return r;

	r = get_str(o, "type", true, &s, err);
	if (r < 0)
		return r;
	p->type = bk_payload_type_from_string(s);
	if (p->type < 0)
		return bk_err_set(err, -ENOEXEC, "unknown payload type '%s'", s);

	p->fs = _BK_FS_INVALID;
	r = get_str(o, "fs", !spec, &s, err);
	if (r < 0)
		return r;
	if (r == 0) {
		p->fs = bk_payload_fs_from_string(s);
		if (p->fs < 0)
			return bk_err_set(err, -ENOEXEC, "unknown filesystem '%s'", s);
	}

	if (spec) {
		static const char *const computed[] = { "size", "offset", "sha256",
							"chunks_sha256" };

		for (size_t i = 0; i < BK_ELEMENTSOF(computed); i++)
			if (json_object_object_get_ex(o, computed[i], NULL))
				return bk_err_set(err, -ENOEXEC,
						  "field '%s' is computed by the builder",
						  computed[i]);
		r = get_str(o, "source", true, &s, err);
		if (r < 0)
			return r;
		if (s[0] == '\0')
			return bk_err_set(err, -ENOEXEC, "field 'source' is empty");
		r = dup_string(s, &p->source, err);
		if (r < 0)
			return r;
	} else {
		if (json_object_object_get_ex(o, "source", NULL))
			return bk_err_set(err, -ENOEXEC,
					  "unknown field 'source' (build specs only)");
		r = get_u64(o, "size", true, BK_MANIFEST_PAYLOAD_SIZE_MAX, &p->size, err);
		if (r < 0)
			return r;
		r = get_u64(o, "offset", true, BK_MANIFEST_PAYLOAD_SIZE_MAX, &p->offset, err);
		if (r < 0)
			return r;
		r = get_digest(o, "sha256", p->sha256, err);
		if (r < 0)
			return r;
		if (!chunked && json_object_object_get_ex(o, "chunks_sha256", NULL))
			return bk_err_set(
				err, -ENOEXEC,
				"field 'chunks_sha256' is not part of manifest format %llu",
				(unsigned long long) format);
		if (chunked) {
			r = get_digest(o, "chunks_sha256", p->chunks_sha256, err);
			if (r < 0)
				return r;
		}
	}

	r = bk_json_get_bool(o, "live", false, &p->live, err);
	if (r < 0)
		return bk_err_recode(err, -ENOEXEC);
	r = get_str(o, "mountpoint", false, &s, err);
	if (r < 0)
		return r;
	if (r == 0) {
		r = dup_string(s, &p->mountpoint, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_live_patch(struct json_object *o, struct bk_manifest *m, struct bk_err *err)
{
	struct json_object *lp = NULL, *from = NULL;
	size_t n;
	int r;

	r = bk_json_get_object(o, "live_patch", false, &lp, err);
	if (r != 0)
		return r < 0 ? bk_err_recode(err, -ENOEXEC) : 0;
	r = check_keys(lp, (const char *const[]){ "from" }, 1, " in 'live_patch'", err);
	if (r < 0)
		return r;
	r = bk_json_get_array(lp, "from", true, &from, err);
	if (r < 0) {
		(void) bk_err_prefix(err, "live_patch");
		return bk_err_recode(err, -ENOEXEC);
	}
	n = json_object_array_length(from);
	if (n == 0 || n > BK_MANIFEST_MAX_LIVE_FROM)
		return bk_err_set(err, -ENOEXEC, "live_patch.from must list 1 to %d versions",
				  BK_MANIFEST_MAX_LIVE_FROM);
	m->live_patch_from = calloc(n, sizeof(char *));
	if (!m->live_patch_from)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(from, i);

		if (!json_object_is_type(v, json_type_string) ||
		    strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
			return bk_err_set(err, -ENOEXEC, "live_patch.from[%zu] must be a string",
					  i);
		r = dup_string(json_object_get_string(v), &m->live_patch_from[i], err);
		if (r < 0)
			return r;
		m->n_live_patch_from++;
	}
	return 0;
}

static int parse_object(struct json_object *o, unsigned flags, struct bk_manifest *m,
			struct bk_err *err)
{
	bool spec = flags & BK_MANIFEST_PARSE_SPEC;
	struct {
		const char *key;
		bool required;
		char **field;
	} strings[] = {
		{ "name", true, &m->name },
		{ "version", true, &m->version },
		{ "build", true, &m->build },
		{ "compatible", true, &m->compatible },
		{ "description", false, &m->description },
		{ "created", !spec, &m->created },
	};
	struct json_object *payloads = NULL;
	const char *s;
	size_t n;
	int r;

	if (!json_object_is_type(o, json_type_object))
		return bk_err_set(err, -ENOEXEC, "the manifest must be a JSON object");
	r = check_keys(o, top_keys, BK_ELEMENTSOF(top_keys), "", err);
	if (r < 0)
		return r;

	if (spec) {
		if (json_object_object_get_ex(o, "format", NULL))
			return bk_err_set(err, -ENOEXEC,
					  "field 'format' is computed by the builder");
		m->format = BK_MANIFEST_FORMAT;
	} else {
		r = get_u64(o, "format", true, UINT64_MAX, &m->format, err);
		if (r < 0)
			return r;
		if (m->format < BK_MANIFEST_FORMAT_MIN || m->format > BK_MANIFEST_FORMAT)
			return bk_err_set(err, -ENOEXEC, "unsupported manifest format %llu",
					  (unsigned long long) m->format);
	}

	for (size_t i = 0; i < BK_ELEMENTSOF(strings); i++) {
		r = get_str(o, strings[i].key, strings[i].required, &s, err);
		if (r < 0)
			return r;
		if (r == 0) {
			r = dup_string(s, strings[i].field, err);
			if (r < 0)
				return r;
		}
	}
	r = get_u64(o, "security_epoch", true, BK_MANIFEST_EPOCH_MAX, &m->security_epoch, err);
	if (r < 0)
		return r;
	r = parse_live_patch(o, m, err);
	if (r < 0)
		return r;

	r = bk_json_get_array(o, "payloads", true, &payloads, err);
	if (r < 0)
		return bk_err_recode(err, -ENOEXEC);
	n = json_object_array_length(payloads);
	if (n == 0)
		return bk_err_set(err, -ENOEXEC, "no payloads");
	if (n > BK_MANIFEST_MAX_PAYLOADS)
		return bk_err_set(err, -ENOEXEC, "too many payloads (%zu, at most %d)", n,
				  BK_MANIFEST_MAX_PAYLOADS);
	m->payloads = calloc(n, sizeof(*m->payloads));
	if (!m->payloads)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		m->n_payloads = i + 1;
		r = parse_payload(json_object_array_get_idx(payloads, i), i, flags, m->format,
				  &m->payloads[i], err);
		if (r < 0) {
			if (m->payloads[i].name && bk_err_is_set(err) &&
			    strncmp(err->msg, "payload", 7) != 0)
				(void) bk_err_prefix(err, "payload '%s'", m->payloads[i].name);
			return r;
		}
	}
	return 0;
}

/* ---- validation ------------------------------------------------------------------------- */

static int chunk_table(const struct bk_manifest *m, struct bk_manifest *set, uint64_t *ret_end);

static int cmp_name(const void *a, const void *b)
{
	const struct bk_payload *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int cmp_offset(const void *a, const void *b)
{
	const struct bk_payload *const *x = a, *const *y = b;

	if ((*x)->offset != (*y)->offset)
		return (*x)->offset < (*y)->offset ? -1 : 1;
	return (*x)->size < (*y)->size ? -1 : (*x)->size > (*y)->size ? 1 : 0;
}

static uint64_t align_up(uint64_t v)
{
	return (v + BK_BUNDLE_ALIGN - 1) & ~(uint64_t) (BK_BUNDLE_ALIGN - 1);
}

static int validate_payload(const struct bk_payload *p, bool spec, struct bk_err *err)
{
	bool fs_known = p->fs >= 0;

	if (!payload_name_is_valid(p->name))
		return bk_err_set(err, -ENOEXEC, "payload name '%s' is not a single path component",
				  p->name ? p->name : "");
	if (p->type < 0 || p->type >= _BK_PAYLOAD_TYPE_MAX)
		return bk_err_set(err, -ENOEXEC, "payload '%s': invalid type", p->name);
	if (fs_known && p->fs >= _BK_FS_MAX)
		return bk_err_set(err, -ENOEXEC, "payload '%s': invalid filesystem", p->name);
	if (!fs_known && !spec)
		return bk_err_set(err, -ENOEXEC, "payload '%s': missing field 'fs'", p->name);
	if (fs_known) {
		bool want_raw = p->type == BK_PAYLOAD_KERNEL || p->type == BK_PAYLOAD_INITRD ||
				p->type == BK_PAYLOAD_FILE;

		if (want_raw != (p->fs == BK_FS_RAW))
			return bk_err_set(err, -ENOEXEC,
					  "payload '%s': a %s payload cannot have filesystem '%s'",
					  p->name, bk_payload_type_to_string(p->type),
					  bk_payload_fs_to_string(p->fs));
	}
	if (p->live && p->type != BK_PAYLOAD_COMPONENT)
		return bk_err_set(err, -ENOEXEC,
				  "payload '%s': only a component can be live, not a %s", p->name,
				  bk_payload_type_to_string(p->type));
	if (p->live && !p->mountpoint)
		return bk_err_set(err, -ENOEXEC,
				  "payload '%s': a live payload needs a 'mountpoint'", p->name);
	if (!p->live && p->mountpoint)
		return bk_err_set(err, -ENOEXEC,
				  "payload '%s': 'mountpoint' is only for live payloads", p->name);
	if (p->mountpoint && !mountpoint_is_valid(p->mountpoint))
		return bk_err_set(err, -ENOEXEC,
				  "payload '%s': mountpoint '%s' is not a normalised absolute path",
				  p->name, p->mountpoint);
	if (spec)
		return 0;

	if (p->size == 0)
		return bk_err_set(err, -ENOEXEC, "payload '%s' is empty (size 0)", p->name);
	if (p->size > BK_MANIFEST_PAYLOAD_SIZE_MAX || p->offset > BK_MANIFEST_PAYLOAD_SIZE_MAX)
		return bk_err_set(err, -ENOEXEC, "payload '%s': size or offset out of range",
				  p->name);
	if (p->offset % BK_BUNDLE_ALIGN != 0)
		return bk_err_set(err, -ENOEXEC,
				  "payload '%s': offset %llu is not a multiple of %d", p->name,
				  (unsigned long long) p->offset, BK_BUNDLE_ALIGN);
	if (p->offset < BK_BUNDLE_ALIGN)
		return bk_err_set(err, -ENOEXEC,
				  "payload '%s': offset %llu lies inside the bundle header",
				  p->name, (unsigned long long) p->offset);
	return 0;
}

static int validate(const struct bk_manifest *m, bool spec, struct bk_err *err)
{
	_cleanup_free_ const struct bk_payload **v = NULL;
	int r;

	if (m->format < BK_MANIFEST_FORMAT_MIN || m->format > BK_MANIFEST_FORMAT)
		return bk_err_set(err, -ENOEXEC, "unsupported manifest format %llu",
				  (unsigned long long) m->format);
	if (!m->name || !image_name_is_valid(m->name))
		return bk_err_set(err, -ENOEXEC,
				  "name '%s' must be 1 to %d characters of [A-Za-z0-9._+-], "
				  "starting with a letter or digit",
				  m->name ? m->name : "", BK_MANIFEST_NAME_MAX);
	if (!m->version || !bk_version_is_valid(m->version))
		return bk_err_set(err, -ENOEXEC, "version '%s' is not a valid version",
				  m->version ? m->version : "");
	if (!m->build || !build_is_valid(m->build))
		return bk_err_set(err, -ENOEXEC,
				  "build '%s' must be 1 to %d printable characters without spaces",
				  m->build ? m->build : "", BK_MANIFEST_BUILD_MAX);
	if (!m->compatible || !charset_ok(m->compatible, BK_MANIFEST_COMPATIBLE_MAX, "._:+-"))
		return bk_err_set(err, -ENOEXEC,
				  "compatible '%s' must be 1 to %d characters of [A-Za-z0-9._:+-]",
				  m->compatible ? m->compatible : "", BK_MANIFEST_COMPATIBLE_MAX);
	if (m->security_epoch > BK_MANIFEST_EPOCH_MAX)
		return bk_err_set(err, -ENOEXEC, "security_epoch out of range");
	if (m->description && !description_is_valid(m->description))
		return bk_err_set(err, -ENOEXEC,
				  "description must be at most %d bytes of UTF-8 without control "
				  "characters",
				  BK_MANIFEST_DESCRIPTION_MAX);
	if (m->created ? !created_is_valid(m->created) : !spec)
		return bk_err_set(err, -ENOEXEC,
				  "created '%s' must be a UTC time as YYYY-MM-DDTHH:MM:SSZ",
				  m->created ? m->created : "");
	for (size_t i = 0; i < m->n_live_patch_from; i++) {
		if (!bk_version_is_valid(m->live_patch_from[i]))
			return bk_err_set(err, -ENOEXEC,
					  "live_patch.from: '%s' is not a valid version",
					  m->live_patch_from[i]);
		for (size_t j = 0; j < i; j++)
			if (strcmp(m->live_patch_from[i], m->live_patch_from[j]) == 0)
				return bk_err_set(err, -ENOEXEC, "live_patch.from lists '%s' twice",
						  m->live_patch_from[i]);
	}
	if (m->n_payloads == 0)
		return bk_err_set(err, -ENOEXEC, "no payloads");
	if (m->n_payloads > BK_MANIFEST_MAX_PAYLOADS)
		return bk_err_set(err, -ENOEXEC, "too many payloads (%zu, at most %d)",
				  m->n_payloads, BK_MANIFEST_MAX_PAYLOADS);

	for (size_t i = 0; i < m->n_payloads; i++) {
		r = validate_payload(&m->payloads[i], spec, err);
		if (r < 0)
			return r;
	}

	/* Duplicates and overlaps by sorting: O(n log n) for 65536 payloads. */
	v = malloc(m->n_payloads * sizeof(*v));
	if (!v)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_payloads; i++)
		v[i] = &m->payloads[i];
	qsort(v, m->n_payloads, sizeof(*v), cmp_name);
	for (size_t i = 1; i < m->n_payloads; i++)
		if (strcmp(v[i - 1]->name, v[i]->name) == 0)
			return bk_err_set(err, -ENOEXEC, "duplicate payload name '%s'", v[i]->name);
	if (spec)
		return 0;

	qsort(v, m->n_payloads, sizeof(*v), cmp_offset);
	for (size_t i = 1; i < m->n_payloads; i++) {
		const struct bk_payload *prev = v[i - 1], *cur = v[i];
		uint64_t prev_end = prev->offset + prev->size; /* both <= 2^62: no overflow */

		if (cur->offset < prev_end)
			return bk_err_set(err, -ENOEXEC,
					  "payload '%s' (offset %llu) overlaps payload '%s' "
					  "(offset %llu, size %llu)",
					  cur->name, (unsigned long long) cur->offset, prev->name,
					  (unsigned long long) prev->offset,
					  (unsigned long long) prev->size);
		if (cur->offset != align_up(prev_end))
			return bk_err_set(err, -ENOEXEC,
					  "payload '%s' (offset %llu) does not start at the first "
					  "aligned offset after payload '%s' (%llu)",
					  cur->name, (unsigned long long) cur->offset, prev->name,
					  (unsigned long long) align_up(prev_end));
	}
	return 0;
}

int bk_manifest_validate(const struct bk_manifest *m, struct bk_err *err)
{
	return validate(m, false, err);
}

int bk_manifest_parse(const char *buf, size_t len, unsigned flags, struct bk_manifest **ret,
		      struct bk_err *err)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	int r;

	if (len > BK_MANIFEST_MAX_SIZE)
		return bk_err_set(err, -ENOEXEC, "manifest too large (%zu bytes, at most %d)", len,
				  BK_MANIFEST_MAX_SIZE);
	r = bk_json_parse(buf, len, &o, err);
	if (r < 0)
		return r == -ENOMEM ? r : bk_err_recode(err, -ENOEXEC);
	/* json-c does not check UTF-8 in strict mode: one pass over the whole document. */
	if (!utf8_is_valid_n(buf, len))
		return bk_err_set(err, -ENOEXEC, "manifest is not valid UTF-8");
	r = check_canonical(buf, len, flags & BK_MANIFEST_PARSE_SPEC, err);
	if (r < 0)
		return r;

	m = calloc(1, sizeof(*m));
	if (!m)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = parse_object(o, flags, m, err);
	if (r < 0)
		return r;
	r = validate(m, flags & BK_MANIFEST_PARSE_SPEC, err);
	if (r < 0)
		return r;
	if (!(flags & BK_MANIFEST_PARSE_SPEC)) {
		uint64_t end;

		/* Sizes and offsets are at most 2^62 each: the table's place cannot overflow. */
		if (bk_manifest_assign_chunks(m, &end) < 0)
			return bk_err_set(err, -ENOEXEC, "the chunk table overflows");
	}
	BK_DBG(BUNDLE, "manifest '%s' %s: %zu payloads", m->name, m->version, m->n_payloads);
	*ret = TAKE_PTR(m);
	return 0;
}

int bk_manifest_check_layout(const struct bk_manifest *m, uint64_t payload_offset,
			     uint64_t file_size, struct bk_err *err)
{
	const struct bk_payload *first = NULL, *last = NULL;

	for (size_t i = 0; i < m->n_payloads; i++) {
		const struct bk_payload *p = &m->payloads[i];

		if (!first || p->offset < first->offset)
			first = p;
		if (!last || p->offset > last->offset)
			last = p;
		if (p->offset > file_size || p->size > file_size - p->offset)
			return bk_err_set(err, -ENOEXEC,
					  "payload '%s' ends at %llu, past the end of the bundle "
					  "(%llu bytes): truncated",
					  p->name, (unsigned long long) (p->offset + p->size),
					  (unsigned long long) file_size);
	}
	if (!first)
		return bk_err_set(err, -ENOEXEC, "no payloads");
	if (first->offset != payload_offset)
		return bk_err_set(
			err, -ENOEXEC, "header says payloads start at %llu, manifest at %llu",
			(unsigned long long) payload_offset, (unsigned long long) first->offset);
	if (m->format >= 2) {
		uint64_t end = 0;

		if (chunk_table(m, NULL, &end) < 0)
			return bk_err_set(err, -ENOEXEC, "the chunk table overflows");
		if (end > file_size)
			return bk_err_set(
				err, -ENOEXEC,
				"the chunk table ends at %llu, past the end of the bundle "
				"(%llu bytes): truncated",
				(unsigned long long) end, (unsigned long long) file_size);
		if (end != file_size)
			return bk_err_set(err, -ENOEXEC,
					  "%llu bytes of trailing data after the chunk table",
					  (unsigned long long) (file_size - end));
		return 0;
	}
	if (last->offset + last->size != file_size)
		return bk_err_set(err, -ENOEXEC,
				  "%llu bytes of trailing data after the last payload",
				  (unsigned long long) (file_size - last->offset - last->size));
	return 0;
}

int bk_manifest_assign_offsets(struct bk_manifest *m, uint64_t payload_offset, uint64_t *ret_end)
{
	uint64_t pos = payload_offset;

	if (payload_offset % BK_BUNDLE_ALIGN != 0)
		return -EINVAL;
	for (size_t i = 0; i < m->n_payloads; i++) {
		pos = align_up(pos);
		if (pos > BK_MANIFEST_PAYLOAD_SIZE_MAX ||
		    m->payloads[i].size > BK_MANIFEST_PAYLOAD_SIZE_MAX)
			return -EOVERFLOW;
		m->payloads[i].offset = pos;
		pos += m->payloads[i].size;
	}
	*ret_end = pos;
	return 0;
}

/* Where the chunk lists go (into m's payloads when set) and where the table ends. */
static int chunk_table(const struct bk_manifest *m, struct bk_manifest *set, uint64_t *ret_end)
{
	uint64_t end = 0, pos;

	for (size_t i = 0; i < m->n_payloads; i++) {
		const struct bk_payload *p = &m->payloads[i];

		if (p->offset > UINT64_MAX - p->size)
			return -EOVERFLOW;
		if (p->offset + p->size > end)
			end = p->offset + p->size;
	}
	if (m->format < 2) {
		*ret_end = end;
		return 0;
	}
	if (end > UINT64_MAX - BK_BUNDLE_ALIGN)
		return -EOVERFLOW;
	pos = align_up(end);
	for (size_t i = 0; i < m->n_payloads; i++) {
		uint64_t n = m->payloads[i].size / BK_MANIFEST_CHUNK_SIZE +
			     (m->payloads[i].size % BK_MANIFEST_CHUNK_SIZE != 0);

		if (n > (UINT64_MAX - pos) / BK_SHA256_LEN)
			return -EOVERFLOW;
		if (set)
			set->payloads[i].chunks_offset = pos;
		pos += n * BK_SHA256_LEN;
	}
	*ret_end = pos;
	return 0;
}

int bk_manifest_assign_chunks(struct bk_manifest *m, uint64_t *ret_end)
{
	return chunk_table(m, m, ret_end);
}

int bk_manifest_to_json_object(const struct bk_manifest *m, struct json_object **ret)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *arr;

	if (!o)
		return -ENOMEM;
	if (bk_json_add_u64(o, "format", m->format) < 0 ||
	    bk_json_add_string(o, "name", m->name) < 0 ||
	    bk_json_add_string(o, "version", m->version) < 0 ||
	    bk_json_add_string(o, "build", m->build) < 0 ||
	    bk_json_add_string(o, "compatible", m->compatible) < 0 ||
	    bk_json_add_u64(o, "security_epoch", m->security_epoch) < 0)
		return -ENOMEM;
	if (m->description && bk_json_add_string(o, "description", m->description) < 0)
		return -ENOMEM;
	if (bk_json_add_string(o, "created", m->created) < 0)
		return -ENOMEM;
	if (m->n_live_patch_from > 0) {
		struct json_object *lp = json_object_new_object(), *from;

		if (bk_json_add(o, "live_patch", lp) < 0)
			return -ENOMEM;
		from = json_object_new_array();
		if (bk_json_add(lp, "from", from) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < m->n_live_patch_from; i++)
			if (json_object_array_add(
				    from, json_object_new_string(m->live_patch_from[i])) < 0)
				return -ENOMEM;
	}
	arr = json_object_new_array_ext((int) m->n_payloads);
	if (bk_json_add(o, "payloads", arr) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_payloads; i++) {
		const struct bk_payload *p = &m->payloads[i];
		struct json_object *po = json_object_new_object();
		char hex[BK_SHA256_HEX_LEN + 1];

		if (!po || json_object_array_add(arr, po) < 0) {
			json_object_put(po);
			return -ENOMEM;
		}
		bk_sha256_to_hex(p->sha256, hex);
		if (bk_json_add_string(po, "name", p->name) < 0 ||
		    bk_json_add_string(po, "type", bk_payload_type_to_string(p->type)) < 0 ||
		    bk_json_add_string(po, "fs", bk_payload_fs_to_string(p->fs)) < 0 ||
		    bk_json_add_u64(po, "size", p->size) < 0 ||
		    bk_json_add_u64(po, "offset", p->offset) < 0 ||
		    bk_json_add_string(po, "sha256", hex) < 0 ||
		    bk_json_add_bool(po, "live", p->live) < 0)
			return -ENOMEM;
		if (m->format >= 2) {
			bk_sha256_to_hex(p->chunks_sha256, hex);
			if (bk_json_add_string(po, "chunks_sha256", hex) < 0)
				return -ENOMEM;
		}
		if (p->mountpoint && bk_json_add_string(po, "mountpoint", p->mountpoint) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(o);
	return 0;
}

int bk_manifest_serialise(const struct bk_manifest *m, char **ret_buf, size_t *ret_len,
			  struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	const char *s;
	char *buf;
	size_t len;
	int r;

	r = bk_manifest_to_json_object(m, &o);
	if (r < 0)
		return bk_err_set(err, r, "out of memory");
	s = bk_json_to_string(o, true);
	if (!s)
		return bk_err_set(err, -ENOMEM, "out of memory");
	len = strlen(s);
	buf = malloc(len + 2);
	if (!buf)
		return bk_err_set(err, -ENOMEM, "out of memory");
	memcpy(buf, s, len);
	buf[len] = '\n';
	buf[len + 1] = '\0';
	*ret_buf = buf;
	*ret_len = len + 1;
	return 0;
}

const struct bk_payload *bk_manifest_find_payload(const struct bk_manifest *m, const char *name)
{
	for (size_t i = 0; m && name && i < m->n_payloads; i++)
		if (strcmp(m->payloads[i].name, name) == 0)
			return &m->payloads[i];
	return NULL;
}

struct bk_manifest *bk_manifest_free(struct bk_manifest *m)
{
	if (!m)
		return NULL;
	free(m->name);
	free(m->version);
	free(m->build);
	free(m->compatible);
	free(m->description);
	free(m->created);
	for (size_t i = 0; i < m->n_live_patch_from; i++)
		free(m->live_patch_from[i]);
	free(m->live_patch_from);
	for (size_t i = 0; i < m->n_payloads; i++) {
		free(m->payloads[i].name);
		free(m->payloads[i].mountpoint);
		free(m->payloads[i].source);
	}
	free(m->payloads);
	free(m);
	return NULL;
}
