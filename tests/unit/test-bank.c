/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The content of a bank: bank.json made from a manifest, written and read back, every parse
 * error, the completeness check against real files, clearing (record first, lost+found kept;
 * a clear that fails after its first removal has already removed bank.json, issue 18).
 */
#include <errno.h>

#include "bk-test.h"

#include "bk-bank.h"
#include "bk-cleanup.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-manifest.h"
#include "bk-sha256.h"
#include "mocks.h"

static const char kernel_bytes[] = "kernel bytes: not really a kernel";
static const char initrd_bytes[] = "initrd";

/* A manifest whose payload digests are those of kernel_bytes and initrd_bytes. */
static const char *manifest_text(void)
{
	static char buf[4096];
	char hk[BK_SHA256_HEX_LEN + 1], hi[BK_SHA256_HEX_LEN + 1];
	uint8_t d[BK_SHA256_LEN];

	assert_int_equal(bk_sha256_buf(kernel_bytes, strlen(kernel_bytes), d), 0);
	bk_sha256_to_hex(d, hk);
	assert_int_equal(bk_sha256_buf(initrd_bytes, strlen(initrd_bytes), d), 0);
	bk_sha256_to_hex(d, hi);
	snprintf(
		buf, sizeof(buf),
		"{ \"format\": 1, \"name\": \"acme-os\", \"version\": \"1.10.0\", \"build\": "
		"\"42\", \"compatible\": \"acme-x86_64\", \"security_epoch\": 3, \"created\": "
		"\"2024-05-01T12:00:00Z\", \"payloads\": [ "
		"{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"fs\": \"raw\", \"size\": %zu, "
		"\"offset\": 4096, \"sha256\": \"%s\" }, "
		"{ \"name\": \"initrd.img\", \"type\": \"initrd\", \"fs\": \"raw\", \"size\": %zu, "
		"\"offset\": 8192, \"sha256\": \"%s\" } ] }\n",
		strlen(kernel_bytes), hk, strlen(initrd_bytes), hi);
	return buf;
}

static struct bk_manifest *manifest(void)
{
	const char *t = manifest_text();
	struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };

	assert_int_equal(bk_manifest_parse(t, strlen(t), 0, &m, &err), 0);
	return m;
}

static struct bk_bank_record *record(void)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = manifest();
	const char *t = manifest_text();
	struct bk_bank_record *r = NULL;
	struct bk_err err = { 0 };

	assert_int_equal(bk_bank_record_new(m, t, strlen(t), "CN=signer", 1700000000, &r, &err), 0);
	return r;
}

/* A complete bank in d: payloads, manifest.json, manifest.sig, bank.json. */
static void write_bank(struct bk_test_dir *d)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *r = record();
	struct bk_err err = { 0 };

	bk_test_write(d->dfd, "vmlinuz", kernel_bytes);
	bk_test_write(d->dfd, "initrd.img", initrd_bytes);
	bk_test_write(d->dfd, BK_BANK_MANIFEST_FILE, manifest_text());
	bk_test_write(d->dfd, BK_BANK_SIGNATURE_FILE, "DER");
	assert_int_equal(bk_bank_record_write_at(d->dfd, r, &err), 0);
}

static void test_record_from_manifest(void **state)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *r = record();
	const char *t = manifest_text();
	uint8_t d[BK_SHA256_LEN];

	assert_string_equal(r->name, "acme-os");
	assert_string_equal(r->version, "1.10.0");
	assert_string_equal(r->build, "42");
	assert_string_equal(r->compatible, "acme-x86_64");
	assert_int_equal(r->security_epoch, 3);
	assert_string_equal(r->signer, "CN=signer");
	assert_int_equal(r->staged, 1700000000);
	assert_int_equal(bk_sha256_buf(t, strlen(t), d), 0);
	assert_memory_equal(r->manifest_sha256, d, BK_SHA256_LEN);
	assert_int_equal(r->n_payloads, 2);
	assert_string_equal(r->payloads[0].name, "vmlinuz");
	assert_int_equal(r->payloads[0].type, BK_PAYLOAD_KERNEL);
	assert_int_equal(r->payloads[0].size, strlen(kernel_bytes));
	assert_string_equal(r->payloads[1].name, "initrd.img");
}

