/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <time.h>

#include "bk-test.h"

#include "bk-cleanup.h"
#include "bk-manifest.h"

#define HASH "\"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""
#define KERNEL                                                                             \
	"{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": 5000, " \
	"\"offset\": 4096, " HASH " }"
#define SQUASH                                                                          \
	"{ \"name\": \"app.sqfs\", \"type\": \"component\", \"fs\": \"squashfs\", "     \
	"\"size\": 8192, \"offset\": 12288, " HASH ", \"live\": true, \"mountpoint\": " \
	"\"/opt/app\" }"
static const char *const top[][2] = {
	{ "format", "1" },
	{ "name", "\"acme-os\"" },
	{ "version", "\"1.10.0\"" },
	{ "build", "\"42\"" },
	{ "compatible", "\"acme-x86_64\"" },
	{ "security_epoch", "3" },
	{ "created", "\"2024-05-01T12:00:00Z\"" },
};
#define TOP                                                                                  \
	"\"format\": 1, \"name\": \"acme-os\", \"version\": \"1.10.0\", \"build\": \"42\", " \
	"\"compatible\": \"acme-x86_64\", \"security_epoch\": 3, \"created\": "              \
	"\"2024-05-01T12:00:00Z\""

/*
 * "{ TOP, extra, "payloads": [payloads] }" in a static buffer; a field of TOP that extra sets
 * is left out of TOP (a duplicate key is refused: issue 17, item 4).
 */
static const char *doc(const char *extra, const char *payloads)
{
	static char buf[64 * 1024];
	size_t n = 0;

	n += (size_t) snprintf(buf + n, sizeof(buf) - n, "{ ");
	for (size_t i = 0; i < BK_ELEMENTSOF(top); i++) {
		char key[64];

		snprintf(key, sizeof(key), "\"%s\":", top[i][0]);
		if (strstr(extra, key))
			continue;
		n += (size_t) snprintf(buf + n, sizeof(buf) - n, "%s\"%s\": %s", n > 2 ? ", " : "",
				       top[i][0], top[i][1]);
	}
	snprintf(buf + n, sizeof(buf) - n, "%s%s, \"payloads\": [ %s ] }", extra[0] ? ", " : "",
		 extra, payloads);
	return buf;
}

static int parse(const char *text, struct bk_manifest **ret, struct bk_err *err)
{
	bk_err_clear(err);
	return bk_manifest_parse(text, strlen(text), 0, ret, err);
}

/* Expect -ENOEXEC and a message containing needle. */
static void expect_bad(const char *text, const char *needle)
{
	struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };
	int r = parse(text, &m, &err);

	if (r != -ENOEXEC)
		fail_msg("expected -ENOEXEC, got %d for: %s", r, text);
	assert_null(m);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' does not contain '%s'", err.msg, needle);
}

/*
 * Format 2: "chunks_sha256" (the digest of the chunk list) beside "sha256"; each payload's
 * list is placed after the payload that ends last, in manifest order; the bundle ends at the
 * end of the table.
 */
static void test_manifest_format2(void **state)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };
	static const char *const chunked =
		"{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"fs\": \"raw\", "
		"\"size\": 3145729, \"offset\": 4096, " HASH ", \"chunks_sha256\": "
		"\"cb7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\" }, "
		"{ \"name\": \"f\", \"type\": \"file\", \"fs\": \"raw\", "
		"\"size\": 1, \"offset\": 3153920, " HASH ", \"chunks_sha256\": "
		"\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\" }";
	/* 3145729 bytes: 4 chunks (the last one byte); 1 byte: 1 chunk. */
	uint64_t table = 3153920 + 4096;

	assert_int_equal(parse(doc("\"format\": 2", chunked), &m, &err), 0);
	assert_int_equal(m->format, 2);
	assert_int_equal(m->payloads[0].sha256[0], 0xba);
	assert_int_equal(m->payloads[0].chunks_sha256[0], 0xcb);
	assert_int_equal(m->payloads[0].chunks_offset, table);
	assert_int_equal(m->payloads[1].chunks_offset, table + 4 * 32);
	assert_int_equal(bk_manifest_check_layout(m, 4096, table + 5 * 32, &err), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_manifest_check_layout(m, 4096, table + 5 * 32 - 1, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "the chunk table ends at"));
	assert_non_null(strstr(err.msg, "truncated"));
	bk_err_clear(&err);
	assert_int_equal(bk_manifest_check_layout(m, 4096, table + 5 * 32 + 1, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "1 bytes of trailing data after the chunk table"));

	/* Format 2 needs the list's digest; format 1 has none. */
	expect_bad(doc("\"format\": 2", KERNEL), "missing field 'chunks_sha256'");
	expect_bad(doc("", chunked), "field 'chunks_sha256' is not part of manifest format 1");
	{
		char k2[1024];

		snprintf(k2, sizeof(k2), "%s", chunked);
		*strstr(k2, "\"cb78") = '\0';
		strcat(k2,
		       "\"CB7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\" }");
		expect_bad(doc("\"format\": 2", k2),
			   "field 'chunks_sha256' must be 64 lower-case hex digits");
	}
}

