/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stage in the library: the staging marker, the policy checks, the space estimate, and the
 * write of a bank from a real signed bundle (test PKI): the files it leaves, the record, the
 * progress it reports, and what a corrupt payload or an unverified bundle leaves behind.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>

#include "bk-test.h"
#include "mocks.h"

#include "bk-bank.h"
#include "bk-bundle.h"
#include "bk-cleanup.h"
#include "bk-fs.h"
#include "bk-sha256.h"
#include "bk-stage.h"
#include "mocks.h"

#define MAKE_PKI "tests/pki/make-pki.sh"
#define K_SIZE	 (3 * 1024 * 1024 + 17) /* several copy chunks, the last one short */

static char pki[64];
static struct bk_keyring *keyring;

static int group_setup(void **state)
{
	char cmd[256], path[PATH_MAX];
	struct bk_err err = { 0 };

	snprintf(pki, sizeof(pki), "/tmp/bk-stage-pki-XXXXXX");
	assert_non_null(mkdtemp(pki));
	snprintf(cmd, sizeof(cmd), "%s '%s' >/dev/null", MAKE_PKI, pki);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/keyring.pem", pki);
	assert_int_equal(bk_keyring_load(path, &keyring, &err), 0);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	keyring = bk_keyring_free(keyring);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- marker --------------------------------------------------------------------------------- */

static void test_marker_roundtrip(void **state)
{
	struct bk_test_dir *dir = *state;
	struct bk_stage_marker m = { .bank = BK_BANK_B, .pid = 42, .started = 1700000000 };
	struct bk_stage_marker back;
	struct bk_err err = { 0 };

	snprintf(m.image, sizeof(m.image), "acme-os");
	snprintf(m.version, sizeof(m.version), "1.10.0");
	assert_int_equal(bk_stage_marker_read_at(dir->dfd, &back, &err), -ENOENT);
	assert_int_equal(bk_stage_marker_write_at(dir->dfd, &m, &err), 0);
	assert_int_equal(bk_test_count_prefix(dir->dfd, ".#"), 0);
	assert_int_equal(bk_stage_marker_read_at(dir->dfd, &back, &err), 0);
	assert_int_equal(back.bank, BK_BANK_B);
	assert_string_equal(back.image, "acme-os");
	assert_string_equal(back.version, "1.10.0");
	assert_int_equal(back.pid, 42);
	assert_int_equal(back.started, 1700000000);
	assert_int_equal(bk_stage_marker_remove_at(dir->dfd, &err), 0);
	assert_int_equal(faccessat(dir->dfd, BK_STAGE_MARKER_FILE, F_OK, 0), -1);
	assert_int_equal(bk_stage_marker_remove_at(dir->dfd, &err), 0);
}

static void test_marker_corrupt(void **state)
{
	static const char *const bad[] = {
		"garbage",
		"{}",
		"{\"format\":2,\"bank\":\"A\",\"image\":\"x\",\"version\":\"1\",\"pid\":1,\"started\":1}",
		"{\"format\":1,\"bank\":\"C\",\"image\":\"x\",\"version\":\"1\",\"pid\":1,\"started\":1}",
		"{\"format\":1,\"bank\":\"A\",\"image\":\"x\",\"version\":\"1\",\"pid\":-1,\"started\":1}",
	};
	struct bk_test_dir *dir = *state;

	for (size_t i = 0; i < BK_ELEMENTSOF(bad); i++) {
		struct bk_stage_marker m;
		struct bk_err err = { 0 };

		bk_test_write(dir->dfd, BK_STAGE_MARKER_FILE, bad[i]);
		assert_int_equal(bk_stage_marker_read_at(dir->dfd, &m, &err), -ENOEXEC);
		if (strncmp(err.msg, "corrupt staging marker 'staging.json': ", 39) != 0)
			fail_msg("%s: %s", bad[i], err.msg);
	}
}

/* ---- policy --------------------------------------------------------------------------------- */

static struct bk_manifest *manifest(const char *version, unsigned epoch, const char *name)
{
	static char buf[2048];
	struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };

	snprintf(buf, sizeof(buf),
		 "{ \"format\": 1, \"name\": \"acme-os\", \"version\": \"%s\", \"build\": \"1\", "
		 "\"compatible\": \"acme-x86_64\", \"security_epoch\": %u, \"created\": "
		 "\"2024-05-01T12:00:00Z\", \"payloads\": [ { \"name\": \"%s\", \"type\": "
		 "\"kernel\", \"fs\": \"raw\", \"size\": 5000, \"offset\": 4096, \"sha256\": "
		 "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\" } ] }",
		 version, epoch, name);
	assert_int_equal(bk_manifest_parse(buf, strlen(buf), 0, &m, &err), 0);
	return m;
}

static void expect_policy(const struct bk_manifest *m, const struct bk_stage_policy *p, int want,
			  const char *msg)
{
	struct bk_err err = { 0 };

	assert_int_equal(bk_stage_check_policy(m, p, &err), want);
	if (msg)
		assert_string_equal(err.msg, msg);
}

static void test_policy(void **state)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = manifest("1.10.0", 3, "vmlinuz");
	_cleanup_(bk_manifest_freep) struct bk_manifest *reserved = manifest("2.0", 3, "bank.json");
	struct bk_stage_policy p = { .compatible = "acme-x86_64",
				     .floor = 3,
				     .booted_version = "1.9.2",
				     .booted_bank = BK_BANK_A };

	expect_policy(m, &p, 0, NULL);
	p.booted_version = "1.10";
	expect_policy(m, &p, 0, NULL); /* the same version again */
	p.booted_version = "1.11.0";
	expect_policy(m, &p, -EKEYREVOKED,
		      "image 'acme-os 1.10.0' is older than 1.11.0 in the booted bank A (use "
		      "--allow-downgrade to stage it anyway)");
	p.allow_downgrade = true;
	expect_policy(m, &p, 0, NULL);
	p.floor = 4;
	expect_policy(m, &p, -EKEYREVOKED,
		      "image 'acme-os 1.10.0' has security epoch 3, below the security floor 4: it "
		      "would never boot");
	p.floor = 0;
	p.compatible = "acme-arm64";
	expect_policy(
		m, &p, -EMEDIUMTYPE,
		"image 'acme-os 1.10.0' is for 'acme-x86_64', this system is 'acme-arm64' (use "
		"--ignore-compatible to stage it anyway)");
	p.compatible = NULL;
	expect_policy(m, &p, -EMEDIUMTYPE,
		      "image 'acme-os 1.10.0' is for 'acme-x86_64', and this system's [system] "
		      "compatible is not set: set it in system.conf, or use --ignore-compatible");
	p.ignore_compatible = true;
	expect_policy(m, &p, 0, NULL);
	p.booted_version = NULL;
	p.allow_downgrade = false;
	expect_policy(m, &p, 0, NULL);
	expect_policy(reserved, &p, -ENOEXEC,
		      "payload 'bank.json': the name is reserved in a bank");
}

