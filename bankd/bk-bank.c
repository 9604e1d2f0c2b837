/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The content of a bank and its record bank.json. The record is written last and removed
 * first (docs/crash-safety.md, "Stage"): its presence is what makes a bank complete.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk-bank.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-version.h"

#define CLEAR_MAX_DEPTH 16

static const char *const reserved[] = {
	BK_BANK_RECORD_FILE, BK_BANK_MANIFEST_FILE, BK_BANK_SIGNATURE_FILE,
	BK_BANK_CHUNKS_FILE, BK_BANK_LOST_FOUND,
};

bool bk_bank_name_is_reserved(const char *name)
{
	for (size_t i = 0; i < BK_ELEMENTSOF(reserved); i++)
		if (strcmp(name, reserved[i]) == 0)
			return true;
	return false;
}

int bk_bank_check_manifest(const struct bk_manifest *m, struct bk_err *err)
{
	for (size_t i = 0; i < m->n_payloads; i++)
		if (bk_bank_name_is_reserved(m->payloads[i].name))
			return bk_err_set(err, -ENOEXEC,
					  "payload '%s': the name is reserved in a bank",
					  m->payloads[i].name);
	return 0;
}

struct bk_bank_record *bk_bank_record_free(struct bk_bank_record *r)
{
	if (!r)
		return NULL;
	for (size_t i = 0; i < r->n_payloads; i++)
		free(r->payloads[i].name);
	free(r->payloads);
	free(r->name);
	free(r->version);
	free(r->build);
	free(r->compatible);
	free(r->signer);
	free(r);
	return NULL;
}

int bk_bank_record_new(const struct bk_manifest *m, const void *manifest, size_t len,
		       const char *signer, uint64_t staged, struct bk_bank_record **ret,
		       struct bk_err *err)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *r = NULL;
	int rr;

	rr = bk_bank_check_manifest(m, err);
	if (rr < 0)
		return rr;
	r = calloc(1, sizeof(*r));
	if (!r)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r->name = strdup(m->name);
	r->version = strdup(m->version);
	r->build = strdup(m->build);
	r->compatible = strdup(m->compatible);
	r->signer = strdup(signer ? signer : "");
	if (!r->name || !r->version || !r->build || !r->compatible || !r->signer)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r->security_epoch = m->security_epoch;
	r->staged = staged;
	rr = bk_sha256_buf(manifest, len, r->manifest_sha256);
	if (rr < 0)
		return bk_err_set(err, rr, "cannot hash the manifest: %m");
	if (m->n_payloads > 0) {
		r->payloads = calloc(m->n_payloads, sizeof(*r->payloads));
		if (!r->payloads)
			return bk_err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < m->n_payloads; i++) {
		const struct bk_payload *p = &m->payloads[i];
		struct bk_bank_payload *bp = &r->payloads[i];

		bp->name = strdup(p->name);
		if (!bp->name)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r->n_payloads = i + 1;
		bp->type = p->type;
		bp->size = p->size;
		memcpy(bp->sha256, p->sha256, BK_SHA256_LEN);
	}
	*ret = TAKE_PTR(r);
	return 0;
}

static int add_hex(struct json_object *o, const char *key, const uint8_t d[BK_SHA256_LEN])
{
	char hex[BK_SHA256_HEX_LEN + 1];

	bk_sha256_to_hex(d, hex);
	return bk_json_add_string(o, key, hex);
}