static void test_manifest_valid(void **state)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };
	const struct bk_payload *p;

	assert_int_equal(parse(doc("\"description\": \"d\\u00e9mo\\nline\", \"live_patch\": "
				   "{ \"from\": [ \"1.9.2\", \"1.9.3-rc.1\" ] }",
				   KERNEL ", " SQUASH),
			       &m, &err),
			 0);
	assert_string_equal(m->name, "acme-os");
	assert_string_equal(m->version, "1.10.0");
	assert_string_equal(m->build, "42");
	assert_string_equal(m->compatible, "acme-x86_64");
	assert_int_equal(m->security_epoch, 3);
	assert_string_equal(m->description, "d\xc3\xa9mo\nline");
	assert_int_equal(m->n_live_patch_from, 2);
	assert_string_equal(m->live_patch_from[1], "1.9.3-rc.1");
	assert_int_equal(m->n_payloads, 2);
	p = bk_manifest_find_payload(m, "app.sqfs");
	assert_non_null(p);
	assert_int_equal(p->type, BK_PAYLOAD_COMPONENT);
	assert_int_equal(p->fs, BK_FS_SQUASHFS);
	assert_int_equal(p->size, 8192);
	assert_int_equal(p->offset, 12288);
	assert_true(p->live);
	assert_string_equal(p->mountpoint, "/opt/app");
	assert_int_equal(p->sha256[0], 0xba);
	assert_false(m->payloads[0].live);
	assert_null(m->payloads[0].mountpoint);
	assert_null(bk_manifest_find_payload(m, "nope"));

	/* Layout against the file: starts at 4096, ends at 12288 + 8192. */
	assert_int_equal(bk_manifest_check_layout(m, 4096, 20480, &err), 0);
}

static void test_manifest_malformed_json(void **state)
{
	expect_bad("", "invalid JSON");
	expect_bad("{", "invalid JSON");
	expect_bad("[]", "the manifest must start with '{'");
	expect_bad("{ \"format\": 1 } x", "at offset 16");
	expect_bad("{ \"format\": 1 \"name\": 2 }", "invalid JSON");
	expect_bad("{ \"format\": 1, }", "invalid JSON");
	expect_bad("\xff\xfe{}", "invalid JSON");
	expect_bad("{ \"description\": \"\xc3\x28\" }", "not valid UTF-8");

	struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };
	char with_nul[] = "{ \"format\": 1 }\0{}";
	assert_int_equal(bk_manifest_parse(with_nul, sizeof(with_nul) - 1, 0, &m, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "NUL"));

	/* Nesting beyond the depth limit. */
	char deep[200];
	memset(deep, '[', 100);
	memset(deep + 100, ']', 100);
	assert_int_equal(bk_manifest_parse(deep, sizeof(deep), 0, &m, &err), -ENOEXEC);
}