static void test_record_roundtrip(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *r = record(), *back = NULL;
	struct bk_err err = { 0 };
	char buf[8192];

	assert_int_equal(bk_bank_record_write_at(dir->dfd, r, &err), 0);
	assert_int_equal(bk_test_count_prefix(dir->dfd, ".#"), 0);
	assert_true(bk_test_read(dir->dfd, BK_BANK_RECORD_FILE, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"format\": 1"));
	assert_non_null(strstr(buf, "\"signer\": \"CN=signer\""));
	assert_int_equal(bk_bank_record_read_at(dir->dfd, &back, &err), 0);
	assert_string_equal(back->version, r->version);
	assert_string_equal(back->signer, r->signer);
	assert_int_equal(back->staged, r->staged);
	assert_memory_equal(back->manifest_sha256, r->manifest_sha256, BK_SHA256_LEN);
	assert_int_equal(back->n_payloads, 2);
	assert_memory_equal(back->payloads[1].sha256, r->payloads[1].sha256, BK_SHA256_LEN);
	assert_int_equal(back->payloads[1].type, BK_PAYLOAD_INITRD);
}

static void test_record_missing(void **state)
{
	struct bk_test_dir *dir = *state;
	struct bk_bank_record *r = NULL;
	struct bk_err err = { 0 };

	assert_int_equal(bk_bank_record_read_at(dir->dfd, &r, &err), -ENOENT);
	assert_null(r);
	assert_string_equal(err.msg, "cannot open 'bank.json': No such file or directory");
}

/* The JSON of record() with one substitution (from -> to). */
static const char *record_json_with(const char *from, const char *to)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *r = record();
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	static char buf[8192];
	char *at;

	assert_int_equal(bk_bank_record_to_json(r, &o), 0);
	snprintf(buf, sizeof(buf), "%s", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	at = strstr(buf, from);
	if (!at)
		fail_msg("'%s' not in %s", from, buf);
	memmove(at + strlen(to), at + strlen(from), strlen(at + strlen(from)) + 1);
	memcpy(at, to, strlen(to));
	return buf;
}

static void expect_bad(const char *text, const char *needle)
{
	struct bk_bank_record *r = NULL;
	struct bk_err err = { 0 };

	assert_int_equal(bk_bank_record_parse(text, strlen(text), &r, &err), -ENOEXEC);
	assert_null(r);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_record_parse_errors(void **state)
{
	struct bk_bank_record *r = NULL;
	struct bk_err err = { 0 };
	const char *ok = record_json_with("\"format\":1", "\"format\":1");

	assert_int_equal(bk_bank_record_parse(ok, strlen(ok), &r, &err), 0);
	r = bk_bank_record_free(r);

	expect_bad("[]", "not a JSON object");
	expect_bad("{", "invalid JSON");
	expect_bad(record_json_with("\"format\":1", "\"format\":2"), "unknown format 2");
	expect_bad(record_json_with("\"format\":1", "\"colour\":1"), "unknown field 'colour'");
	expect_bad(record_json_with("\"version\":\"1.10.0\"", "\"version\":\"one\""),
		   "'one' is not a version");
	expect_bad(record_json_with("\"name\":\"acme-os\"", "\"name\":7"),
		   "field 'name' must be a string");
	expect_bad(record_json_with("\"security_epoch\":3", "\"security_epoch\":-3"),
		   "field 'security_epoch' must not be negative");
	expect_bad(record_json_with("\"manifest_sha256\":\"", "\"manifest_sha256\":\"zz"),
		   "field 'manifest_sha256' must be 64 hex digits");
	expect_bad(record_json_with("\"name\":\"initrd.img\"", "\"name\":\"vmlinuz\""),
		   "payload 'vmlinuz' is listed twice");
	expect_bad(record_json_with("\"name\":\"initrd.img\"", "\"name\":\"bank.json\""),
		   "payload 'bank.json': not a valid payload file name");
	expect_bad(record_json_with("\"name\":\"initrd.img\"", "\"name\":\"../x\""),
		   "payload '../x': not a valid payload file name");
	expect_bad(record_json_with("\"type\":\"initrd\"", "\"type\":\"floppy\""),
		   "payload 'initrd.img': unknown type 'floppy'");
	expect_bad(record_json_with("\"staged\":1700000000,", ""), "missing field 'staged'");
}

static void test_reserved_names(void **state)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = manifest();
	struct bk_bank_record *r = NULL;
	struct bk_err err = { 0 };
	char reserved[] = "manifest.json";
	char *old = m->payloads[1].name;

	assert_true(bk_bank_name_is_reserved("bank.json"));
	assert_true(bk_bank_name_is_reserved("manifest.sig"));
	assert_true(bk_bank_name_is_reserved("manifest.chunks"));
	assert_true(bk_bank_name_is_reserved("lost+found"));
	assert_false(bk_bank_name_is_reserved("vmlinuz"));
	assert_int_equal(bk_bank_check_manifest(m, &err), 0);
	m->payloads[1].name = reserved;
	assert_int_equal(bk_bank_check_manifest(m, &err), -ENOEXEC);
	assert_string_equal(err.msg, "payload 'manifest.json': the name is reserved in a bank");
	assert_int_equal(bk_bank_record_new(m, "x", 1, NULL, 0, &r, NULL), -ENOEXEC);
	assert_null(r);
	m->payloads[1].name = old;
}