int bk_bank_record_to_json(const struct bk_bank_record *r, struct json_object **ret)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *arr = json_object_new_array_ext((int) r->n_payloads);

	if (!o || bk_json_add_u64(o, "format", BK_BANK_RECORD_FORMAT) < 0 ||
	    bk_json_add_string(o, "name", r->name) < 0 ||
	    bk_json_add_string(o, "version", r->version) < 0 ||
	    bk_json_add_string(o, "build", r->build) < 0 ||
	    bk_json_add_string(o, "compatible", r->compatible) < 0 ||
	    bk_json_add_u64(o, "security_epoch", r->security_epoch) < 0 ||
	    add_hex(o, "manifest_sha256", r->manifest_sha256) < 0 ||
	    bk_json_add_string(o, "signer", r->signer) < 0 ||
	    bk_json_add_u64(o, "staged", r->staged) < 0 || bk_json_add(o, "payloads", arr) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_payloads; i++) {
		const struct bk_bank_payload *p = &r->payloads[i];
		struct json_object *e = json_object_new_object();

		if (!e || json_object_array_add(arr, e) < 0) {
			json_object_put(e);
			return -ENOMEM;
		}
		if (bk_json_add_string(e, "name", p->name) < 0 ||
		    bk_json_add_string(e, "type", bk_payload_type_to_string(p->type)) < 0 ||
		    bk_json_add_u64(e, "size", p->size) < 0 || add_hex(e, "sha256", p->sha256) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(o);
	return 0;
}

/* ---- parsing ---------------------------------------------------------------------------- */

/* Every key of o must be in keys (n of them). */
static int check_keys(struct json_object *o, const char *const *keys, size_t n, const char *what,
		      struct bk_err *err)
{
	json_object_object_foreach(o, key, val)
	{
		bool known = false;

		(void) val;
		for (size_t i = 0; i < n && !known; i++)
			known = strcmp(key, keys[i]) == 0;
		if (!known)
			return bk_err_set(err, -ENOEXEC, "%sunknown field '%s'", what, key);
	}
	return 0;
}

/* A required string field, copied; at most max bytes, non-empty. */
static int get_str(struct json_object *o, const char *key, size_t max, char **ret,
		   struct bk_err *err)
{
	const char *s;
	int r;

	r = bk_json_get_string(o, key, true, &s, err);
	if (r < 0)
		return bk_err_recode(err, -ENOEXEC);
	if (strlen(s) > max)
		return bk_err_set(err, -ENOEXEC, "field '%s' is longer than %zu bytes", key, max);
	*ret = strdup(s);
	return *ret ? 0 : bk_err_set(err, -ENOMEM, "out of memory");
}

static int get_hex(struct json_object *o, const char *key, uint8_t ret[BK_SHA256_LEN],
		   struct bk_err *err)
{
	const char *s;
	int r;

	r = bk_json_get_string(o, key, true, &s, err);
	if (r < 0)
		return bk_err_recode(err, -ENOEXEC);
	if (strlen(s) != BK_SHA256_HEX_LEN || bk_sha256_from_hex(s, ret) < 0)
		return bk_err_set(err, -ENOEXEC, "field '%s' must be 64 hex digits", key);
	return 0;
}

static int get_u64(struct json_object *o, const char *key, uint64_t max, uint64_t *ret,
		   struct bk_err *err)
{
	if (bk_json_get_u64(o, key, true, max, ret, err) < 0)
		return bk_err_recode(err, -ENOEXEC);
	return 0;
}

static int cmp_payload_names(const void *a, const void *b)
{
	const struct bk_bank_payload *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int parse_payload(struct json_object *e, size_t i, struct bk_bank_payload *p,
			 struct bk_err *err)
{
	static const char *const keys[] = { "name", "type", "size", "sha256" };
	const char *type;
	int r;

	if (!json_object_is_type(e, json_type_object))
		return bk_err_set(err, -ENOEXEC, "payloads[%zu] must be an object", i);
	r = get_str(e, "name", BK_MANIFEST_NAME_MAX, &p->name, err);
	if (r < 0)
		return bk_err_prefix(err, "payloads[%zu]", i);
	if (!bk_filename_is_valid(p->name) || bk_bank_name_is_reserved(p->name))
		return bk_err_set(err, -ENOEXEC, "payload '%s': not a valid payload file name",
				  p->name);
	r = check_keys(e, keys, BK_ELEMENTSOF(keys), "", err);
	if (r >= 0 && bk_json_get_string(e, "type", true, &type, err) < 0)
		r = bk_err_recode(err, -ENOEXEC);
	if (r >= 0) {
		p->type = bk_payload_type_from_string(type);
		if (p->type < 0)
			r = bk_err_set(err, -ENOEXEC, "unknown type '%s'", type);
	}
	if (r >= 0)
		r = get_u64(e, "size", BK_MANIFEST_PAYLOAD_SIZE_MAX, &p->size, err);
	if (r >= 0)
		r = get_hex(e, "sha256", p->sha256, err);
	if (r < 0)
		return bk_err_prefix(err, "payload '%s'", p->name);
	return 0;
}

static int parse_payloads(struct json_object *arr, struct bk_bank_record *r, struct bk_err *err)
{
	_cleanup_free_ struct bk_bank_payload **sorted = NULL;
	size_t n = json_object_array_length(arr);
	int rr;

	if (n > BK_MANIFEST_MAX_PAYLOADS)
		return bk_err_set(err, -ENOEXEC, "more than %d payloads", BK_MANIFEST_MAX_PAYLOADS);
	if (n == 0)
		return 0;
	r->payloads = calloc(n, sizeof(*r->payloads));
	sorted = calloc(n, sizeof(*sorted));
	if (!r->payloads || !sorted)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		r->n_payloads = i + 1;
		rr = parse_payload(json_object_array_get_idx(arr, i), i, &r->payloads[i], err);
		if (rr < 0)
			return rr;
		sorted[i] = &r->payloads[i];
	}
	qsort(sorted, n, sizeof(*sorted), cmp_payload_names);
	for (size_t i = 1; i < n; i++)
		if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
			return bk_err_set(err, -ENOEXEC, "payload '%s' is listed twice",
					  sorted[i]->name);
	return 0;
}

static int parse_record(struct json_object *o, struct bk_bank_record *r, struct bk_err *err)
{
	static const char *const keys[] = { "format",	       "name",	     "version",
					    "build",	       "compatible", "security_epoch",
					    "manifest_sha256", "signer",     "staged",
					    "payloads" };
	struct json_object *arr;
	uint64_t format;
	int rr;

	if (!json_object_is_type(o, json_type_object))
		return bk_err_set(err, -ENOEXEC, "not a JSON object");
	rr = check_keys(o, keys, BK_ELEMENTSOF(keys), "", err);
	if (rr < 0)
		return rr;
	rr = get_u64(o, "format", UINT64_MAX, &format, err);
	if (rr < 0)
		return rr;
	if (format != BK_BANK_RECORD_FORMAT)
		return bk_err_set(err, -ENOEXEC, "unknown format %llu (expected %d)",
				  (unsigned long long) format, BK_BANK_RECORD_FORMAT);
	rr = get_str(o, "name", BK_MANIFEST_NAME_MAX, &r->name, err);
	if (rr >= 0)
		rr = get_str(o, "version", BK_VERSION_MAX_LEN, &r->version, err);
	if (rr >= 0)
		rr = get_str(o, "build", BK_MANIFEST_BUILD_MAX, &r->build, err);
	if (rr >= 0)
		rr = get_str(o, "compatible", BK_MANIFEST_COMPATIBLE_MAX, &r->compatible, err);
	if (rr >= 0)
		rr = get_u64(o, "security_epoch", BK_MANIFEST_EPOCH_MAX, &r->security_epoch, err);
	if (rr >= 0)
		rr = get_hex(o, "manifest_sha256", r->manifest_sha256, err);
	if (rr >= 0)
		rr = get_str(o, "signer", BK_BANK_SIGNER_MAX, &r->signer, err);
	if (rr >= 0)
		rr = get_u64(o, "staged", UINT64_MAX, &r->staged, err);
	if (rr < 0)
		return rr;
	if (!bk_version_is_valid(r->version))
		return bk_err_set(err, -ENOEXEC, "field 'version': '%s' is not a version",
				  r->version);
	if (bk_json_get_array(o, "payloads", true, &arr, err) < 0)
		return bk_err_recode(err, -ENOEXEC);
	return parse_payloads(arr, r, err);
}

int bk_bank_record_parse(const char *buf, size_t len, struct bk_bank_record **ret,
			 struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *r = NULL;
	int rr;

	rr = bk_json_parse(buf, len, &o, err);
	if (rr < 0)
		return rr == -ENOMEM ? rr : bk_err_recode(err, -ENOEXEC);
	r = calloc(1, sizeof(*r));
	if (!r)
		return bk_err_set(err, -ENOMEM, "out of memory");
	rr = parse_record(o, r, err);
	if (rr < 0)
		return rr;
	*ret = TAKE_PTR(r);
	return 0;
}

int bk_bank_fs_error(int r, struct bk_err *err)
{
	char old[sizeof(err->msg)];

	if (r != -EBADMSG && r != -EUCLEAN && r != -EIO)
		return r;
	if (!err)
		return -EIO;
	(void) snprintf(old, sizeof(old), "%s", err->msg);
	err->code = 0;
	return bk_err_set(err, -EIO, "the bank's filesystem is damaged%s: %s",
			  r == -EIO ? " or its device failed" : " (run fsck.ext4 on it)", old);
}

int bk_bank_record_read_at(int bank_dfd, struct bk_bank_record **ret, struct bk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r;

	r = bk_read_file_at(bank_dfd, BK_BANK_RECORD_FILE, BK_BANK_RECORD_MAX_SIZE, &buf, &len,
			    err);
	if (r < 0)
		return bk_bank_fs_error(r, err);
	r = bk_bank_record_parse(buf, len, ret, err);
	if (r < 0)
		return bk_err_prefix(err, "content record '%s'", BK_BANK_RECORD_FILE);
	return 0;
}

int bk_bank_record_write_at(int bank_dfd, const struct bk_bank_record *r, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	int rr;

	rr = bk_bank_record_to_json(r, &o);
	if (rr < 0)
		return bk_err_set(err, rr, "out of memory");
	return bk_json_write_atomic_at(bank_dfd, BK_BANK_RECORD_FILE, o, 0644, 0, err);
}

/* ---- checking the content --------------------------------------------------------------- */

/* A regular file (dfd, name) of exactly size bytes, or of any size but 0 when !exact. */
static int check_file(int dfd, const char *name, bool exact, uint64_t size, struct bk_err *err)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return bk_bank_fs_error(bk_err_set(err, -errno, "'%s': %m", name), err);
	if (!S_ISREG(st.st_mode))
		return bk_err_set(err, -EUCLEAN, "'%s' is not a regular file", name);
	if (!exact && st.st_size == 0)
		return bk_err_set(err, -EUCLEAN, "'%s' is empty", name);
	if (exact && (uint64_t) st.st_size != size)
		return bk_err_set(err, -EUCLEAN, "'%s' has %llu bytes, the record says %llu", name,
				  (unsigned long long) st.st_size, (unsigned long long) size);
	return 0;
}