static void test_manifest_missing_fields(void **state)
{
	static const char *const required[] = { "format",     "name",		"version", "build",
						"compatible", "security_epoch", "created" };
	static char buf[64 * 1024];
	char needle[64];

	for (size_t i = 0; i < BK_ELEMENTSOF(required); i++) {
		/* Rename the key so it is missing (and the replacement is unknown). */
		const char *text = doc("", KERNEL);
		char key[64];
		char *at;

		snprintf(buf, sizeof(buf), "%s", text);
		snprintf(key, sizeof(key), "\"%s\":", required[i]);
		at = strstr(buf, key);
		assert_non_null(at);
		/* Remove `"key": value, ` up to the next comma. */
		memmove(at, strchr(at, ',') + 1, strlen(strchr(at, ',') + 1) + 1);
		snprintf(needle, sizeof(needle), "missing field '%s'", required[i]);
		expect_bad(buf, needle);
	}
	expect_bad("{ " TOP " }", "missing field 'payloads'");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"offset\": "
			   "4096, " HASH " }"),
		   "payload 'k': missing field 'size'");
	expect_bad(doc("", "{ \"type\": \"kernel\" }"), "payload #0: missing field 'name'");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"size\": 1, \"offset\": "
			   "4096, " HASH " }"),
		   "missing field 'fs'");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
			   "1, \"offset\": 4096 }"),
		   "missing field 'sha256'");
}

static void test_manifest_wrong_types(void **state)
{
	expect_bad("{ \"format\": \"1\" }", "field 'format' must be an integer");
	expect_bad("{ \"format\": 3 }", "unsupported manifest format 3");
	expect_bad("{ \"format\": 0 }", "unsupported manifest format 0");
	expect_bad("{ \"format\": 1, \"name\": 7 }", "field 'name' must be a string");
	expect_bad(doc("\"description\": [ ]", KERNEL), "field 'description' must be a string");
	expect_bad("{ " TOP ", \"payloads\": { } }", "field 'payloads' must be an array");
	expect_bad("{ " TOP ", \"payloads\": [ 5 ] }", "payload #0 must be an object");
	expect_bad(doc("\"live_patch\": [ ]", KERNEL), "field 'live_patch' must be an object");
	expect_bad(doc("\"live_patch\": { \"from\": [ 1 ] }", KERNEL),
		   "live_patch.from[0] must be a string");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
			   "-1, \"offset\": 4096, " HASH " }"),
		   "a number must be plain decimal digits");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
			   "1.5, \"offset\": 4096, " HASH " }"),
		   "a number must be plain decimal digits");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
			   "1, \"offset\": 4096, " HASH ", \"live\": \"yes\" }"),
		   "field 'live' must be true or false");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
			   "1, \"offset\": 4096, \"sha256\": \"abc\" }"),
		   "must be 64 lower-case hex digits");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
			   "18446744073709551615, \"offset\": 4096, " HASH " }"),
		   "field 'size' out of range");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
			   "99999999999999999999999, \"offset\": 4096, " HASH " }"),
		   "");
	expect_bad(doc("\"security_epoch\": 4294967296", KERNEL), "");
	expect_bad(doc("\"colour\": \"blue\"", KERNEL), "unknown field 'colour'");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
			   "1, \"offset\": 4096, " HASH ", \"source\": \"x\" }"),
		   "unknown field 'source'");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
			   "1, \"offset\": 4096, " HASH ", \"extra\": 1 }"),
		   "unknown field 'extra' in payload #0");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"firmware\", \"fs\": \"raw\", \"size\": "
			   "1, \"offset\": 4096, " HASH " }"),
		   "unknown payload type 'firmware'");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"rootfs\", \"fs\": \"btrfs\", \"size\": "
			   "1, \"offset\": 4096, " HASH " }"),
		   "unknown filesystem 'btrfs'");
}

