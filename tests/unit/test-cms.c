/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Detached CMS signatures against the test PKI (tests/pki/make-pki.sh), made once per run in
 * a mkdtemp() directory by the group setup. The runner starts this binary from the repository
 * root, so the script is found relative to the working directory.
 */
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "bk-test.h"

#include "bk-cms.h"

#define MAKE_PKI "tests/pki/make-pki.sh"

static char pki_dir[64];

static const char manifest[] = "{\"name\":\"bootbank-test\",\"version\":\"1.2.3\","
			       "\"payloads\":[{\"name\":\"rootfs\",\"size\":4096}]}\n";

/* Path of a file of the test PKI; eight rotating buffers so one call can use several. */
static const char *P(const char *name)
{
	static char buf[8][PATH_MAX];
	static unsigned i;
	char *b = buf[i++ % BK_ELEMENTSOF(buf)];

	snprintf(b, PATH_MAX, "%s/%s", pki_dir, name);
	return b;
}

static int run(const char *cmd)
{
	int r = system(cmd);

	return r == -1 ? -1 : WIFEXITED(r) ? WEXITSTATUS(r) : 128;
}

static int group_setup(void **state)
{
	char cmd[256];

	if (access(MAKE_PKI, X_OK) != 0) {
		fprintf(stderr, "# cannot find '%s': run from the repository root\n", MAKE_PKI);
		return -1;
	}
	snprintf(pki_dir, sizeof(pki_dir), "/tmp/bk-cms-XXXXXX");
	if (!mkdtemp(pki_dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "%s '%s'", MAKE_PKI, pki_dir);
	if (run(cmd) != 0) {
		fprintf(stderr, "# '%s' failed\n", cmd);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki_dir);
	return run(cmd) == 0 ? 0 : -1;
}

/*
 * Sign manifest-like data as who ("signer" -> signer.key/signer.crt), embedding the
 * certificates of inter (NULL-terminated, may be NULL).
 */
static void sign_as(const char *who, const char *const *inter, const void *data, size_t len,
		    uint8_t **der, size_t *der_len)
{
	struct bk_err err = { 0 };
	char key[64], crt[64];

	snprintf(key, sizeof(key), "%s.key", who);
	snprintf(crt, sizeof(crt), "%s.crt", who);
	assert_int_equal(bk_cms_sign(data, len, P(key), P(crt), inter, der, der_len, &err), 0);
	assert_false(bk_err_is_set(&err));
	assert_non_null(*der);
	assert_true(*der_len > 100);
}

static const char *const *with_intermediate(void)
{
	static const char *inter[2];

	inter[0] = P("intermediate.crt");
	inter[1] = NULL;
	return inter;
}

/* Load the keyring (asserting success) and verify; the keyring is freed again. */
static int verify_with(const char *keyring, const void *data, size_t len, const uint8_t *der,
		       size_t der_len, unsigned flags, char **signer, struct bk_err *err)
{
	struct bk_err lerr = { 0 };
	struct bk_keyring *k = NULL;
	int r;

	assert_int_equal(bk_keyring_load(P(keyring), &k, &lerr), 0);
	assert_non_null(k);
	r = bk_cms_verify(data, len, der, der_len, k, flags, signer, err);
	assert_null(bk_keyring_free(k));
	/* The library never leaves libcrypto errors behind for the next caller. */
	assert_int_equal(ERR_peek_error(), 0);
	return r;
}

static void expect_msg(const struct bk_err *err, const char *needle)
{
	if (!strstr(err->msg, needle))
		fail_msg("message '%s' lacks '%s'", err->msg, needle);
}

static void test_cms_sign_verify_pem_keyring(void **state)
{
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;
	char *signer = NULL;

	sign_as("signer", with_intermediate(), manifest, strlen(manifest), &der, &der_len);
	assert_int_equal(verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0,
				     &signer, &err),
			 0);
	assert_false(bk_err_is_set(&err));
	assert_string_equal(signer, "CN=bootbank test signer,O=bootbank test");
	free(signer);

	/* ret_signer is optional. */
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		0);
	free(der);
}