static void test_check_complete(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *r = record();
	struct bk_err err = { 0 };

	write_bank(dir);
	assert_int_equal(bk_bank_check(dir->dfd, r, 0, &err), 0);
	assert_int_equal(bk_bank_check(dir->dfd, r, BK_BANK_CHECK_DIGESTS, &err), 0);
}

static void test_check_incomplete(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *r = record();
	struct bk_err err = { 0 };
	char other[sizeof(kernel_bytes)];

	write_bank(dir);
	/* Same size, other bytes: only the digest check sees it. */
	memcpy(other, kernel_bytes, sizeof(other));
	other[0] ^= 1;
	bk_test_write(dir->dfd, "vmlinuz", other);
	assert_int_equal(bk_bank_check(dir->dfd, r, 0, &err), 0);
	assert_int_equal(bk_bank_check(dir->dfd, r, BK_BANK_CHECK_DIGESTS, &err), -EUCLEAN);
	assert_string_equal(err.msg, "'vmlinuz' does not match its SHA-256");

	bk_test_write(dir->dfd, "vmlinuz", "short");
	bk_err_clear(&err);
	assert_int_equal(bk_bank_check(dir->dfd, r, 0, &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, "'vmlinuz' has 5 bytes, the record says"));

	assert_int_equal(unlinkat(dir->dfd, "vmlinuz", 0), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_bank_check(dir->dfd, r, 0, &err), -ENOENT);
	assert_string_equal(err.msg, "'vmlinuz': No such file or directory");

	write_bank(dir);
	bk_test_write(dir->dfd, BK_BANK_SIGNATURE_FILE, "");
	bk_err_clear(&err);
	assert_int_equal(bk_bank_check(dir->dfd, r, 0, &err), -EUCLEAN);
	assert_string_equal(err.msg, "'manifest.sig' is empty");

	write_bank(dir);
	bk_test_write(dir->dfd, BK_BANK_MANIFEST_FILE, "{}");
	bk_err_clear(&err);
	assert_int_equal(bk_bank_check(dir->dfd, r, 0, &err), -EUCLEAN);
	assert_string_equal(err.msg, "'manifest.json' does not match the record's digest");
}

static void test_check_disagreeing_record(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *r = record();
	struct bk_err err = { 0 };

	write_bank(dir);
	/* A record that claims another version for the same manifest bytes. */
	free(r->version);
	r->version = strdup("9.9");
	assert_int_equal(bk_bank_check(dir->dfd, r, 0, &err), -EUCLEAN);
	assert_string_equal(err.msg, "'manifest.json' and 'bank.json' describe different images");
}