static int check_digest(int dfd, const struct bk_bank_payload *p, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	uint8_t d[BK_SHA256_LEN];
	int r;

	fd = openat(dfd, p->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return bk_bank_fs_error(bk_err_set(err, -errno, "'%s': %m", p->name), err);
	r = bk_sha256_fd_range(fd, 0, p->size, d, err);
	if (r < 0)
		return bk_bank_fs_error(bk_err_prefix(err, "'%s'", p->name), err);
	if (memcmp(d, p->sha256, BK_SHA256_LEN) != 0)
		return bk_err_set(err, -EUCLEAN, "'%s' does not match its SHA-256", p->name);
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* The signed manifest of the bank must say what the record says. */
static int check_agrees(const struct bk_manifest *m, const struct bk_bank_record *r,
			struct bk_err *err)
{
	if (!str_eq(m->name, r->name) || !str_eq(m->version, r->version) ||
	    !str_eq(m->build, r->build) || !str_eq(m->compatible, r->compatible) ||
	    m->security_epoch != r->security_epoch || m->n_payloads != r->n_payloads)
		return bk_err_set(err, -EUCLEAN, "'%s' and '%s' describe different images",
				  BK_BANK_MANIFEST_FILE, BK_BANK_RECORD_FILE);
	for (size_t i = 0; i < m->n_payloads; i++) {
		const struct bk_payload *p = &m->payloads[i];
		const struct bk_bank_payload *q = &r->payloads[i];

		if (!str_eq(p->name, q->name) || p->type != q->type || p->size != q->size ||
		    memcmp(p->sha256, q->sha256, BK_SHA256_LEN) != 0)
			return bk_err_set(err, -EUCLEAN,
					  "payload '%s' differs between '%s' and '%s'", p->name,
					  BK_BANK_MANIFEST_FILE, BK_BANK_RECORD_FILE);
	}
	return 0;
}

/* manifest.json of the record's digest, parsed: *ret. */
static int read_manifest(int bank_dfd, const struct bk_bank_record *r, struct bk_manifest **ret,
			 struct bk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	uint8_t d[BK_SHA256_LEN];
	size_t len;
	int rr;

	rr = bk_read_file_at(bank_dfd, BK_BANK_MANIFEST_FILE, BK_MANIFEST_MAX_SIZE, &buf, &len,
			     err);
	if (rr < 0)
		return bk_bank_fs_error(rr, err);
	rr = bk_sha256_buf(buf, len, d);
	if (rr < 0)
		return bk_err_set(err, rr, "cannot hash '%s': %m", BK_BANK_MANIFEST_FILE);
	if (memcmp(d, r->manifest_sha256, BK_SHA256_LEN) != 0)
		return bk_err_set(err, -EUCLEAN, "'%s' does not match the record's digest",
				  BK_BANK_MANIFEST_FILE);
	rr = bk_manifest_parse(buf, len, 0, ret, err);
	if (rr < 0)
		return bk_err_prefix(err, "'%s'", BK_BANK_MANIFEST_FILE);
	return 0;
}

int bk_bank_check(int bank_dfd, const struct bk_bank_record *r, unsigned flags, struct bk_err *err)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	int rr;

	rr = read_manifest(bank_dfd, r, &m, err);
	if (rr < 0)
		return rr;
	rr = check_agrees(m, r, err);
	if (rr < 0)
		return rr;
	rr = check_file(bank_dfd, BK_BANK_SIGNATURE_FILE, false, 0, err);
	if (rr < 0)
		return rr;
	for (size_t i = 0; i < r->n_payloads; i++) {
		rr = check_file(bank_dfd, r->payloads[i].name, true, r->payloads[i].size, err);
		if (rr >= 0 && (flags & BK_BANK_CHECK_DIGESTS))
			rr = check_digest(bank_dfd, &r->payloads[i], err);
		if (rr < 0)
			return rr;
	}
	return 0;
}

/* ---- the chunk lists -------------------------------------------------------------------- */

struct bk_bank_chunks *bk_bank_chunks_free(struct bk_bank_chunks *c)
{
	if (!c)
		return NULL;
	if (c->lists && c->manifest)
		for (size_t i = 0; i < c->manifest->n_payloads; i++)
			bk_chunks_free(c->lists[i]);
	free(c->lists);
	bk_manifest_free(c->manifest);
	free(c);
	return NULL;
}

int bk_bank_chunks_read_at(int bank_dfd, struct bk_bank_chunks **ret, struct bk_err *err)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	_cleanup_(bk_bank_chunks_freep) struct bk_bank_chunks *c = NULL;
	_cleanup_free_ char *buf = NULL;
	uint64_t total = 0, off = 0;
	size_t len;
	int r;

	/* Only a complete bank: its record says so, and names the manifest's digest. */
	r = bk_bank_record_read_at(bank_dfd, &rec, err);
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = read_manifest(bank_dfd, rec, &c->manifest, err);
	if (r < 0)
		return r;
	if (c->manifest->format < 2)
		return bk_err_set(err, -ENOENT, "format version %llu: no chunk lists",
				  (unsigned long long) c->manifest->format);
	for (size_t i = 0; i < c->manifest->n_payloads; i++) {
		uint64_t n;

		if (bk_chunks_list_size(c->manifest->payloads[i].size, &n) < 0 ||
		    n > BK_BANK_CHUNKS_MAX_SIZE - total)
			return bk_err_set(err, -EFBIG, "'%s': the chunk lists exceed %llu bytes",
					  BK_BANK_CHUNKS_FILE,
					  (unsigned long long) BK_BANK_CHUNKS_MAX_SIZE);
		total += n;
	}
	r = bk_read_file_at(bank_dfd, BK_BANK_CHUNKS_FILE, (size_t) total, &buf, &len, err);
	if (r == -EFBIG) /* longer than the lists */
		return bk_err_recode(err, -EUCLEAN);
	if (r < 0)
		return r == -ENOENT ? r : bk_bank_fs_error(r, err);
	if ((uint64_t) len != total)
		return bk_err_set(err, -EUCLEAN, "'%s' has %zu bytes, the lists %llu",
				  BK_BANK_CHUNKS_FILE, len, (unsigned long long) total);
	c->lists = calloc(c->manifest->n_payloads, sizeof(*c->lists));
	if (!c->lists)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < c->manifest->n_payloads; i++) {
		const struct bk_payload *p = &c->manifest->payloads[i];
		uint64_t n;

		(void) bk_chunks_list_size(p->size, &n);
		r = bk_chunks_parse(buf + off, (size_t) n, p->size, p->chunks_sha256, &c->lists[i],
				    err);
		if (r < 0)
			return bk_err_prefix(err, "'%s': payload '%s'", BK_BANK_CHUNKS_FILE,
					     p->name);
		off += n;
	}
	*ret = TAKE_PTR(c);
	return 0;
}