static void test_cms_sign_verify_hashed_dir(void **state)
{
	char cmd[PATH_MAX * 2 + 16];
	struct bk_keyring *k = NULL;
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;
	char *signer = NULL;

	sign_as("signer", with_intermediate(), manifest, strlen(manifest), &der, &der_len);
	assert_int_equal(verify_with("keyring.d", manifest, strlen(manifest), der, der_len, 0,
				     &signer, &err),
			 0);
	assert_string_equal(signer, "CN=bootbank test signer,O=bootbank test");
	free(signer);

	/* The certificates are read at load time: removing the directory changes nothing. */
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", P("keyring.d"), P("snapshot.d"));
	assert_int_equal(run(cmd), 0);
	assert_int_equal(bk_keyring_load(P("snapshot.d"), &k, &err), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", P("snapshot.d"));
	assert_int_equal(run(cmd), 0);
	assert_int_equal(bk_cms_verify(manifest, strlen(manifest), der, der_len, k, 0, NULL, &err),
			 0);
	assert_null(bk_keyring_free(k));
	free(der);
}

static void test_cms_verify_empty_data(void **state)
{
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;

	sign_as("signer", with_intermediate(), NULL, 0, &der, &der_len);
	assert_int_equal(verify_with("keyring.pem", NULL, 0, der, der_len, 0, NULL, &err), 0);
	assert_int_equal(verify_with("keyring.pem", "x", 1, der, der_len, 0, NULL, &err), -EBADMSG);
	free(der);
}

static void test_cms_verify_without_intermediate_rejected(void **state)
{
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;
	char untouched[] = "untouched";
	char *signer = untouched;

	sign_as("signer", NULL, manifest, strlen(manifest), &der, &der_len);
	assert_int_equal(verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0,
				     &signer, &err),
			 -EKEYREJECTED);
	assert_int_equal(err.code, -EKEYREJECTED);
	expect_msg(&err, "signer 'CN=bootbank test signer,O=bootbank test' is not trusted");
	expect_msg(&err, "unable to get local issuer certificate");
	/* Outputs are written only on success. */
	assert_ptr_equal(signer, untouched);
	free(der);
}

static void test_cms_verify_flipped_data_byte(void **state)
{
	char data[sizeof(manifest)];
	size_t len = strlen(manifest);
	uint8_t *der = NULL;
	size_t der_len = 0;
	size_t pos[] = { 0, len / 2, len - 1 };

	sign_as("signer", with_intermediate(), manifest, len, &der, &der_len);
	for (size_t i = 0; i < BK_ELEMENTSOF(pos); i++) {
		struct bk_err err = { 0 };

		memcpy(data, manifest, sizeof(data));
		data[pos[i]] ^= 0x01;
		assert_int_equal(verify_with("keyring.pem", data, len, der, der_len, 0, NULL, &err),
				 -EBADMSG);
		expect_msg(&err, "signature does not verify");
	}
	/* One byte more or less is a different message too. */
	struct bk_err err = { 0 };
	assert_int_equal(verify_with("keyring.pem", manifest, len - 1, der, der_len, 0, NULL, &err),
			 -EBADMSG);
	free(der);
}

static void test_cms_verify_other_data(void **state)
{
	static const char other[] = "{\"name\":\"evil\",\"version\":\"9.9.9\"}\n";
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;

	/* A valid signature by a trusted signer, but over other bytes. */
	sign_as("signer", with_intermediate(), other, strlen(other), &der, &der_len);
	assert_int_equal(
		verify_with("keyring.pem", other, strlen(other), der, der_len, 0, NULL, &err), 0);
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		-EBADMSG);
	expect_msg(&err, "signature does not verify");
	free(der);
}

/*
 * A flipped bit anywhere in the signature is refused (bit 0 of every byte, and bit 7 too when
 * n_masks is 2): bytes of the structure, signed attributes, algorithms or signature value give
 * -EBADMSG, bytes inside an embedded certificate break that certificate's own signature and
 * give -EKEYREJECTED. Then every truncation, and a trailing byte.
 */