static void test_manifest_field_values(void **state)
{
	expect_bad(doc("\"name\": \"-x\"", KERNEL), "");
	expect_bad(doc("\"version\": \"1.02\"", KERNEL), "version '1.02' is not a valid version");
	expect_bad(doc("\"build\": \"a b\"", KERNEL), "build 'a b'");
	expect_bad(doc("\"compatible\": \"\"", KERNEL), "compatible ''");
	expect_bad(doc("\"created\": \"2024-02-30T00:00:00Z\"", KERNEL), "created '2024-02-30");
	expect_bad(doc("\"created\": \"2024-05-01 12:00:00\"", KERNEL), "created");
	expect_bad(doc("\"description\": \"bell\\u0007\"", KERNEL), "description must be");
	expect_bad(doc("\"live_patch\": { \"from\": [ ] }", KERNEL),
		   "live_patch.from must list 1 to 256 versions");
	expect_bad(doc("\"live_patch\": { \"from\": [ \"1.0\", \"1.0\" ] }", KERNEL),
		   "lists '1.0' twice");
	expect_bad(doc("\"live_patch\": { \"from\": [ \"x\" ] }", KERNEL), "'x' is not a valid");
	expect_bad(doc("\"live_patch\": { \"to\": [ ] }", KERNEL), "unknown field 'to'");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"squashfs\", "
			   "\"size\": 1, \"offset\": 4096, " HASH " }"),
		   "a kernel payload cannot have filesystem 'squashfs'");
	expect_bad(doc("", "{ \"name\": \"r\", \"type\": \"rootfs\", \"fs\": \"raw\", "
			   "\"size\": 1, \"offset\": 4096, " HASH " }"),
		   "a rootfs payload cannot have filesystem 'raw'");
	expect_bad(doc("", "{ \"name\": \"k\", \"type\": \"kernel\", \"fs\": \"raw\", "
			   "\"size\": 1, \"offset\": 4096, " HASH ", \"live\": true, "
			   "\"mountpoint\": \"/x\" }"),
		   "only a component can be live");
	expect_bad(doc("", "{ \"name\": \"c\", \"type\": \"component\", \"fs\": \"erofs\", "
			   "\"size\": 1, \"offset\": 4096, " HASH ", \"live\": true }"),
		   "a live payload needs a 'mountpoint'");
	expect_bad(doc("", "{ \"name\": \"c\", \"type\": \"component\", \"fs\": \"erofs\", "
			   "\"size\": 1, \"offset\": 4096, " HASH ", \"mountpoint\": \"/x\" }"),
		   "'mountpoint' is only for live payloads");
	static const char *const bad_mp[] = { "opt/x",	 "/",		"/opt/",
					      "/opt//x", "/opt/../etc", "/./x" };
	for (size_t i = 0; i < BK_ELEMENTSOF(bad_mp); i++) {
		char p[512];

		snprintf(p, sizeof(p),
			 "{ \"name\": \"c\", \"type\": \"component\", \"fs\": \"erofs\", \"size\": "
			 "1, \"offset\": 4096, " HASH ", \"live\": true, \"mountpoint\": \"%s\" }",
			 bad_mp[i]);
		expect_bad(doc("", p), "is not a normalised absolute path");
	}
}

static void test_manifest_payload_names(void **state)
{
	static const char *const bad[] = { "a/b",  "..",	".",	      "",
					   "/etc", "x\\u0000y", "tab\\u0001", ".#tmp" };
	char p[512];

	for (size_t i = 0; i < BK_ELEMENTSOF(bad); i++) {
		snprintf(p, sizeof(p),
			 "{ \"name\": \"%s\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": 1, "
			 "\"offset\": 4096, " HASH " }",
			 bad[i]);
		/* A NUL inside a string is caught by the canonical form ("\u0000 in a string"). */
		expect_bad(doc("", p), strstr(bad[i], "u0000") ? "\\u0000 in a string" :
								 "single path component");
	}
	char longname[300];
	memset(longname, 'n', 256);
	longname[256] = '\0';
	snprintf(p, sizeof(p),
		 "{ \"name\": \"%s\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": 1, "
		 "\"offset\": 4096, " HASH " }",
		 longname);
	expect_bad(doc("", p), "single path component");
}

#define RAW(name, size, offset)                                                           \
	"{ \"name\": \"" name "\", \"type\": \"file\", \"fs\": \"raw\", \"size\": " #size \
	", \"offset\": " #offset ", " HASH " }"