static void test_space(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = manifest("1.0", 0, "vmlinuz");
	struct bk_err err = { 0 };
	uint64_t needed = 0, has = 0;

	/* 5000 bytes: 2 blocks of data + 1 of mapping, and the three metadata files. */
	assert_int_equal(bk_stage_space_needed(m, 1000, 1000, 4096), 3 * 4096 + 3 * 2 * 4096);
	/* 1 KiB blocks: 5 + 1, 1 + 1, 1 + 1, and the record (2304 bytes) 3 + 1. */
	assert_int_equal(bk_stage_space_needed(m, 1000, 1000, 1024), (6 + 2 + 2 + 4) * 1024);
	/* Format 2: manifest.chunks too (32 bytes: 1 block + 1). */
	m->format = 2;
	assert_int_equal(bk_stage_space_needed(m, 1000, 1000, 4096), 3 * 4096 + 4 * 2 * 4096);
	m->format = 1;
	assert_int_equal(
		bk_stage_check_space(dir->dfd, BK_BANK_B, m, 1000, 1000, &needed, &has, &err), 0);
	assert_true(needed > 0 && has >= needed);
	m->payloads[0].size = UINT64_C(1) << 60;
	assert_int_equal(
		bk_stage_check_space(dir->dfd, BK_BANK_B, m, 1000, 1000, &needed, &has, &err),
		-ENOSPC);
	assert_true(needed > has);
	assert_int_equal(strncmp(err.msg, "bank B too small: needs ", 24), 0);
	assert_non_null(strstr(err.msg, " MiB, has "));
}

/* ---- writing a bank ---------------------------------------------------------------------------
 */

/* size bytes of a pattern that never repeats (no two 1 MiB chunks alike): splitmix64. */
static void fill(char *buf, size_t size, unsigned seed)
{
	for (size_t i = 0; i < size; i++) {
		uint64_t z = (uint64_t) (i / 8) + (uint64_t) seed * UINT64_C(0x9e3779b97f4a7c15);

		z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
		z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
		z ^= z >> 31;
		buf[i] = (char) (z >> (8 * (i % 8)));
	}
}

static void write_source(int dfd, const char *name, size_t size, unsigned seed)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	char *buf = malloc(size);

	assert_true(fd >= 0);
	assert_non_null(buf);
	fill(buf, size, seed);
	assert_int_equal(write(fd, buf, size), (ssize_t) size);
	close(fd);
	free(buf);
}

/* Build the bundle out in dir from spec (sources in dir), signed by the test PKI. */
static void build_spec(struct bk_test_dir *dir, const char *spec, const char *out)
{
	char key[PATH_MAX], cert[PATH_MAX], inter[PATH_MAX];
	const char *inters[] = { inter, NULL };
	struct bk_bundle_signer s = { key, cert, inters };
	struct bk_err err = { 0 };

	snprintf(key, sizeof(key), "%s/signer.key", pki);
	snprintf(cert, sizeof(cert), "%s/signer.crt", pki);
	snprintf(inter, sizeof(inter), "%s/intermediate.crt", pki);
	assert_int_equal(bk_bundle_build(spec, strlen(spec), dir->dfd, "2024-05-01T12:00:00Z", &s,
					 dir->dfd, out, &err),
			 0);
}

/* A bundle "b.bbi" in dir: a 3 MiB kernel, a small initrd and a one-byte file. */
static void build(struct bk_test_dir *dir)
{
	static const char spec[] =
		"{ \"name\": \"acme-os\", \"version\": \"1.10.0\", \"build\": \"42\", "
		"\"compatible\": \"acme-x86_64\", \"security_epoch\": 2, \"payloads\": [ "
		"{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"source\": \"k.bin\" }, "
		"{ \"name\": \"initrd.img\", \"type\": \"initrd\", \"source\": \"i.bin\" }, "
		"{ \"name\": \"notes.txt\", \"type\": \"file\", \"source\": \"f.bin\" } ] }";

	write_source(dir->dfd, "k.bin", K_SIZE, 1);
	write_source(dir->dfd, "i.bin", 4096, 2);
	write_source(dir->dfd, "f.bin", 1, 3);
	build_spec(dir, spec, "b.bbi");
	assert_int_equal(mkdirat(dir->dfd, "bank", 0755), 0);
}