static void flip_every_bit(const char *who, const char *subject, size_t n_masks)
{
	static const uint8_t masks[] = { 0x01, 0x80 };
	size_t len = strlen(manifest);
	struct bk_keyring *k = NULL;
	struct bk_err err = { 0 };
	uint8_t *der = NULL, *bad;
	size_t der_len = 0;
	unsigned n_rejected = 0, n_badmsg = 0;
	char *signer = NULL;

	sign_as(who, with_intermediate(), manifest, len, &der, &der_len);
	assert_int_equal(bk_keyring_load(P("keyring.pem"), &k, &err), 0);
	assert_int_equal(bk_cms_verify(manifest, len, der, der_len, k, 0, &signer, &err), 0);
	assert_string_equal(signer, subject);
	free(signer);
	bad = malloc(der_len + 1);
	assert_non_null(bad);

	for (size_t i = 0; i < der_len; i++) {
		for (size_t m = 0; m < n_masks && m < BK_ELEMENTSOF(masks); m++) {
			int r;

			bk_err_clear(&err);
			memcpy(bad, der, der_len);
			bad[i] ^= masks[m];
			r = bk_cms_verify(manifest, len, bad, der_len, k, 0, NULL, &err);
			if (r == -EBADMSG)
				n_badmsg++;
			else if (r == -EKEYREJECTED)
				n_rejected++;
			else
				fail_msg("%s: bit 0x%02x at offset %zu of %zu: got %d '%s'", who,
					 masks[m], i, der_len, r, err.msg);
			assert_int_equal(err.code, r);
			assert_int_equal(ERR_peek_error(), 0);
		}
	}
	assert_true(n_badmsg > 0);
	assert_true(n_rejected > 0);

	/* The last byte is inside the signature value, the first is the outer SEQUENCE tag. */
	memcpy(bad, der, der_len);
	bad[der_len - 1] ^= 0x01;
	bk_err_clear(&err);
	assert_int_equal(bk_cms_verify(manifest, len, bad, der_len, k, 0, NULL, &err), -EBADMSG);
	expect_msg(&err, "signature does not verify");
	memcpy(bad, der, der_len);
	bad[0] ^= 0x01;
	bk_err_clear(&err);
	assert_int_equal(bk_cms_verify(manifest, len, bad, der_len, k, 0, NULL, &err), -EBADMSG);
	expect_msg(&err, "signature is not a DER CMS structure");

	for (size_t cut = 0; cut < der_len; cut++) {
		bk_err_clear(&err);
		assert_int_equal(bk_cms_verify(manifest, len, der, cut, k, 0, NULL, &err),
				 -EBADMSG);
		expect_msg(&err, "signature");
	}
	memcpy(bad, der, der_len);
	bad[der_len] = 0;
	bk_err_clear(&err);
	assert_int_equal(bk_cms_verify(manifest, len, bad, der_len + 1, k, 0, NULL, &err),
			 -EBADMSG);
	expect_msg(&err, "signature has 1 trailing bytes");

	assert_null(bk_keyring_free(k));
	free(bad);
	free(der);
}

static void test_cms_verify_flipped_der(void **state)
{
	flip_every_bit("signer", "CN=bootbank test signer,O=bootbank test", 2);
}

static void test_cms_verify_flipped_der_rsa(void **state)
{
	/* Bit 0 only: the structure is the same, only the key type differs (and time counts). */
	flip_every_bit("rsa-signer", "CN=bootbank test RSA signer,O=bootbank test", 1);
}

static void test_cms_verify_expired(void **state)
{
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;
	char *signer = NULL;

	sign_as("expired", with_intermediate(), manifest, strlen(manifest), &der, &der_len);
	assert_int_equal(verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0,
				     &signer, &err),
			 -EKEYEXPIRED);
	expect_msg(&err, "signer 'CN=bootbank test expired signer,O=bootbank test'");
	expect_msg(&err, "certificate has expired");
	assert_null(signer);

	bk_err_clear(&err);
	assert_int_equal(verify_with("keyring.pem", manifest, strlen(manifest), der, der_len,
				     BK_CMS_NO_CHECK_TIME, &signer, &err),
			 0);
	assert_string_equal(signer, "CN=bootbank test expired signer,O=bootbank test");
	free(signer);

	/* Expired and without its issuer: reported as untrusted. */
	free(der);
	sign_as("expired", NULL, manifest, strlen(manifest), &der, &der_len);
	bk_err_clear(&err);
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		-EKEYREJECTED);
	expect_msg(&err, "unable to get local issuer certificate");

	/* NO_CHECK_TIME does not make a bad signature good. */
	assert_int_equal(
		verify_with("keyring.pem", "x", 1, der, der_len, BK_CMS_NO_CHECK_TIME, NULL, &err),
		-EBADMSG);
	free(der);
}