static void test_manifest_layout(void **state)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };

	expect_bad(doc("", RAW("a", 10, 4096) ", " RAW("a", 10, 8192)),
		   "duplicate payload name 'a'");
	expect_bad(doc("", RAW("a", 5000, 4096) ", " RAW("b", 10, 8192)), "overlaps payload 'a'");
	expect_bad(doc("", RAW("a", 10, 4096) ", " RAW("b", 10, 4096)), "overlaps");
	expect_bad(doc("", RAW("a", 10, 4096) ", " RAW("b", 10, 12288)),
		   "does not start at the first aligned offset");
	expect_bad(doc("", RAW("a", 10, 4097)), "offset 4097 is not a multiple of 4096");
	expect_bad(doc("", RAW("a", 10, 0)), "lies inside the bundle header");
	expect_bad(doc("", RAW("a", 0, 4096)), "payload 'a' is empty");
	expect_bad(doc("", RAW("a", 4611686018427387905, 4096)), "field 'size' out of range");
	expect_bad("{ " TOP ", \"payloads\": [ ] }", "no payloads");

	/* Manifest order need not be offset order. */
	assert_int_equal(parse(doc("", RAW("b", 10, 8192) ", " RAW("a", 4096, 4096)), &m, &err), 0);
	assert_int_equal(bk_manifest_check_layout(m, 4096, 8202, &err), 0);

	bk_err_clear(&err);
	assert_int_equal(bk_manifest_check_layout(m, 4096, 8201, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "payload 'b' ends at 8202, past the end of the bundle"));
	bk_err_clear(&err);
	assert_int_equal(bk_manifest_check_layout(m, 4096, 100, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "past the end"));
	bk_err_clear(&err);
	assert_int_equal(bk_manifest_check_layout(m, 4096, 8300, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "98 bytes of trailing data"));
	bk_err_clear(&err);
	assert_int_equal(bk_manifest_check_layout(m, 8192, 8202, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "header says payloads start at 8192, manifest at 4096"));

	/* Offsets and sizes past 4 GiB survive parsing (64-bit end to end). */
	m = bk_manifest_free(m);
	assert_int_equal(
		parse(doc("", RAW("big", 6442450944, 4096) ", " RAW("tail", 1, 6442455040)), &m,
		      &err),
		0);
	assert_int_equal(m->payloads[1].offset, UINT64_C(6442455040));
	assert_int_equal(bk_manifest_check_layout(m, 4096, UINT64_C(6442455041), &err), 0);
}

static void test_manifest_huge_count(void **state)
{
	size_t n = BK_MANIFEST_MAX_PAYLOADS + 1, cap = n * 8 + 4096, len;
	char *buf = malloc(cap);
	struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };

	assert_non_null(buf);
	len = (size_t) snprintf(buf, cap, "{ " TOP ", \"payloads\": [ ");
	for (size_t i = 0; i < n; i++)
		len += (size_t) snprintf(buf + len, cap - len, "%s0", i ? ", " : "");
	len += (size_t) snprintf(buf + len, cap - len, " ] }");
	assert_int_equal(bk_manifest_parse(buf, len, 0, &m, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "too many payloads (65537, at most 65536)"));
	free(buf);

	/* Larger than the size limit: refused before parsing. */
	bk_err_clear(&err);
	assert_int_equal(bk_manifest_parse("{}", BK_MANIFEST_MAX_SIZE + 1, 0, &m, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "manifest too large"));
}

/*
 * About 40 ms in a normal build. ASan and UBSan make it 2.5x slower (90-98 ms before the
 * canonical-form pass, about 100 ms after it): their build gets a larger budget, still far
 * below what a quadratic check on 10,000 payloads takes.
 */
#if defined(__SANITIZE_ADDRESS__)
#define MANIFEST_10000_BUDGET_MS 250.0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MANIFEST_10000_BUDGET_MS 250.0
#endif
#endif
#ifndef MANIFEST_10000_BUDGET_MS
#define MANIFEST_10000_BUDGET_MS 100.0
#endif