static void test_clear(void **state)
{
	struct bk_test_dir *dir = *state;
	struct bk_bank_record *r = NULL;
	struct bk_err err = { 0 };
	uint64_t usage = 0;
	int fd;

	write_bank(dir);
	bk_test_write(dir->dfd, ".partial.vmlinuz", "x");
	assert_int_equal(mkdirat(dir->dfd, "lost+found", 0700), 0);
	fd = openat(dir->dfd, "lost+found", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	bk_test_write(fd, "#12", "kept");
	close(fd);
	assert_int_equal(mkdirat(dir->dfd, "junk", 0755), 0);
	assert_int_equal(mkdirat(dir->dfd, "junk/deeper", 0755), 0);
	fd = openat(dir->dfd, "junk/deeper", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bk_test_write(fd, "f", "x");
	close(fd);

	assert_int_equal(bk_bank_usage_at(dir->dfd, &usage, &err), 0);
	assert_true(usage > 0);
	/* bank.json, vmlinuz, initrd.img, manifest.json, manifest.sig, .partial.vmlinuz, junk */
	assert_int_equal(bk_bank_clear_at(dir->dfd, &err), 7);
	assert_int_equal(bk_bank_record_read_at(dir->dfd, &r, &err), -ENOENT);
	assert_int_equal(bk_test_count_prefix(dir->dfd, ""), 3); /* ., .., lost+found */
	assert_int_equal(faccessat(dir->dfd, "lost+found/#12", F_OK, 0), 0);
	assert_int_equal(bk_bank_usage_at(dir->dfd, &usage, &err), 0);
	assert_int_equal(usage, 0);
	/* An empty bank: nothing to do. */
	assert_int_equal(bk_bank_clear_at(dir->dfd, &err), 0);
}

/*
 * A clear that fails half-way (the second unlink fails) leaves a bank without bank.json: the
 * record never claims content that is gone (issue 18, item 2).
 */
static void test_clear_fails_after_record(void **state)
{
	struct bk_test_dir *dir = *state;
	struct bk_bank_record *r = NULL;
	struct bk_err err = { 0 };

	write_bank(dir);
	wrap_reset();
	wrap_unlinkat_skip = 1;
	wrap_unlinkat_armed = 1;
	will_return(__wrap_unlinkat, EIO);
	assert_int_equal(bk_bank_clear_at(dir->dfd, &err), -EIO);
	wrap_reset();
	assert_non_null(strstr(err.msg, "cannot remove '"));
	assert_int_equal(faccessat(dir->dfd, BK_BANK_RECORD_FILE, F_OK, AT_SYMLINK_NOFOLLOW), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(bk_bank_record_read_at(dir->dfd, &r, &err), -ENOENT);
	/* Only one file went: the others are still there for the next clear. */
	assert_int_equal(bk_test_count_prefix(dir->dfd, ""), 2 + 4);
	bk_err_clear(&err);
	assert_int_equal(bk_bank_clear_at(dir->dfd, &err), 4);
	assert_int_equal(bk_test_count_prefix(dir->dfd, ""), 2);
}

/*
 * The bank's filesystem fails a read with EBADMSG (an ext4 checksum error): an I/O error saying
 * the filesystem is damaged, not "verification failed" (issue 16, item 3).
 */
static void test_read_fs_error(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	struct bk_bank_record *r = NULL;
	struct bk_err err = { 0 };

	write_bank(dir);
	wrap_reset();
	wrap_read_armed = 1;
	will_return(__wrap_read, EBADMSG);
	assert_int_equal(bk_bank_record_read_at(dir->dfd, &r, &err), -EIO);
	assert_null(r);
	assert_string_equal(err.msg, "the bank's filesystem is damaged (run fsck.ext4 on it): "
				     "cannot read 'bank.json': Bad message");
	bk_err_clear(&err);
	assert_int_equal(bk_bank_record_read_at(dir->dfd, &rec, &err), 0);
	wrap_read_armed = 1;
	will_return(__wrap_read, EUCLEAN);
	assert_int_equal(bk_bank_check(dir->dfd, rec, 0, &err), -EIO);
	wrap_reset();
	assert_non_null(strstr(err.msg, "the bank's filesystem is damaged"));
	assert_non_null(strstr(err.msg, "manifest.json"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_from_manifest),
		cmocka_unit_test_setup_teardown(test_record_roundtrip, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_record_missing, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test(test_record_parse_errors),
		cmocka_unit_test(test_reserved_names),
		cmocka_unit_test_setup_teardown(test_check_complete, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_check_incomplete, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_check_disagreeing_record, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_clear, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_clear_fails_after_record, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_read_fs_error, bk_test_dir_setup,
						bk_test_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