static void test_cms_verify_not_yet_valid(void **state)
{
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;

	sign_as("future", with_intermediate(), manifest, strlen(manifest), &der, &der_len);
	assert_int_equal(
		verify_with("keyring.d", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		-EKEYEXPIRED);
	expect_msg(&err, "certificate is not yet valid");
	assert_int_equal(verify_with("keyring.d", manifest, strlen(manifest), der, der_len,
				     BK_CMS_NO_CHECK_TIME, NULL, &err),
			 0);
	free(der);
}

static void test_cms_verify_eku(void **state)
{
	const char *who[] = { "noeku", "wrongeku" };

	for (size_t i = 0; i < BK_ELEMENTSOF(who); i++) {
		struct bk_err err = { 0 };
		uint8_t *der = NULL;
		size_t der_len = 0;

		sign_as(who[i], with_intermediate(), manifest, strlen(manifest), &der, &der_len);
		assert_int_equal(verify_with("keyring.pem", manifest, strlen(manifest), der,
					     der_len, BK_CMS_NO_CHECK_TIME, NULL, &err),
				 -EKEYREJECTED);
		expect_msg(&err, "lacks the codeSigning extended key usage");
		expect_msg(&err, "signer 'CN=bootbank test");
		free(der);
	}
}

static void test_cms_verify_other_ca(void **state)
{
	const char *const other_chain[] = { P("other-ca.crt"), NULL };
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;
	char cmd[PATH_MAX * 3];

	/* Embedding the foreign root does not make it trusted. */
	sign_as("other-signer", other_chain, manifest, strlen(manifest), &der, &der_len);
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		-EKEYREJECTED);
	expect_msg(&err, "signer 'CN=bootbank other signer,O=bootbank test' is not trusted");
	bk_err_clear(&err);
	assert_int_equal(verify_with("keyring.d", manifest, strlen(manifest), der, der_len,
				     BK_CMS_NO_CHECK_TIME, NULL, &err),
			 -EKEYREJECTED);

	/* A keyring of several CA certificates trusts each of them. */
	snprintf(cmd, sizeof(cmd), "cat '%s' '%s' > '%s'", P("other-ca.crt"), P("root-ca.crt"),
		 P("two-cas.pem"));
	assert_int_equal(run(cmd), 0);
	assert_int_equal(
		verify_with("two-cas.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		0);
	free(der);
	sign_as("signer", with_intermediate(), manifest, strlen(manifest), &der, &der_len);
	assert_int_equal(
		verify_with("two-cas.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		0);
	free(der);

	/* The intermediate alone is not a trust anchor (no partial chains). */
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", P("intermediate.crt"),
		 P("keyring-intermediate.pem"));
	assert_int_equal(run(cmd), 0);
	sign_as("signer", with_intermediate(), manifest, strlen(manifest), &der, &der_len);
	bk_err_clear(&err);
	assert_int_equal(verify_with("keyring-intermediate.pem", manifest, strlen(manifest), der,
				     der_len, 0, NULL, &err),
			 -EKEYREJECTED);
	free(der);
}

static void test_keyring_load_errors(void **state)
{
	struct bk_keyring *k = NULL;
	struct bk_err err = { 0 };
	char cmd[PATH_MAX * 3];

	assert_int_equal(bk_keyring_load(P("no-such-keyring.pem"), &k, &err), -ENOENT);
	assert_null(k);
	expect_msg(&err, "keyring '");
	expect_msg(&err, "no-such-keyring.pem' not found");

	bk_err_clear(&err);
	assert_int_equal(bk_keyring_load(P("garbage.pem"), &k, &err), -ENOEXEC);
	assert_null(k);
	expect_msg(&err, "garbage.pem' holds no PEM certificate");

	/* A key is not a certificate. */
	bk_err_clear(&err);
	assert_int_equal(bk_keyring_load(P("root-ca.key"), &k, &err), -ENOEXEC);
	assert_null(k);

	/* A certificate whose base64 is cut short. */
	snprintf(cmd, sizeof(cmd),
		 "head -c 300 '%s' > '%s'; echo '-----END CERTIFICATE-----' >> '%s'",
		 P("root-ca.crt"), P("truncated.pem"), P("truncated.pem"));
	assert_int_equal(run(cmd), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_keyring_load(P("truncated.pem"), &k, &err), -ENOEXEC);
	expect_msg(&err, "cannot parse certificate 1 of keyring '");
	assert_int_equal(ERR_peek_error(), 0);

	/* A good certificate followed by a broken one. */
	snprintf(cmd, sizeof(cmd), "cat '%s' '%s' > '%s'", P("root-ca.crt"), P("truncated.pem"),
		 P("good-then-bad.pem"));
	assert_int_equal(run(cmd), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_keyring_load(P("good-then-bad.pem"), &k, &err), -ENOEXEC);
	expect_msg(&err, "cannot parse certificate 2 of keyring '");

	/* A FIFO does not hang the load. */
	assert_int_equal(mkfifo(P("fifo.pem"), 0600), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_keyring_load(P("fifo.pem"), &k, &err), -ENOEXEC);
	expect_msg(&err, "fifo.pem' is not a regular file");

	/* An empty directory, one without hash names, one with garbage behind a hash name. */
	assert_int_equal(mkdir(P("empty.d"), 0755), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_keyring_load(P("empty.d"), &k, &err), -ENOEXEC);
	expect_msg(&err, "empty.d' holds no hashed certificate (run 'openssl rehash')");

	snprintf(cmd, sizeof(cmd), "mkdir '%s' && cp '%s' '%s/root-ca.pem'", P("unhashed.d"),
		 P("root-ca.crt"), P("unhashed.d"));
	assert_int_equal(run(cmd), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_keyring_load(P("unhashed.d"), &k, &err), -ENOEXEC);
	expect_msg(&err, "holds no hashed certificate");

	snprintf(cmd, sizeof(cmd), "mkdir '%s' && ln -s '%s' '%s/0123abcd.0'", P("garbage.d"),
		 P("garbage.pem"), P("garbage.d"));
	assert_int_equal(run(cmd), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_keyring_load(P("garbage.d"), &k, &err), -ENOEXEC);
	expect_msg(&err, "garbage.d/0123abcd.0' holds no PEM certificate");

	/* A certificate under a name that is not its subject hash would never be found. */
	snprintf(cmd, sizeof(cmd), "mkdir '%s' && cp '%s' '%s/0123abcd.0'", P("misnamed.d"),
		 P("root-ca.crt"), P("misnamed.d"));
	assert_int_equal(run(cmd), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_keyring_load(P("misnamed.d"), &k, &err), -ENOEXEC);
	expect_msg(&err, "misnamed.d/0123abcd.0' ('CN=bootbank test root CA,O=bootbank test') is "
			 "not named after its subject hash");
	assert_null(k);
}

static void test_cms_sign_errors(void **state)
{
	char inter[PATH_MAX], nosuch[PATH_MAX], cmd[PATH_MAX + 64];
	const char *const missing[] = { inter, nosuch, NULL };
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;

	snprintf(inter, sizeof(inter), "%s", P("intermediate.crt"));
	snprintf(nosuch, sizeof(nosuch), "%s", P("no-such.crt"));
	assert_int_equal(bk_cms_sign(manifest, 10, P("no-such.key"), P("signer.crt"), NULL, &der,
				     &der_len, &err),
			 -ENOENT);
	expect_msg(&err, "cannot open signing key '");

	bk_err_clear(&err);
	assert_int_equal(bk_cms_sign(manifest, 10, P("signer.key"), P("garbage.pem"), NULL, &der,
				     &der_len, &err),
			 -ENOEXEC);
	expect_msg(&err, "cannot read signing certificate");

	bk_err_clear(&err);
	assert_int_equal(bk_cms_sign(manifest, 10, P("signer.crt"), P("signer.crt"), NULL, &der,
				     &der_len, &err),
			 -ENOEXEC);
	expect_msg(&err, "cannot read signing key");

	bk_err_clear(&err);
	assert_int_equal(bk_cms_sign(manifest, 10, P("noeku.key"), P("signer.crt"), NULL, &der,
				     &der_len, &err),
			 -EKEYREJECTED);
	expect_msg(&err, "noeku.key' does not match certificate '");

	bk_err_clear(&err);
	assert_int_equal(bk_cms_sign(manifest, 10, P("signer.key"), P("signer.crt"), missing, &der,
				     &der_len, &err),
			 -ENOENT);
	expect_msg(&err, "cannot open intermediate certificate '");
	expect_msg(&err, "no-such.crt'");

	/* Ed25519 would need SHA-512 in CMS: refused up front with a clear message. */
	snprintf(cmd, sizeof(cmd), "openssl genpkey -algorithm ED25519 -out '%s'",
		 P("ed25519.key"));
	assert_int_equal(run(cmd), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_cms_sign(manifest, 10, P("ed25519.key"), P("signer.crt"), NULL, &der,
				     &der_len, &err),
			 -EOPNOTSUPP);
	expect_msg(&err, "ed25519.key' is of type 'ED25519', expected an EC or RSA key");

	assert_null(der);
	assert_int_equal(der_len, 0);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_cms_limits_and_flags(void **state)
{
	size_t big_len = (size_t) BK_CMS_MAX_DATA + 1;
	struct bk_keyring *k = NULL;
	struct bk_err err = { 0 };
	uint8_t *der = NULL, *huge;
	size_t der_len = 0;
	char *big;

	big = calloc(1, big_len);
	assert_non_null(big);
	assert_int_equal(bk_cms_sign(big, big_len, P("signer.key"), P("signer.crt"), NULL, &der,
				     &der_len, &err),
			 -EFBIG);
	expect_msg(&err, "too large");

	sign_as("signer", with_intermediate(), manifest, strlen(manifest), &der, &der_len);
	assert_int_equal(bk_keyring_load(P("keyring.pem"), &k, &err), 0);

	bk_err_clear(&err);
	assert_int_equal(bk_cms_verify(big, big_len, der, der_len, k, 0, NULL, &err), -EFBIG);
	free(big);

	huge = calloc(1, BK_CMS_MAX_DER + 1);
	assert_non_null(huge);
	memcpy(huge, der, der_len);
	bk_err_clear(&err);
	assert_int_equal(bk_cms_verify(manifest, strlen(manifest), huge, BK_CMS_MAX_DER + 1, k, 0,
				       NULL, &err),
			 -EBADMSG);
	expect_msg(&err, "signature is too large");
	free(huge);

	bk_err_clear(&err);
	assert_int_equal(
		bk_cms_verify(manifest, strlen(manifest), der, der_len, k, 1u << 7, NULL, &err),
		-EINVAL);
	bk_err_clear(&err);
	assert_int_equal(bk_cms_verify(manifest, strlen(manifest), der, 0, k, 0, NULL, &err),
			 -EBADMSG);
	expect_msg(&err, "signature is empty");

	/* err is optional. */
	assert_int_equal(bk_cms_verify(manifest, strlen(manifest), der, der_len, k, 0, NULL, NULL),
			 0);
	assert_int_equal(bk_cms_verify("y", 1, der, der_len, k, 0, NULL, NULL), -EBADMSG);
	assert_null(bk_keyring_free(k));
	assert_null(bk_keyring_free(NULL));
	free(der);
}

/* DER of a CMS built directly with libcrypto (shapes bk_cms_sign never makes). */
static void raw_cms(const char *const *who, size_t n_who, unsigned flags, int signed_type,
		    uint8_t **ret, size_t *ret_len)
{
	BIO *in = BIO_new_mem_buf(manifest, (int) strlen(manifest));
	CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL, flags | CMS_PARTIAL);
	unsigned char *p;
	int n;

	assert_non_null(in);
	assert_non_null(cms);
	for (size_t i = 0; i < n_who; i++) {
		char key[64], crt[64];
		BIO *kb, *cb;
		EVP_PKEY *pk;
		X509 *x;

		snprintf(key, sizeof(key), "%s.key", who[i]);
		snprintf(crt, sizeof(crt), "%s.crt", who[i]);
		kb = BIO_new_file(P(key), "r");
		cb = BIO_new_file(P(crt), "r");
		pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
		x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
		assert_non_null(pk);
		assert_non_null(x);
		assert_non_null(CMS_add1_signer(cms, x, pk, EVP_sha256(), flags));
		EVP_PKEY_free(pk);
		X509_free(x);
		BIO_free(kb);
		BIO_free(cb);
	}
	if (!(flags & CMS_NOCERTS)) {
		BIO *ib = BIO_new_file(P("intermediate.crt"), "r");
		X509 *inter = PEM_read_bio_X509(ib, NULL, NULL, NULL);

		assert_non_null(inter);
		assert_int_equal(CMS_add1_cert(cms, inter), 1);
		X509_free(inter);
		BIO_free(ib);
	}
	/* Sign for another content type, then claim plain data in the unsigned field. */
	if (signed_type != 0)
		assert_int_equal(CMS_set1_eContentType(cms, OBJ_nid2obj(signed_type)), 1);
	assert_int_equal(CMS_final(cms, in, NULL, flags), 1);
	if (signed_type != 0)
		assert_int_equal(CMS_set1_eContentType(cms, OBJ_nid2obj(NID_pkcs7_data)), 1);
	n = i2d_CMS_ContentInfo(cms, NULL);
	assert_true(n > 0);
	*ret = malloc((size_t) n);
	assert_non_null(*ret);
	p = *ret;
	assert_int_equal(i2d_CMS_ContentInfo(cms, &p), n);
	*ret_len = (size_t) n;
	CMS_ContentInfo_free(cms);
	BIO_free(in);
}

static void test_cms_verify_shape(void **state)
{
	const char *two[] = { "signer", "other-signer" };
	struct bk_err err = { 0 };
	char cmd[PATH_MAX * 3];
	uint8_t *der = NULL, buf[8192];
	size_t der_len = 0, n;
	FILE *f;

	/* Two signers, even when one of them would verify: exactly one is required. */
	raw_cms(two, 2, CMS_DETACHED | CMS_BINARY, 0, &der, &der_len);
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		-EBADMSG);
	expect_msg(&err, "signature has 2 signers, expected exactly one");
	free(der);

	/* No signer at all: a "certs-only" signed-data (as openssl crl2pkcs7 makes them). */
	bk_err_clear(&err);
	snprintf(cmd, sizeof(cmd), "openssl crl2pkcs7 -nocrl -certfile '%s' -outform DER -out '%s'",
		 P("signer.crt"), P("certs-only.p7"));
	assert_int_equal(run(cmd), 0);
	f = fopen(P("certs-only.p7"), "re");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_true(n > 0 && n < sizeof(buf));
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), buf, n, 0, NULL, &err),
		-EBADMSG);
	expect_msg(&err, "signature has 0 signers");

	/* Signer named by subject key identifier (CMS versions 3) verifies too. */
	bk_err_clear(&err);
	raw_cms(two, 1, CMS_DETACHED | CMS_BINARY | CMS_USE_KEYID, 0, &der, &der_len);
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		0);
	free(der);

	/* The signer's certificate must be embedded. */
	bk_err_clear(&err);
	raw_cms(two, 1, CMS_DETACHED | CMS_BINARY | CMS_NOCERTS, 0, &der, &der_len);
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		-EBADMSG);
	expect_msg(&err, "signature does not verify");
	expect_msg(&err, "signer certificate not found");
	free(der);

	/*
	 * A signature made for another content type (a time-stamp token's, here) whose unsigned
	 * eContentType was changed to plain data: the signed content-type attribute tells.
	 */
	bk_err_clear(&err);
	raw_cms(two, 1, CMS_DETACHED | CMS_BINARY, NID_id_smime_ct_TSTInfo, &der, &der_len);
	/*
	 * OpenSSL wrote SignedData version 3 (RFC 5652: content other than data), which the
	 * attacker sets back to 1 as well. Offset 25: after the 4-byte headers of ContentInfo,
	 * [0] and SignedData and the 11-byte contentType OID, INTEGER 02 01 <version>.
	 */
	assert_true(der_len > 256 && der[0] == 0x30 && der[1] == 0x82);
	assert_true(der[23] == 0x02 && der[24] == 0x01 && der[25] == 3);
	der[25] = 1;
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		-EBADMSG);
	expect_msg(&err, "signature is not over plain data (signed content type)");
	free(der);

	/* Content embedded instead of detached. */
	bk_err_clear(&err);
	raw_cms(two, 1, CMS_BINARY, 0, &der, &der_len);
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), der, der_len, 0, NULL, &err),
		-EBADMSG);
	expect_msg(&err, "not detached");
	free(der);
}