static void test_manifest_10000_payloads_fast(void **state)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	size_t n = 10000, cap = n * 256 + 4096, len;
	char *buf = malloc(cap);
	struct bk_err err = { 0 };
	struct timespec t0, t1;
	uint64_t off = 4096;
	double ms = 0;

	assert_non_null(buf);
	len = (size_t) snprintf(buf, cap, "{ " TOP ", \"payloads\": [ ");
	/* Listed in reverse offset order, so the sort has work to do. */
	for (size_t i = 0; i < n; i++) {
		uint64_t o = off + (n - 1 - i) * 8192;

		len += (size_t) snprintf(buf + len, cap - len,
					 "%s{ \"name\": \"p%05zu\", \"type\": \"file\", \"fs\": "
					 "\"raw\", \"size\": 5000, \"offset\": %llu, " HASH " }",
					 i ? ", " : "", i, (unsigned long long) o);
	}
	len += (size_t) snprintf(buf + len, cap - len, " ] }");

	/*
	 * CPU time, best of three: a loaded machine (parallel builds, the fuzzer) must not make
	 * this fail, a quadratic check must.
	 */
	for (int round = 0; round < 3; round++) {
		double t;

		m = bk_manifest_free(m);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
		assert_int_equal(bk_manifest_parse(buf, len, 0, &m, &err), 0);
		assert_int_equal(
			bk_manifest_check_layout(m, 4096, 4096 + (n - 1) * 8192 + 5000, &err), 0);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
		t = (double) (t1.tv_sec - t0.tv_sec) * 1e3 +
		    (double) (t1.tv_nsec - t0.tv_nsec) / 1e6;
		ms = round == 0 || t < ms ? t : ms;
	}
	print_message("# 10000 payloads parsed and validated in %.1f ms (CPU, budget %.0f ms)\n",
		      ms, MANIFEST_10000_BUDGET_MS);
	assert_true(ms < MANIFEST_10000_BUDGET_MS);
	assert_int_equal(m->n_payloads, n);
	free(buf);
}

static void test_manifest_roundtrip(void **state)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL, *m2 = NULL;
	_cleanup_free_ char *s = NULL, *s2 = NULL;
	struct bk_err err = { 0 };
	size_t len, len2;
	uint64_t end;

	assert_int_equal(parse(doc("\"description\": \"x\", \"live_patch\": { \"from\": [ "
				   "\"1.0\" ] }",
				   KERNEL ", " SQUASH),
			       &m, &err),
			 0);
	assert_int_equal(bk_manifest_serialise(m, &s, &len, &err), 0);
	assert_int_equal(s[len - 1], '\n');
	assert_int_equal(bk_manifest_parse(s, len, 0, &m2, &err), 0);
	assert_int_equal(bk_manifest_serialise(m2, &s2, &len2, &err), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(s, s2, len);
	assert_memory_equal(m->payloads[1].sha256, m2->payloads[1].sha256, BK_SHA256_LEN);
	assert_string_equal(m2->payloads[1].mountpoint, "/opt/app");

	/* Canonical offsets: 4096, then the first boundary after 4096 + 5000. */
	assert_int_equal(bk_manifest_assign_offsets(m, 8192, &end), 0);
	assert_int_equal(m->payloads[0].offset, 8192);
	assert_int_equal(m->payloads[1].offset, 16384);
	assert_int_equal(end, 16384 + 8192);
	assert_int_equal(bk_manifest_validate(m, &err), 0);
	assert_int_equal(bk_manifest_assign_offsets(m, 100, &end), -EINVAL);
}