/* ---- clearing --------------------------------------------------------------------------- */

static int remove_tree_at(int dfd, const char *name, unsigned depth, struct bk_err *err);

/* Remove every entry of directory fd (consumed). */
static int remove_children(int fd, const char *name, unsigned depth, struct bk_err *err)
{
	struct dirent *de;
	DIR *d;
	int r = 0;

	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		(void) close(fd);
		return bk_err_set(err, r, "cannot read '%s': %m", name);
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		r = remove_tree_at(dirfd(d), de->d_name, depth + 1, err);
		if (r < 0)
			break;
	}
	(void) closedir(d);
	return r;
}

static int remove_tree_at(int dfd, const char *name, unsigned depth, struct bk_err *err)
{
	struct stat st;
	int fd, r;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : bk_err_set(err, -errno, "cannot stat '%s': %m", name);
	if (S_ISDIR(st.st_mode)) {
		if (depth >= CLEAR_MAX_DEPTH)
			return bk_err_set(err, -ELOOP, "'%s' is nested too deeply to remove", name);
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return bk_err_set(err, -errno, "cannot open '%s': %m", name);
		r = remove_children(fd, name, depth, err);
		if (r < 0)
			return r;
		if (unlinkat(dfd, name, AT_REMOVEDIR) < 0)
			return bk_err_set(err, -errno, "cannot remove '%s': %m", name);
		return 0;
	}
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		return bk_err_set(err, -errno, "cannot remove '%s': %m", name);
	return 0;
}