/* Sign manifest.json with the openssl command line as docs/signing.md shows it. */
static size_t cli_sign(const char *who, const char *extra, uint8_t *buf, size_t size)
{
	char cmd[PATH_MAX * 6], key[64], crt[64];
	FILE *f;
	size_t n;

	snprintf(key, sizeof(key), "%s.key", who);
	snprintf(crt, sizeof(crt), "%s.crt", who);
	snprintf(cmd, sizeof(cmd),
		 "openssl cms -sign -binary %s -in '%s' -signer '%s' -inkey '%s' "
		 "-certfile '%s' -outform DER -out '%s'",
		 extra, P("manifest.json"), P(crt), P(key), P("intermediate.crt"),
		 P("manifest.sig"));
	assert_int_equal(run(cmd), 0);
	f = fopen(P("manifest.sig"), "re");
	assert_non_null(f);
	n = fread(buf, 1, size, f);
	fclose(f);
	assert_true(n > 0 && n < size);
	return n;
}

/* Interoperability with the openssl command line, both ways. */
static void test_cms_openssl_cli_interop(void **state)
{
	static const struct {
		const char *who, *extra, *subject;
	} ok[] = {
		{ "signer", "-md sha256", "CN=bootbank test signer,O=bootbank test" },
		{ "signer", "-md sha384 -noattr", "CN=bootbank test signer,O=bootbank test" },
		{ "rsa-signer", "-md sha256", "CN=bootbank test RSA signer,O=bootbank test" },
		{ "rsa-signer", "-md sha512 -keyid",
		  "CN=bootbank test RSA signer,O=bootbank test" },
	};
	struct bk_err err = { 0 };
	uint8_t *der = NULL;
	size_t der_len = 0;
	char cmd[PATH_MAX * 6], *signer = NULL;
	uint8_t buf[8192];
	FILE *f;
	size_t n;

	f = fopen(P("manifest.json"), "we");
	assert_non_null(f);
	assert_int_equal(fwrite(manifest, 1, strlen(manifest), f), strlen(manifest));
	assert_int_equal(fclose(f), 0);

	/* openssl signs, we verify. */
	for (size_t i = 0; i < BK_ELEMENTSOF(ok); i++) {
		n = cli_sign(ok[i].who, ok[i].extra, buf, sizeof(buf));
		bk_err_clear(&err);
		if (verify_with("keyring.pem", manifest, strlen(manifest), buf, n, 0, &signer,
				&err) != 0)
			fail_msg("%s %s: %s", ok[i].who, ok[i].extra, err.msg);
		assert_string_equal(signer, ok[i].subject);
		free(signer);
		signer = NULL;
		assert_int_equal(verify_with("keyring.pem", "x", 1, buf, n, 0, NULL, &err),
				 -EBADMSG);
	}

	/* SHA-1 is refused, whatever the key. */
	n = cli_sign("rsa-signer", "-md sha1", buf, sizeof(buf));
	bk_err_clear(&err);
	assert_int_equal(
		verify_with("keyring.pem", manifest, strlen(manifest), buf, n, 0, NULL, &err),
		-EBADMSG);
	expect_msg(&err, "signature uses digest 'SHA1', expected SHA-256, SHA-384 or SHA-512");

	/* We sign, openssl verifies (purpose any: OpenSSL 3.0 has no codeSigning purpose). */
	sign_as("signer", with_intermediate(), manifest, strlen(manifest), &der, &der_len);
	f = fopen(P("manifest.bk.sig"), "we");
	assert_non_null(f);
	assert_int_equal(fwrite(der, 1, der_len, f), der_len);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd),
		 "openssl cms -verify -binary -purpose any -inform DER -in '%s' -content '%s' "
		 "-CAfile '%s' -out /dev/null 2>/dev/null",
		 P("manifest.bk.sig"), P("manifest.json"), P("keyring.pem"));
	assert_int_equal(run(cmd), 0);
	/* The same command fails for the other-CA keyring: the check above can fail. */
	snprintf(cmd, sizeof(cmd),
		 "openssl cms -verify -binary -purpose any -inform DER -in '%s' -content '%s' "
		 "-CAfile '%s' -out /dev/null 2>/dev/null",
		 P("manifest.bk.sig"), P("manifest.json"), P("other-ca.crt"));
	assert_int_not_equal(run(cmd), 0);
	free(der);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cms_sign_verify_pem_keyring),
		cmocka_unit_test(test_cms_sign_verify_hashed_dir),
		cmocka_unit_test(test_cms_verify_empty_data),
		cmocka_unit_test(test_cms_verify_without_intermediate_rejected),
		cmocka_unit_test(test_cms_verify_flipped_data_byte),
		cmocka_unit_test(test_cms_verify_other_data),
		cmocka_unit_test(test_cms_verify_flipped_der),
		cmocka_unit_test(test_cms_verify_flipped_der_rsa),
		cmocka_unit_test(test_cms_verify_expired),
		cmocka_unit_test(test_cms_verify_not_yet_valid),
		cmocka_unit_test(test_cms_verify_eku),
		cmocka_unit_test(test_cms_verify_other_ca),
		cmocka_unit_test(test_keyring_load_errors),
		cmocka_unit_test(test_cms_sign_errors),
		cmocka_unit_test(test_cms_limits_and_flags),
		cmocka_unit_test(test_cms_verify_shape),
		cmocka_unit_test(test_cms_openssl_cli_interop),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