static struct bk_bundle *open_bundle_named(struct bk_test_dir *dir, const char *name, bool verify)
{
	struct bk_bundle *b = NULL;
	struct bk_err err = { 0 };
	int fd = openat(dir->dfd, name, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	if (verify)
		assert_int_equal(bk_bundle_open_verified(fd, keyring, 0, &b, &err), 0);
	else {
		assert_int_equal(bk_bundle_open_fd(fd, &b, &err), 0);
		assert_int_equal(bk_bundle_load_manifest(b, &err), 0);
	}
	close(fd);
	return b;
}

static struct bk_bundle *open_bundle(struct bk_test_dir *dir, bool verify)
{
	return open_bundle_named(dir, "b.bbi", verify);
}

static int bank_fd(struct bk_test_dir *dir)
{
	int fd = openat(dir->dfd, "bank", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

struct seen {
	const char *payload;
	unsigned calls, starts, ends;
	uint64_t last_done, total;
	bool monotonic;
};

static void on_progress(const struct bk_stage_progress *p, void *userdata)
{
	struct seen *s = userdata;

	if (s->calls > 0 && p->done < s->last_done)
		s->monotonic = false;
	s->calls++;
	s->last_done = p->done;
	s->total = p->total;
	if (p->payload != s->payload) {
		assert_int_equal(p->payload_done, 0);
		s->starts++;
		s->payload = p->payload;
	}
	if (p->end) {
		s->ends++;
		assert_int_equal(p->payload_done, p->payload_size);
	}
	assert_true(p->payload_done <= p->payload_size && p->done <= p->total);
}

static void test_write_bank(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL, *back = NULL;
	_cleanup_close_ int bfd = -EBADF;
	struct seen seen = { .monotonic = true };
	struct bk_stage_write_options o = { .progress = on_progress,
					    .userdata = &seen,
					    .staged_time = 1234 };
	struct bk_err err = { 0 };
	const char *mbytes;
	size_t mlen;
	char buf[8192];

	build(dir);
	b = open_bundle(dir, true);
	bfd = bank_fd(dir);
	/* An old image and a leftover partial file: both go; lost+found stays. */
	bk_test_write(bfd, "old-kernel", "old");
	bk_test_write(bfd, ".partial.vmlinuz", "old partial");
	assert_int_equal(mkdirat(bfd, "lost+found", 0700), 0);

	assert_int_equal(bk_stage_write_bank(b, bfd, &o, &rec, &err), 0);
	assert_string_equal(rec->version, "1.10.0");
	assert_int_equal(rec->staged, 1234);
	assert_int_equal(faccessat(bfd, "old-kernel", F_OK, 0), -1);
	assert_int_equal(faccessat(bfd, "lost+found", F_OK, 0), 0);
	assert_int_equal(bk_test_count_prefix(bfd, ".partial."), 0);
	assert_int_equal(bk_test_count_prefix(bfd, ".#"), 0);
	/* ., .., lost+found, 3 payloads, manifest.json, manifest.sig, manifest.chunks, bank.json */
	assert_int_equal(bk_test_count_prefix(bfd, ""), 10);
	/* manifest.chunks: the lists the payloads were checked against, in manifest order. */
	{
		_cleanup_(bk_bank_chunks_freep) struct bk_bank_chunks *bc = NULL;
		const struct bk_manifest *m = bk_bundle_get_manifest(b);
		uint8_t table[(4 + 1 + 1) * BK_SHA256_LEN + 1]; /* and bk_test_read()'s NUL */
		size_t off = 0;

		assert_int_equal(
			bk_test_read(bfd, BK_BANK_CHUNKS_FILE, (char *) table, sizeof(table)),
			(ssize_t) sizeof(table) - 1);
		assert_int_equal(bk_bank_chunks_read_at(bfd, &bc, &err), 0);
		assert_int_equal(bc->manifest->n_payloads, 3);
		for (size_t i = 0; i < m->n_payloads; i++) {
			_cleanup_(bk_chunks_freep) struct bk_chunks *c = NULL;

			assert_int_equal(bk_bundle_load_chunks(b, &m->payloads[i], &c, &err), 0);
			assert_int_equal(bc->lists[i]->n_chunks, c->n_chunks);
			assert_memory_equal(bc->lists[i]->digests, c->digests,
					    c->n_chunks * BK_SHA256_LEN);
			assert_memory_equal(table + off, c->digests, c->n_chunks * BK_SHA256_LEN);
			off += c->n_chunks * BK_SHA256_LEN;
		}
		assert_int_equal(off, sizeof(table) - 1);
	}

	/* The files are the sources, the manifest the signed bytes; the bank checks complete. */
	{
		char cmd[512];

		snprintf(cmd, sizeof(cmd),
			 "cd '%s' && cmp k.bin bank/vmlinuz && cmp i.bin bank/initrd.img && "
			 "cmp f.bin bank/notes.txt",
			 dir->path);
		assert_int_equal(system(cmd), 0);
	}
	mbytes = bk_bundle_get_manifest_bytes(b, &mlen);
	assert_int_equal(bk_test_read(bfd, BK_BANK_MANIFEST_FILE, buf, sizeof(buf)),
			 (ssize_t) mlen);
	assert_memory_equal(buf, mbytes, mlen);
	assert_int_equal(bk_bank_record_read_at(bfd, &back, &err), 0);
	assert_memory_equal(back->manifest_sha256, rec->manifest_sha256, BK_SHA256_LEN);
	assert_int_equal(bk_bank_check(bfd, back, BK_BANK_CHECK_DIGESTS, &err), 0);

	/* Progress: a start and an end per payload, never backwards, all bytes at the end. */
	assert_int_equal(seen.starts, 3);
	assert_int_equal(seen.ends, 3);
	assert_true(seen.monotonic);
	assert_int_equal(seen.total, K_SIZE + 4096 + 1);
	assert_int_equal(seen.last_done, seen.total);
	assert_true(seen.calls >= 3 + 3 + 3); /* and the chunks of the 3 MiB kernel */
}

static void test_write_bank_corrupt_payload(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF, fd = -EBADF;
	struct bk_stage_write_options o = { 0 };
	const struct bk_payload *p;
	struct bk_bank_record *rec = NULL;
	struct bk_err err = { 0 };
	char c;
	int r;

	build(dir);
	b = open_bundle(dir, true);
	/* Flip a byte in the middle of the kernel, in the last chunk, after it was verified. */
	p = &bk_bundle_get_manifest(b)->payloads[0];
	fd = openat(dir->dfd, "b.bbi", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, (off_t) (p->offset + K_SIZE - 5)), 1);
	c ^= 0x40;
	assert_int_equal(pwrite(fd, &c, 1, (off_t) (p->offset + K_SIZE - 5)), 1);
	bfd = bank_fd(dir);

	r = bk_stage_write_bank(b, bfd, &o, &rec, &err);
	assert_int_equal(r, -EUCLEAN);
	assert_null(rec);
	assert_non_null(strstr(err.msg, "payload 'vmlinuz': chunk 3 (offset 3145728): SHA-256 "
					"mismatch (corrupt payload)"));
	assert_int_equal(bk_test_count_prefix(bfd, ".partial."), 0);
	assert_int_equal(faccessat(bfd, "vmlinuz", F_OK, 0), -1);
	assert_int_equal(faccessat(bfd, BK_BANK_RECORD_FILE, F_OK, 0), -1);
}

static void test_write_bank_truncated(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF, fd = -EBADF;
	struct bk_stage_write_options o = { 0 };
	struct bk_err err = { 0 };

	build(dir);
	b = open_bundle(dir, true);
	/* The bundle shrinks under us, inside the kernel. */
	fd = openat(dir->dfd, "b.bbi", O_RDWR | O_CLOEXEC);
	assert_int_equal(
		ftruncate(fd, (off_t) (bk_bundle_get_manifest(b)->payloads[0].offset + (2 << 20))),
		0);
	bfd = bank_fd(dir);
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), -ENOEXEC);
	/* Format 2: its chunk list (after the payloads) is gone first. */
	assert_non_null(strstr(err.msg, "payload 'vmlinuz': truncated"));
	assert_int_equal(bk_test_count_prefix(bfd, ".partial."), 0);
}

/* What was written to the bank's files: any byte of [bad_from, bad_to) of the kernel? */
static struct {
	uint64_t bad_from, bad_to, max_end;
	unsigned writes, bad_writes;
} pw;