int bk_bank_clear_at(int bank_dfd, struct bk_err *err)
{
	struct dirent *de;
	DIR *d;
	int fd, n = 0, r = 0;

	/* The record goes first and durably: from here on the bank is known incomplete. */
	if (unlinkat(bank_dfd, BK_BANK_RECORD_FILE, 0) == 0) {
		n++;
		r = bk_fsync_dir(bank_dfd);
		if (r < 0)
			return bk_err_set(err, r, "cannot sync the bank directory: %m");
	} else if (errno != ENOENT) {
		return bk_err_set(err, -errno, "cannot remove '%s': %m", BK_BANK_RECORD_FILE);
	}

	fd = openat(bank_dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open the bank directory: %m");
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		(void) close(fd);
		return bk_err_set(err, r, "cannot read the bank directory: %m");
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, BK_BANK_LOST_FOUND) == 0)
			continue;
		r = remove_tree_at(dirfd(d), de->d_name, 0, err);
		if (r < 0)
			break;
		BK_DBG(BANK, "removed '%s'", de->d_name);
		n++;
	}
	(void) closedir(d);
	if (r < 0)
		return r;
	if (n > 0) {
		r = bk_fsync_dir(bank_dfd);
		if (r < 0)
			return bk_err_set(err, r, "cannot sync the bank directory: %m");
	}
	return n;
}

int bk_bank_usage_at(int bank_dfd, uint64_t *ret, struct bk_err *err)
{
	struct dirent *de;
	uint64_t total = 0;
	DIR *d;
	int fd, r;

	fd = openat(bank_dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open the bank directory: %m");
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		(void) close(fd);
		return bk_err_set(err, r, "cannot read the bank directory: %m");
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (strcmp(de->d_name, BK_BANK_LOST_FOUND) == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		total += (uint64_t) st.st_blocks * 512;
	}
	(void) closedir(d);
	*ret = total;
	return 0;
}