static void test_manifest_spec(void **state)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };
	const char *spec = "{ \"name\": \"acme\", \"version\": \"2.0\", \"build\": \"1\", "
			   "\"compatible\": \"x\", \"security_epoch\": 0, \"payloads\": [ "
			   "{ \"name\": \"k\", \"type\": \"kernel\", \"source\": \"vmlinuz\" }, "
			   "{ \"name\": \"r\", \"type\": \"rootfs\", \"source\": \"/abs/r\" } ] }";
	const char *bad = "{ \"name\": \"acme\", \"version\": \"2.0\", \"build\": \"1\", "
			  "\"compatible\": \"x\", \"security_epoch\": 0, \"payloads\": [ "
			  "{ \"name\": \"k\", \"type\": \"kernel\", \"source\": \"v\", \"size\": 1 "
			  "} ] }";
	const char *nosrc = "{ \"name\": \"acme\", \"version\": \"2.0\", \"build\": \"1\", "
			    "\"compatible\": \"x\", \"security_epoch\": 0, \"payloads\": [ "
			    "{ \"name\": \"k\", \"type\": \"kernel\" } ] }";

	assert_int_equal(bk_manifest_parse(spec, strlen(spec), BK_MANIFEST_PARSE_SPEC, &m, &err),
			 0);
	assert_string_equal(m->payloads[0].source, "vmlinuz");
	assert_int_equal(m->payloads[1].fs, _BK_FS_INVALID);
	assert_null(m->created);
	m = bk_manifest_free(m);
	assert_int_equal(bk_manifest_parse(bad, strlen(bad), BK_MANIFEST_PARSE_SPEC, &m, &err),
			 -ENOEXEC);
	assert_non_null(strstr(err.msg, "field 'size' is computed by the builder"));
	bk_err_clear(&err);
	assert_int_equal(bk_manifest_parse(nosrc, strlen(nosrc), BK_MANIFEST_PARSE_SPEC, &m, &err),
			 -ENOEXEC);
	assert_non_null(strstr(err.msg, "missing field 'source'"));
	/* A spec is not a manifest. */
	bk_err_clear(&err);
	assert_int_equal(bk_manifest_parse(spec, strlen(spec), 0, &m, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "missing field 'format'"));
}

static void test_manifest_enum_strings(void **state)
{
	assert_string_equal(bk_payload_type_to_string(BK_PAYLOAD_INITRD), "initrd");
	assert_null(bk_payload_type_to_string(_BK_PAYLOAD_TYPE_MAX));
	assert_int_equal(bk_payload_type_from_string("rootfs"), BK_PAYLOAD_ROOTFS);
	assert_int_equal(bk_payload_type_from_string("ROOTFS"), _BK_PAYLOAD_TYPE_INVALID);
	assert_string_equal(bk_payload_fs_to_string(BK_FS_EROFS), "erofs");
	assert_int_equal(bk_payload_fs_from_string("ext4"), BK_FS_EXT4);
	assert_int_equal(bk_payload_fs_from_string(NULL), _BK_FS_INVALID);
}