static void on_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
	char link[64], path[PATH_MAX];
	ssize_t n;

	(void) buf;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		return;
	path[n] = '\0';
	if (!strstr(path, "/bank/.partial.vmlinuz"))
		return;
	pw.writes++;
	if ((uint64_t) offset + len > pw.max_end)
		pw.max_end = (uint64_t) offset + len;
	if ((uint64_t) offset < pw.bad_to && (uint64_t) offset + len > pw.bad_from)
		pw.bad_writes++;
}

/*
 * Issue 15: no byte that did not verify is ever written to a bank. A byte flipped in the middle
 * of chunk k (first, middle, last) of the kernel: every pwrite of the kernel's file is watched;
 * none touches chunk k or any chunk after it.
 */
static void test_write_bank_never_writes_unverified(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_close_ int fd = -EBADF;
	uint64_t off;

	build(dir);
	fd = openat(dir->dfd, "b.bbi", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	for (uint64_t k = 0; k < 4; k++) {
		_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
		_cleanup_close_ int bfd = -EBADF;
		struct bk_stage_write_options o = { 0 };
		struct bk_err err = { 0 };
		char c;

		b = open_bundle(dir, true);
		off = bk_bundle_get_manifest(b)->payloads[0].offset + k * (1 << 20) +
		      (k == 3 ? 8 : 500000);
		assert_int_equal(pread(fd, &c, 1, (off_t) off), 1);
		c ^= 0x01;
		assert_int_equal(pwrite(fd, &c, 1, (off_t) off), 1);

		memset(&pw, 0, sizeof(pw));
		pw.bad_from = k << 20;
		pw.bad_to = UINT64_MAX;
		bfd = bank_fd(dir);
		wrap_reset();
		wrap_pwrite64_observe = on_pwrite;
		assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), -EUCLEAN);
		wrap_reset();
		print_message("# corrupt chunk %llu: %u writes of the kernel, up to %llu, %u of "
			      "unverified bytes\n",
			      (unsigned long long) k, pw.writes, (unsigned long long) pw.max_end,
			      pw.bad_writes);
		assert_int_equal(pw.bad_writes, 0);
		assert_true(pw.max_end <= k << 20);
		assert_int_equal(bk_test_count_prefix(bfd, ".partial."), 0);
		c ^= 0x01;
		assert_int_equal(pwrite(fd, &c, 1, (off_t) off), 1);
	}
}

/* A bundle SUB/b.bbi of n one-byte payloads "pNNNNN", and the bank directory SUB/bank. */
static void build_tiny(struct bk_test_dir *dir, const char *sub, size_t n)
{
	size_t cap = 256 + n * 96, len;
	char *spec = malloc(cap);
	char key[PATH_MAX], cert[PATH_MAX], inter[PATH_MAX];
	const char *inters[] = { inter, NULL };
	struct bk_bundle_signer s = { key, cert, inters };
	struct bk_err err = { 0 };
	_cleanup_close_ int sdfd = -EBADF;

	assert_non_null(spec);
	assert_int_equal(mkdirat(dir->dfd, sub, 0755), 0);
	sdfd = openat(dir->dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(sdfd >= 0);
	len = (size_t) snprintf(spec, cap,
				"{ \"name\": \"tiny\", \"version\": \"1.0\", \"build\": \"1\", "
				"\"compatible\": \"acme-x86_64\", \"security_epoch\": 0, "
				"\"payloads\": [ ");
	for (size_t i = 0; i < n; i++) {
		char name[24]; /* "p" and up to 20 digits: no truncation warning */

		snprintf(name, sizeof(name), "p%05zu", i);
		write_source(sdfd, name, 1, (unsigned) i);
		len += (size_t) snprintf(spec + len, cap - len,
					 "%s{ \"name\": \"%s\", \"type\": \"file\", \"source\": "
					 "\"%s\" }",
					 i ? ", " : "", name, name);
	}
	len += (size_t) snprintf(spec + len, cap - len, " ] }");
	snprintf(key, sizeof(key), "%s/signer.key", pki);
	snprintf(cert, sizeof(cert), "%s/signer.crt", pki);
	snprintf(inter, sizeof(inter), "%s/intermediate.crt", pki);
	assert_int_equal(
		bk_bundle_build(spec, len, sdfd, "2024-05-01T12:00:00Z", &s, sdfd, "b.bbi", &err),
		0);
	assert_int_equal(mkdirat(sdfd, "bank", 0755), 0);
	free(spec);
}

/* Stage SUB/b.bbi into SUB/bank; returns the number of fsync calls the write made. */
static unsigned stage_tiny(struct bk_test_dir *dir, const char *sub, size_t n)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	_cleanup_close_ int fd = -EBADF, bfd = -EBADF;
	struct bk_stage_write_options o = { 0 };
	struct bk_err err = { 0 };
	char path[64];
	unsigned calls;

	snprintf(path, sizeof(path), "%s/b.bbi", sub);
	fd = openat(dir->dfd, path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(bk_bundle_open_verified(fd, keyring, 0, &b, &err), 0);
	snprintf(path, sizeof(path), "%s/bank", sub);
	bfd = openat(dir->dfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(bfd >= 0);

	wrap_reset();
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, &rec, &err), 0);
	calls = wrap_fsync_calls;
	assert_int_equal(rec->n_payloads, n);
	assert_int_equal(bk_bank_check(bfd, rec, BK_BANK_CHECK_DIGESTS, &err), 0);
	assert_int_equal(bk_test_count_prefix(bfd, ".partial."), 0);
	return calls;
}

/*
 * Issue 17, item 8: stage time must follow bytes, not the payload count. An fsync per payload
 * made 3,000 one-byte payloads take 26 s; the fsyncs of a stage must not grow with the count
 * (the payloads are made durable by one syncfs()).
 */
static void test_write_bank_many_tiny_payloads(void **state)
{
	struct bk_test_dir *dir = *state;
	unsigned few, many;

	build_tiny(dir, "few", 2);
	build_tiny(dir, "many", 300);
	few = stage_tiny(dir, "few", 2);
	many = stage_tiny(dir, "many", 300);
	print_message("# fsync calls of a stage: %u with 2 payloads, %u with 300\n", few, many);
	assert_int_equal(many, few);
}

static void test_write_bank_refusals(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF;
	struct bk_stage_write_options o = { 0 };
	struct bk_err err = { 0 };

	build(dir);
	bfd = bank_fd(dir);
	bk_test_write(bfd, "old-kernel", "old");
	b = open_bundle(dir, false);
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), -EPERM);
	assert_string_equal(err.msg, "refusing to stage a bundle whose signature was not verified");
	/* Refused before anything in the bank changed. */
	assert_int_equal(faccessat(bfd, "old-kernel", F_OK, 0), 0);
}

/*
 * The file's signature is rewritten after it verified (issue 17 item 2): the write neither
 * reads it again nor refuses; the bank gets the signature that verified.
 */
static void test_write_bank_signature_from_memory(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF, fd = -EBADF;
	struct bk_stage_write_options o = { 0 };
	struct bk_err err = { 0 };
	_cleanup_free_ char *written = NULL;
	const uint8_t *sig;
	size_t slen, wlen;
	uint8_t zero[64] = { 0 };

	build(dir);
	b = open_bundle(dir, true);
	sig = bk_bundle_get_signature_bytes(b, &slen);
	assert_true(slen > sizeof(zero));
	fd = openat(dir->dfd, "b.bbi", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, zero, sizeof(zero),
				(off_t) bk_bundle_get_header(b)->signature_offset + 16),
			 (ssize_t) sizeof(zero));
	bfd = bank_fd(dir);
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), 0);
	assert_int_equal(
		bk_read_file_at(bfd, BK_BANK_SIGNATURE_FILE, 1 << 20, &written, &wlen, &err), 0);
	assert_int_equal(wlen, slen);
	assert_memory_equal(written, sig, slen);
}

/*
 * The bank's filesystem fails a write with EBADMSG (ext4's checksum error) or EUCLEAN
 * (corruption found): stage reports an I/O error (exit 8) saying the bank's filesystem is
 * damaged, never "verification failed" (EBADMSG, exit 5) nor "corrupt payload" (EUCLEAN,
 * exit 7). Issue 16, item 3: "payload 'vmlinuz': write error at offset 0: Bad message", exit 5.
 */
static void expect_fs_error(struct bk_test_dir *dir, int *armed, int skip, int *skipp, int e,
			    const char *what)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF;
	struct bk_stage_write_options o = { 0 };
	struct bk_err err = { 0 };
	int r;

	b = open_bundle(dir, true);
	bfd = bank_fd(dir);
	wrap_reset();
	*skipp = skip;
	*armed = 1;
	if (armed == &wrap_write_armed)
		will_return(__wrap_write, e);
	else if (armed == &wrap_pwrite64_armed)
		wrap_pwrite64_errno = e; /* called from a copy thread: no cmocka queue */
	else
		will_return(__wrap_fsync, e);
	r = bk_stage_write_bank(b, bfd, &o, NULL, &err);
	wrap_reset();
	assert_int_equal(r, -EIO);
	assert_int_equal(err.code, -EIO);
	assert_non_null(strstr(err.msg, "the bank's filesystem is damaged"));
	assert_non_null(strstr(err.msg, what));
	assert_int_equal(bk_exit_code_from_errno(err.code), BK_EXIT_IO);
	assert_int_equal(faccessat(bfd, BK_BANK_RECORD_FILE, F_OK, 0), -1);
	assert_int_equal(bk_test_count_prefix(bfd, ".partial."), 0);
	assert_int_equal(bk_test_count_prefix(bfd, ".#"), 0);
}

static void test_write_bank_fs_errors(void **state)
{
	struct bk_test_dir *dir = *state;

	build(dir);
	/* The first payload's first chunk. */
	expect_fs_error(
		dir, &wrap_pwrite64_armed, 0, &wrap_pwrite64_skip, EBADMSG,
		"payload 'vmlinuz': the bank's filesystem is damaged (run fsck.ext4 on it): "
		"write error at offset 0: Bad message");
	/* A later chunk, and corruption found rather than a bad checksum. */
	expect_fs_error(dir, &wrap_pwrite64_armed, 1, &wrap_pwrite64_skip, EUCLEAN,
			"write error at offset 1048576: Structure needs cleaning");
	/*
	 * The manifest (the first write() of a stage), the chunk lists (the third) and the record
	 * (the fourth).
	 */
	expect_fs_error(dir, &wrap_write_armed, 0, &wrap_write_skip, EBADMSG,
			"cannot write 'manifest.json': Bad message");
	expect_fs_error(dir, &wrap_write_armed, 2, &wrap_write_skip, EUCLEAN,
			"cannot write 'manifest.chunks': Structure needs cleaning");
	expect_fs_error(dir, &wrap_write_armed, 3, &wrap_write_skip, EUCLEAN,
			"cannot write 'bank.json': Structure needs cleaning");
	/* EIO: the filesystem or its device (here the clear of what the last case left). */
	expect_fs_error(dir, &wrap_fsync_armed, 0, &wrap_fsync_skip, EIO,
			"the bank's filesystem is damaged or its device failed: cannot clear the "
			"bank: cannot sync the bank directory: Input/output error");
}

/* ---- a source other than the bundle's fd, delta and resume ---------------------------------- */

/* A source reading the bundle file itself, counting what it is asked for. */
struct counting_source {
	int fd;
	unsigned calls;
	uint64_t bytes;
	char log[512]; /* "payload:chunk " for each read */
	int fail_at;   /* fail the fail_at-th call with -EIO (1-based), 0 never */
};

static int counting_read(void *userdata, const struct bk_payload *p, uint64_t off, void *buf,
			 size_t len, struct bk_err *err)
{
	struct counting_source *s = userdata;
	size_t used = strlen(s->log);

	s->calls++;
	if (s->fail_at && (int) s->calls == s->fail_at)
		return bk_err_set(err, -EIO, "connection reset");
	snprintf(s->log + used, sizeof(s->log) - used, "%s:%llu ", p->name,
		 (unsigned long long) (off / BK_CHUNK_SIZE));
	assert_int_equal(pread(s->fd, buf, len, (off_t) (p->offset + off)), (ssize_t) len);
	s->bytes += len;
	return 0;
}

static void copy_file(int dfd, const char *from, int to_dfd, const char *to)
{
	char buf[65536];
	int in = openat(dfd, from, O_RDONLY | O_CLOEXEC);
	int out = openat(to_dfd, to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ssize_t n;

	assert_true(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t) n), n);
	close(in);
	close(out);
}