/* Issue 17, item 4: one meaning per signed manifest. */
static void test_manifest_canonical(void **state)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	_cleanup_free_ char *text = NULL;
	struct bk_err err = { 0 };
	char buf[4096];
	size_t len;

	/* Duplicate keys: json-c would keep the last one ("version" would read 9.9.9). */
	snprintf(buf, sizeof(buf), "{ " TOP ", \"version\": \"9.9.9\", \"payloads\": [ %s ] }",
		 KERNEL);
	expect_bad(buf, "duplicate key 'version'");
	expect_bad(doc("",
		       "{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": "
		       "5000, \"size\": 5000, \"offset\": 4096, " HASH " }"),
		   "duplicate key 'size'");
	expect_bad(doc("\"live_patch\": { \"from\": [ \"1.0\" ], \"from\": [ \"2.0\" ] }", KERNEL),
		   "duplicate key 'from'");
	/* An escaped key could spell a known key another way ("\u0076ersion"). */
	expect_bad(doc("\"\\u0076ersion\": \"1.0\"", KERNEL), "an escape in an object key");

	/* null is never "absent": a required or optional string, a boolean, an object. */
	expect_bad(doc("\"description\": null", KERNEL), "null");
	expect_bad(doc("\"build\": null", KERNEL), "null");
	expect_bad(doc("\"live_patch\": null", KERNEL), "null");
	expect_bad(doc("", "{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"fs\": \"raw\", "
			   "\"size\": 5000, \"offset\": 4096, " HASH ", \"live\": null }"),
		   "null");
	expect_bad(doc("", "{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"fs\": \"raw\", "
			   "\"size\": 5000, \"offset\": 4096, " HASH ", \"mountpoint\": null }"),
		   "null");

	/* Lone surrogates (json-c would turn them into U+FFFD); a pair is fine. */
	expect_bad(doc("\"description\": \"a\\ud800b\"", KERNEL),
		   "a lone UTF-16 high surrogate escape");
	expect_bad(doc("\"description\": \"a\\ud800\\u0041\"", KERNEL),
		   "a lone UTF-16 high surrogate escape");
	expect_bad(doc("\"description\": \"a\\udc00\"", KERNEL), "a lone UTF-16 low surrogate");
	expect_bad(doc("\"description\": \"end\\udbff\"", KERNEL), "high surrogate");
	assert_int_equal(parse(doc("\"description\": \"clef \\ud834\\udd1e\"", KERNEL), &m, &err),
			 0);
	assert_string_equal(m->description, "clef \xf0\x9d\x84\x9e");
	m = bk_manifest_free(m);

	/* One spelling per digest: lower case. */
	expect_bad(doc("",
		       "{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"fs\": \"raw\", "
		       "\"size\": 5000, \"offset\": 4096, \"sha256\": "
		       "\"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\" }"),
		   "must be 64 lower-case hex digits");
	expect_bad(doc("",
		       "{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"fs\": \"raw\", "
		       "\"size\": 5000, \"offset\": 4096, \"sha256\": "
		       "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015aD\" }"),
		   "must be 64 lower-case hex digits");

	/* Numbers: plain decimal digits. */
	expect_bad(doc("\"security_epoch\": 03", KERNEL), "");
	expect_bad(doc("\"security_epoch\": 3e0", KERNEL), "plain decimal digits");
	expect_bad(doc("\"security_epoch\": -0", KERNEL), "plain decimal digits");

	/* Nothing before the object; after it at most one newline. */
	snprintf(buf, sizeof(buf), "%s", doc("", KERNEL));
	len = strlen(buf);
	assert_int_equal(bk_manifest_parse(buf, len, 0, &m, &err), 0);
	m = bk_manifest_free(m);
	strcat(buf, "\n");
	assert_int_equal(bk_manifest_parse(buf, len + 1, 0, &m, &err), 0);
	m = bk_manifest_free(m);
	static const char *const tails[] = { "\n\n", " ", "\t", "\r\n", " \n", "\n " };
	for (size_t i = 0; i < BK_ELEMENTSOF(tails); i++) {
		snprintf(buf, sizeof(buf), "%s%s", doc("", KERNEL), tails[i]);
		expect_bad(buf, "trailing data after the manifest's JSON object");
	}
	snprintf(buf, sizeof(buf), " %s", doc("", KERNEL));
	expect_bad(buf, "the manifest must start with '{'");
	snprintf(buf, sizeof(buf), "\n%s", doc("", KERNEL));
	expect_bad(buf, "the manifest must start with '{'");

	/* What the builder writes (bk_manifest_serialise()) is in the canonical form. */
	assert_int_equal(parse(doc("\"description\": \"d\\u00e9mo \\ud834\\udd1e \\\"q\\\" a/b\", "
				   "\"live_patch\": { \"from\": [ \"1.9.2\" ] }",
				   KERNEL ", " SQUASH),
			       &m, &err),
			 0);
	assert_int_equal(bk_manifest_serialise(m, &text, &len, &err), 0);
	m = bk_manifest_free(m);
	assert_int_equal(bk_manifest_parse(text, len, 0, &m, &err), 0);
	assert_string_equal(m->description, "d\xc3\xa9mo \xf0\x9d\x84\x9e \"q\" a/b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_valid),
		cmocka_unit_test(test_manifest_format2),
		cmocka_unit_test(test_manifest_malformed_json),
		cmocka_unit_test(test_manifest_missing_fields),
		cmocka_unit_test(test_manifest_wrong_types),
		cmocka_unit_test(test_manifest_field_values),
		cmocka_unit_test(test_manifest_payload_names),
		cmocka_unit_test(test_manifest_layout),
		cmocka_unit_test(test_manifest_huge_count),
		cmocka_unit_test(test_manifest_10000_payloads_fast),
		cmocka_unit_test(test_manifest_roundtrip),
		cmocka_unit_test(test_manifest_spec),
		cmocka_unit_test(test_manifest_enum_strings),
		cmocka_unit_test(test_manifest_canonical),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