/* Overwrite one byte at offset off of (dfd, name). */
static void flip(int dfd, const char *name, off_t off)
{
	int fd = openat(dfd, name, O_RDWR | O_CLOEXEC);
	char c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c = (char) ~c;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static int truncateat(int dfd, const char *name, off_t size)
{
	int fd = openat(dfd, name, O_WRONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = ftruncate(fd, size) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static void expect_bank_is_sources(struct bk_test_dir *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && cmp -s k.bin bank/vmlinuz && cmp -s i.bin bank/initrd.img && "
		 "cmp -s f.bin bank/notes.txt",
		 dir->path);
	assert_int_equal(system(cmd), 0);
}

/* Reads of the booted bank's vmlinuz (any thread): which chunks, in order. */
static struct {
	pthread_mutex_t lock;
	char log[256];
} br = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_booted_pread(int fd, const void *buf, size_t len, off_t offset)
{
	char link[64], path[PATH_MAX];
	ssize_t n;

	(void) buf;
	(void) len;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		return;
	path[n] = '\0';
	if (!strstr(path, "/booted/vmlinuz"))
		return;
	pthread_mutex_lock(&br.lock);
	snprintf(br.log + strlen(br.log), sizeof(br.log) - strlen(br.log), "%llu ",
		 (unsigned long long) (offset / BK_CHUNK_SIZE));
	pthread_mutex_unlock(&br.lock);
}

static void watch_booted_reads(void)
{
	br.log[0] = '\0';
	wrap_reset();
	wrap_pread64_observe = on_booted_pread;
}

/*
 * Delta without the booted bank's chunk lists (a bank staged by an older bootbank): the
 * "booted bank" holds vmlinuz with its chunk 1 changed, initrd.img as it is, no notes.txt, no
 * bank.json nor manifest.chunks: each chunk at the same place of the file of the same name is
 * read and checked (chunk 1 too, then fetched); only vmlinuz chunk 1 and notes.txt are read
 * from the source.
 */
static void test_write_bank_delta(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF, booted = -EBADF;
	struct counting_source cs = { .fd = -EBADF };
	struct bk_stage_source src = { counting_read, &cs };
	struct bk_stage_stats stats = { 0 };
	struct bk_stage_write_options o = { .source = &src, .stats = &stats };
	struct bk_err err = { 0 };

	build(dir);
	b = open_bundle(dir, true);
	bfd = bank_fd(dir);
	assert_int_equal(mkdirat(dir->dfd, "booted", 0755), 0);
	booted = openat(dir->dfd, "booted", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	copy_file(dir->dfd, "k.bin", booted, "vmlinuz");
	flip(booted, "vmlinuz", BK_CHUNK_SIZE + 99);
	copy_file(dir->dfd, "i.bin", booted, "initrd.img");
	cs.fd = openat(dir->dfd, "b.bbi", O_RDONLY | O_CLOEXEC);
	o.reuse = true;
	o.reuse_dfd = booted;

	watch_booted_reads();
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), 0);
	wrap_reset();
	assert_string_equal(cs.log, "vmlinuz:1 notes.txt:0 ");
	assert_string_equal(br.log, "0 1 2 3 ");
	assert_int_equal(stats.fetched, BK_CHUNK_SIZE + 1);
	assert_int_equal(stats.reused, K_SIZE - BK_CHUNK_SIZE + 4096);
	assert_int_equal(stats.resumed, 0);
	expect_bank_is_sources(dir);

	/* Without reuse every chunk comes from the source. */
	cs.log[0] = '\0';
	cs.calls = 0;
	stats = (struct bk_stage_stats){ 0 };
	o.reuse = false;
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), 0);
	assert_int_equal(cs.calls, 4 + 1 + 1);
	assert_int_equal(stats.fetched, K_SIZE + 4096 + 1);
	assert_int_equal(stats.reused, 0);
	close(cs.fd);
}

static int no_checkpoint(void *userdata, size_t payload, uint64_t chunks, struct bk_err *err);

/* A file of n bytes: (dfd, from)[off, off + n) when from is not NULL, else pattern seed. */
static void append_part(int dfd, const char *to, const char *from, off_t off, size_t n,
			unsigned seed)
{
	_cleanup_free_ char *buf = malloc(n);
	int in, out;

	assert_non_null(buf);
	if (from) {
		in = openat(dfd, from, O_RDONLY | O_CLOEXEC);
		assert_true(in >= 0);
		assert_int_equal(pread(in, buf, n, off), (ssize_t) n);
		close(in);
	} else {
		fill(buf, n, seed);
	}
	out = openat(dfd, to, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	assert_true(out >= 0);
	assert_int_equal(write(out, buf, n), (ssize_t) n);
	close(out);
}

/*
 * Delta with the booted bank's chunk lists (a bank staged by this version: its manifest.chunks).
 * The booted bank is b.bbi staged; the new image b2.bbi has
 *   vmlinuz:    a new chunk 0, then the booted chunks 2 and 1 (swapped: each moved to another
 *               index), then the booted short chunk 3 at its place;
 *   initrd2.img: the booted initrd.img under another name (another payload);
 *   notes.txt:  as booted.
 * Only vmlinuz chunk 0 is fetched; booted vmlinuz chunk 0, which matches nothing, is never
 * read; every other chunk is read once from wherever the lists say.
 */
static const char spec2[] =
	"{ \"name\": \"acme-os\", \"version\": \"1.11.0\", \"build\": \"43\", "
	"\"compatible\": \"acme-x86_64\", \"security_epoch\": 2, \"payloads\": [ "
	"{ \"name\": \"vmlinuz\", \"type\": \"kernel\", \"source\": \"k2.bin\" }, "
	"{ \"name\": \"initrd2.img\", \"type\": \"initrd\", \"source\": \"i.bin\" }, "
	"{ \"name\": \"notes.txt\", \"type\": \"file\", \"source\": \"f.bin\" } ] }";

static void build_moved(struct bk_test_dir *dir, int *ret_booted)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	struct bk_stage_write_options o = { 0 };
	struct bk_err err = { 0 };

	build(dir);
	append_part(dir->dfd, "k2.bin", NULL, 0, BK_CHUNK_SIZE, 9);
	append_part(dir->dfd, "k2.bin", "k.bin", 2 * BK_CHUNK_SIZE, BK_CHUNK_SIZE, 0);
	append_part(dir->dfd, "k2.bin", "k.bin", BK_CHUNK_SIZE, BK_CHUNK_SIZE, 0);
	append_part(dir->dfd, "k2.bin", "k.bin", 3 * BK_CHUNK_SIZE, 17, 0);
	build_spec(dir, spec2, "b2.bbi");
	/* The booted bank: b.bbi staged by this version. */
	assert_int_equal(mkdirat(dir->dfd, "booted", 0755), 0);
	*ret_booted = openat(dir->dfd, "booted", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(*ret_booted >= 0);
	b = open_bundle(dir, true);
	assert_int_equal(bk_stage_write_bank(b, *ret_booted, &o, NULL, &err), 0);
}

static void expect_bank_is_moved(struct bk_test_dir *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && cmp -s k2.bin bank/vmlinuz && cmp -s i.bin bank/initrd2.img && "
		 "cmp -s f.bin bank/notes.txt",
		 dir->path);
	assert_int_equal(system(cmd), 0);
}

static void test_write_bank_delta_moved(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF, booted = -EBADF;
	struct counting_source cs = { .fd = -EBADF };
	struct bk_stage_source src = { counting_read, &cs };
	struct bk_stage_stats stats = { 0 };
	struct bk_stage_write_options o = { .source = &src, .stats = &stats };
	struct bk_err err = { 0 };

	build_moved(dir, &booted);
	b = open_bundle_named(dir, "b2.bbi", true);
	bfd = bank_fd(dir);
	cs.fd = openat(dir->dfd, "b2.bbi", O_RDONLY | O_CLOEXEC);
	o.reuse = true;
	o.reuse_dfd = booted;

	watch_booted_reads();
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), 0);
	wrap_reset();
	assert_string_equal(cs.log, "vmlinuz:0 ");
	/* New chunks 1, 2, 3 are booted chunks 2, 1, 3; booted chunk 0 is never read. */
	assert_string_equal(br.log, "2 1 3 ");
	assert_int_equal(stats.fetched, BK_CHUNK_SIZE);
	assert_int_equal(stats.reused, K_SIZE - BK_CHUNK_SIZE + 4096 + 1);
	assert_int_equal(stats.fetched + stats.reused, K_SIZE + 4096 + 1);
	assert_int_equal(stats.resumed, 0);
	expect_bank_is_moved(dir);
	close(cs.fd);
}

/*
 * The lists lie (booted vmlinuz changed behind them: they say its chunk 2 is new chunk 1, its
 * bytes are not): the chunk is read, does not check against the new list, and is fetched; no
 * byte of it reaches the bank. A damaged manifest.chunks: no lists, the same place only.
 */
static void test_write_bank_delta_lying_lists(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF, booted = -EBADF;
	struct counting_source cs = { .fd = -EBADF };
	struct bk_stage_source src = { counting_read, &cs };
	struct bk_stage_stats stats = { 0 };
	struct bk_stage_write_options o = { .source = &src, .stats = &stats };
	struct bk_err err = { 0 };

	build_moved(dir, &booted);
	flip(booted, "vmlinuz", 2 * BK_CHUNK_SIZE + 4242);
	b = open_bundle_named(dir, "b2.bbi", true);
	bfd = bank_fd(dir);
	cs.fd = openat(dir->dfd, "b2.bbi", O_RDONLY | O_CLOEXEC);
	o.reuse = true;
	o.reuse_dfd = booted;

	watch_booted_reads();
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), 0);
	wrap_reset();
	assert_string_equal(cs.log, "vmlinuz:0 vmlinuz:1 ");
	assert_string_equal(br.log, "2 1 3 ");
	assert_int_equal(stats.fetched, 2 * BK_CHUNK_SIZE);
	assert_int_equal(stats.reused, K_SIZE - 2 * BK_CHUNK_SIZE + 4096 + 1);
	expect_bank_is_moved(dir);

	/*
	 * manifest.chunks damaged (it no longer has its manifest's chunks_sha256): not used;
	 * the same place of the same name is read, found or not, as for an old bank.
	 */
	flip(booted, BK_BANK_CHUNKS_FILE, 40);
	{
		_cleanup_(bk_bank_chunks_freep) struct bk_bank_chunks *bc = NULL;

		assert_int_equal(bk_bank_chunks_read_at(booted, &bc, &err), -EUCLEAN);
		assert_non_null(strstr(err.msg, "'manifest.chunks': payload 'vmlinuz': chunk "
						"list SHA-256 mismatch"));
	}
	cs.log[0] = '\0';
	stats = (struct bk_stage_stats){ 0 };
	watch_booted_reads();
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), 0);
	wrap_reset();
	assert_string_equal(br.log, "0 1 2 3 ");
	/* Only chunk 3 (at its place) and notes.txt (same name) are the booted ones. */
	assert_string_equal(cs.log, "vmlinuz:0 vmlinuz:1 vmlinuz:2 initrd2.img:0 ");
	assert_int_equal(stats.reused, 17 + 1);
	expect_bank_is_moved(dir);
	close(cs.fd);
}

/* bk_bank_chunks_read_at(): what makes a bank's lists unusable. */
static void test_bank_chunks_read(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_close_ int booted = -EBADF;
	struct bk_bank_chunks *bc = NULL;
	struct bk_err err = { 0 };

	build_moved(dir, &booted);
	assert_int_equal(bk_bank_chunks_read_at(booted, &bc, &err), 0);
	assert_int_equal(bc->lists[0]->n_chunks, 4);
	assert_int_equal(bc->lists[1]->n_chunks, 1);
	assert_int_equal(bc->lists[2]->n_chunks, 1);
	bc = bk_bank_chunks_free(bc);
	/* One byte more, one byte less. */
	append_part(booted, BK_BANK_CHUNKS_FILE, NULL, 0, 1, 1);
	assert_int_equal(bk_bank_chunks_read_at(booted, &bc, &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, "'manifest.chunks' is larger than 192 bytes"));
	assert_int_equal(truncateat(booted, BK_BANK_CHUNKS_FILE, 191), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_bank_chunks_read_at(booted, &bc, &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, "'manifest.chunks' has 191 bytes, the lists 192"));
	/* None: a bank staged by an older bootbank. */
	assert_int_equal(unlinkat(booted, BK_BANK_CHUNKS_FILE, 0), 0);
	assert_int_equal(bk_bank_chunks_read_at(booted, &bc, &err), -ENOENT);
	/* No record: not a complete bank. */
	assert_int_equal(unlinkat(booted, BK_BANK_RECORD_FILE, 0), 0);
	assert_int_equal(bk_bank_chunks_read_at(booted, &bc, &err), -ENOENT);
	assert_null(bc);
}

/*
 * Resume and delta together: the interrupted run left the first two chunks of vmlinuz; they
 * are kept (resumed), the rest comes from the booted bank; nothing is fetched.
 */
static void test_write_bank_delta_resume(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF, booted = -EBADF;
	struct counting_source cs = { .fd = -EBADF };
	struct bk_stage_source src = { counting_read, &cs };
	struct bk_stage_resume resume = { .payload = 0, .chunks = 2 };
	struct bk_stage_stats stats = { 0 };
	struct bk_stage_write_options o = {
		.source = &src, .stats = &stats, .resume = &resume, .checkpoint = no_checkpoint
	};
	struct bk_err err = { 0 };

	build_moved(dir, &booted);
	b = open_bundle_named(dir, "b2.bbi", true);
	bfd = bank_fd(dir);
	cs.fd = openat(dir->dfd, "b2.bbi", O_RDONLY | O_CLOEXEC);
	append_part(bfd, ".partial.vmlinuz", NULL, 0, BK_CHUNK_SIZE, 9);
	copy_file(dir->dfd, "k2.bin", bfd, ".partial.vmlinuz");
	assert_int_equal(truncateat(bfd, ".partial.vmlinuz", 2 * BK_CHUNK_SIZE), 0);
	o.reuse = true;
	o.reuse_dfd = booted;

	watch_booted_reads();
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), 0);
	wrap_reset();
	assert_string_equal(cs.log, "");
	assert_string_equal(br.log, "1 3 ");
	assert_int_equal(stats.resumed, 2 * BK_CHUNK_SIZE);
	assert_int_equal(stats.reused, K_SIZE - 2 * BK_CHUNK_SIZE + 4096 + 1);
	assert_int_equal(stats.fetched, 0);
	expect_bank_is_moved(dir);
	close(cs.fd);
}

/*
 * Resume: the interrupted run left vmlinuz's first two chunks, the second one damaged: the
 * stage goes on from chunk 1 (chunk 0 checked again and kept). A failing source keeps the
 * partial file when the stage is resumable (checkpoint set).
 */
static int no_checkpoint(void *userdata, size_t payload, uint64_t chunks, struct bk_err *err)
{
	return 0;
}

static void test_write_bank_resume(void **state)
{
	struct bk_test_dir *dir = *state;
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int bfd = -EBADF;
	struct counting_source cs = { .fd = -EBADF, .fail_at = 3 };
	struct bk_stage_source src = { counting_read, &cs };
	struct bk_stage_resume resume = { .payload = 0, .chunks = 2 };
	struct bk_stage_stats stats = { 0 };
	struct bk_stage_write_options o = { .source = &src,
					    .stats = &stats,
					    .checkpoint = no_checkpoint };
	struct bk_err err = { 0 };

	build(dir);
	b = open_bundle(dir, true);
	bfd = bank_fd(dir);
	cs.fd = openat(dir->dfd, "b.bbi", O_RDONLY | O_CLOEXEC);

	/* Fails at the third chunk: the partial file stays (a resumable stage). */
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), -EIO);
	assert_non_null(strstr(err.msg, "connection reset"));
	assert_int_equal(faccessat(bfd, ".partial.vmlinuz", F_OK, 0), 0);

	/*
	 * What a run killed after its checkpoint at chunk 2 leaves (how much the failed run
	 * wrote depends on its threads), chunk 1 damaged since: resumed from chunk 1, chunk 0
	 * checked again and kept.
	 */
	copy_file(dir->dfd, "k.bin", bfd, ".partial.vmlinuz");
	assert_int_equal(truncateat(bfd, ".partial.vmlinuz", 2 * BK_CHUNK_SIZE), 0);
	flip(bfd, ".partial.vmlinuz", BK_CHUNK_SIZE + 5);
	cs.fail_at = 0;
	cs.calls = 0;
	cs.log[0] = '\0';
	o.resume = &resume;
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), 0);
	assert_string_equal(cs.log, "vmlinuz:1 vmlinuz:2 vmlinuz:3 initrd.img:0 notes.txt:0 ");
	assert_int_equal(stats.resumed, BK_CHUNK_SIZE);
	expect_bank_is_sources(dir);

	/* Everything complete already: a resume at payload 3 fetches nothing. */
	assert_int_equal(unlinkat(bfd, BK_BANK_RECORD_FILE, 0), 0);
	resume = (struct bk_stage_resume){ .payload = 3, .chunks = 0 };
	cs.calls = 0;
	stats = (struct bk_stage_stats){ 0 };
	assert_int_equal(bk_stage_write_bank(b, bfd, &o, NULL, &err), 0);
	assert_int_equal(cs.calls, 0);
	assert_int_equal(stats.resumed, K_SIZE + 4096 + 1);
	expect_bank_is_sources(dir);
	close(cs.fd);
}

static void test_resume_point(void **state)
{
	struct bk_stage_marker m = { .bank = BK_BANK_B, .payload = 2, .chunks = 40 };
	const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	struct bk_stage_resume r = { 0 };

	snprintf(m.url, sizeof(m.url), "https://h/x.bbi");
	snprintf(m.manifest_sha256, sizeof(m.manifest_sha256), "%s", hex);
	assert_true(bk_stage_resume_point(&m, "https://h/x.bbi", hex, BK_BANK_B, true, 3, &r));
	assert_int_equal(r.payload, 2);
	assert_int_equal(r.chunks, 40);
	/* Another URL, other signed bytes, another bank, a bank not empty, too few payloads. */
	r = (struct bk_stage_resume){ 0 };
	assert_false(bk_stage_resume_point(&m, "https://h/y.bbi", hex, BK_BANK_B, true, 3, &r));
	assert_false(
		bk_stage_resume_point(&m, "https://h/x.bbi",
				      "f0112233445566778899aabbccddeeff00112233445566778899aabb"
				      "ccddeeff",
				      BK_BANK_B, true, 3, &r));
	assert_false(bk_stage_resume_point(&m, "https://h/x.bbi", hex, BK_BANK_A, true, 3, &r));
	assert_false(bk_stage_resume_point(&m, "https://h/x.bbi", hex, BK_BANK_B, false, 3, &r));
	assert_false(bk_stage_resume_point(&m, "https://h/x.bbi", hex, BK_BANK_B, true, 1, &r));
	assert_int_equal(r.payload, 0);
	/* Every payload complete: payload == n_payloads. */
	assert_true(bk_stage_resume_point(&m, "https://h/x.bbi", hex, BK_BANK_B, true, 2, &r));
	/* A marker of a stage from a file never resumes. */
	m.url[0] = '\0';
	assert_false(bk_stage_resume_point(&m, "", hex, BK_BANK_B, true, 3, &r));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_marker_roundtrip, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_marker_corrupt, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test(test_policy),
		cmocka_unit_test_setup_teardown(test_space, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_corrupt_payload, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_never_writes_unverified,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_truncated, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_fs_errors, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_refusals, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_signature_from_memory,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_many_tiny_payloads,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_delta, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_delta_moved, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_delta_lying_lists,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_bank_chunks_read, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_delta_resume, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_write_bank_resume, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test(test_resume_point),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
