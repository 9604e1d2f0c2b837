/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "bk-cms.h"
#include "bk-log.h"

/* Limits on keyring input: a keyring is a handful of CA certificates. */
#define PEM_FILE_MAX	 (4 * 1024 * 1024)
#define KEYRING_CERT_MAX 4096

BK_DEFINE_CLEANUP(BIO *, BIO_free_all)
BK_DEFINE_CLEANUP(CMS_ContentInfo *, CMS_ContentInfo_free)
BK_DEFINE_CLEANUP(DIR *, closedir)
BK_DEFINE_CLEANUP(EVP_PKEY *, EVP_PKEY_free)
BK_DEFINE_CLEANUP(X509 *, X509_free)
BK_DEFINE_CLEANUP(X509_STORE *, X509_STORE_free)
BK_DEFINE_CLEANUP(X509_STORE_CTX *, X509_STORE_CTX_free)

/*
 * A stack that owns its certificates, and one that only borrows them (CMS_get0_signers).
 * STACK_OF(X509) is spelled out as the struct it expands to, which clang-format can lay out.
 */
static inline void x509_stack_pop_freep(struct stack_st_X509 **p)
{
	if (*p)
		sk_X509_pop_free(*p, X509_free);
}

static inline void x509_stack_freep(struct stack_st_X509 **p)
{
	if (*p)
		sk_X509_free(*p);
}

struct bk_keyring {
	X509_STORE *store;
	unsigned n_certs;
};

/*
 * Record r with "<message>: <OpenSSL's newest error>" and empty libcrypto's error queue (it
 * is per thread and would otherwise leak into the next caller's messages).
 */
_printf_(3, 4) static int ossl_err(struct bk_err *err, int r, const char *fmt, ...)
{
	unsigned long e = ERR_peek_last_error();
	char what[sizeof(err->msg)], buf[256];
	va_list ap;

	va_start(ap, fmt);
	(void) vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "unknown libcrypto error");
	ERR_clear_error();
	return bk_err_set(err, r, "%s: %s", what, buf);
}

/* The name as one RFC 2253 line ("CN=x,O=y"), UTF-8 kept, control characters escaped. */
static char *name_to_string(const X509_NAME *name)
{
	_cleanup_(BIO_free_allp) BIO *b = BIO_new(BIO_s_mem());
	unsigned long flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
	char *s, *p = NULL;
	long n;

	if (!b)
		return NULL;
	if (X509_NAME_print_ex(b, name, 0, flags) < 0)
		return NULL;
	n = BIO_get_mem_data(b, &p);
	if (n < 0)
		return NULL;
	s = malloc((size_t) n + 1);
	if (!s)
		return NULL;
	memcpy(s, p, (size_t) n);
	s[n] = '\0';
	return s;
}

/* Subject of x for messages: never NULL (a fixed string when out of memory). */
static const char *subject_or(char **buf, const X509 *x)
{
	if (!*buf && x)
		*buf = name_to_string(X509_get_subject_name(x));
	return *buf ?: "?";
}

/*
 * Open a regular PEM file for reading (bounded size). what names it in messages. O_NONBLOCK:
 * a FIFO in place of a key or keyring must not hang us in open().
 */
static int open_pem(const char *path, const char *what, BIO **ret, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	_cleanup_fclose_ FILE *f = NULL;
	struct stat st;
	BIO *b;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open %s '%s': %m", what, path);
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat %s '%s': %m", what, path);
	if (!S_ISREG(st.st_mode))
		return bk_err_set(err, -ENOEXEC, "%s '%s' is not a regular file", what, path);
	if (st.st_size > PEM_FILE_MAX)
		return bk_err_set(err, -ENOEXEC, "%s '%s' is too large (%lld bytes, limit %d)",
				  what, path, (long long) st.st_size, PEM_FILE_MAX);

	f = fdopen(fd, "re");
	if (!f)
		return bk_err_set(err, -errno, "cannot open %s '%s': %m", what, path);
	fd = -EBADF; /* owned by f now */
	b = BIO_new_fp(f, BIO_CLOSE);
	if (!b)
		return bk_err_set(err, -ENOMEM, "out of memory reading %s '%s'", what, path);
	f = NULL; /* owned by the BIO now */
	*ret = b;
	return 0;
}

/* Never prompt for a passphrase on the terminal: library code, and keys must be unencrypted. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	return -1;
}

/*
 * Read every certificate of a PEM stream into sk (which owns them). Returns the number read
 * (0 when the stream holds none) or -ENOEXEC for a malformed certificate, -ENOMEM.
 */
static int read_pem_certs(BIO *b, struct stack_st_X509 *sk, const char *what, const char *path,
			  struct bk_err *err)
{
	int n = 0;

	for (;;) {
		_cleanup_(X509_freep) X509 *x = NULL;
		unsigned long e;

		x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
		if (!x) {
			e = ERR_peek_last_error();
			if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
			    ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
				/* The end of the stream (or text without PEM blocks). */
				ERR_clear_error();
				return n;
			}
			return ossl_err(err, -ENOEXEC, "cannot parse certificate %d of %s '%s'",
					n + 1, what, path);
		}
		if (n >= KEYRING_CERT_MAX)
			return bk_err_set(err, -ENOEXEC, "%s '%s' holds more than %d certificates",
					  what, path, KEYRING_CERT_MAX);
		if (sk_X509_push(sk, x) <= 0)
			return bk_err_set(err, -ENOMEM, "out of memory reading %s '%s'", what,
					  path);
		x = NULL; /* owned by sk */
		n++;
	}
}

/* Read all certificates of one PEM file into sk; a file without any is -ENOEXEC. */
static int load_pem_certs(const char *path, const char *what, struct stack_st_X509 *sk,
			  struct bk_err *err)
{
	_cleanup_(BIO_free_allp) BIO *b = NULL;
	int r;

	r = open_pem(path, what, &b, err);
	if (r < 0)
		return r;

	r = read_pem_certs(b, sk, what, path, err);
	if (r < 0)
		return r;
	if (r == 0)
		return bk_err_set(err, -ENOEXEC, "%s '%s' holds no PEM certificate", what, path);
	return r;
}

/* "30922310.0": the name openssl rehash gives a certificate (subject hash, 8 hex, '.', index). */
static bool is_hash_name(const char *name, unsigned long *ret_hash)
{
	unsigned long h = 0;
	size_t i;

	for (i = 0; i < 8; i++) {
		char c = name[i];

		if (c >= '0' && c <= '9')
			h = h * 16 + (unsigned long) (c - '0');
		else if (c >= 'a' && c <= 'f')
			h = h * 16 + (unsigned long) (c - 'a' + 10);
		else
			return false;
	}
	if (name[8] != '.' || name[9] < '0' || name[9] > '9')
		return false;
	for (i = 10; name[i]; i++)
		if (name[i] < '0' || name[i] > '9')
			return false;
	*ret_hash = h;
	return true;
}

/*
 * A hashed directory: read every "<hash>.<n>" entry (symlinks followed, as openssl does) and
 * check that its certificate's subject hash matches the name, so the directory is exactly what
 * X509_LOOKUP_hash_dir would find. The certificates are read now, once: what was checked at
 * load time is what verifies, and an unreadable keyring fails at load, not at first use.
 */
static int load_hash_dir(const char *path, struct stack_st_X509 *sk, struct bk_err *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int n = 0, r;

	d = opendir(path);
	if (!d)
		return bk_err_set(err, -errno, "cannot open keyring directory '%s': %m", path);

	for (;;) {
		_cleanup_free_ char *file = NULL;
		_cleanup_free_ char *subject = NULL;
		unsigned long want = 0, have;
		int first = sk_X509_num(sk);

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno != 0)
				return bk_err_set(err, -errno,
						  "cannot read keyring directory '%s': %m", path);
			break;
		}
		if (!is_hash_name(de->d_name, &want))
			continue;

		if (asprintf(&file, "%s/%s", path, de->d_name) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r = load_pem_certs(file, "keyring certificate", sk, err);
		if (r < 0)
			return r;

		/* hash_dir looks a certificate up by its name; the first one must match it. */
		have = X509_subject_name_hash(sk_X509_value(sk, first));
		if (have != want)
			return bk_err_set(err, -ENOEXEC,
					  "keyring certificate '%s' ('%s') is not named after its "
					  "subject hash %08lx (run 'openssl rehash')",
					  file, subject_or(&subject, sk_X509_value(sk, first)),
					  have);
		n += r;
		if (n > KEYRING_CERT_MAX)
			return bk_err_set(err, -ENOEXEC,
					  "keyring directory '%s' holds more than %d certificates",
					  path, KEYRING_CERT_MAX);
	}

	if (n == 0)
		return bk_err_set(
			err, -ENOEXEC,
			"keyring directory '%s' holds no hashed certificate (run 'openssl "
			"rehash')",
			path);
	return n;
}

int bk_keyring_load(const char *path, struct bk_keyring **ret, struct bk_err *err)
{
	_cleanup_(x509_stack_pop_freep) STACK_OF(X509) *sk = NULL;
	_cleanup_(X509_STORE_freep) X509_STORE *store = NULL;
	struct bk_keyring *k;
	struct stat st;
	int n, i, r;

	if (stat(path, &st) < 0) {
		r = -errno;
		if (r == -ENOENT)
			return bk_err_set(err, r, "keyring '%s' not found", path);
		return bk_err_set(err, r, "cannot access keyring '%s': %m", path);
	}

	sk = sk_X509_new_null();
	if (!sk)
		return bk_err_set(err, -ENOMEM, "out of memory");

	if (S_ISDIR(st.st_mode))
		n = load_hash_dir(path, sk, err);
	else
		n = load_pem_certs(path, "keyring", sk, err);
	if (n < 0)
		return n;

	store = X509_STORE_new();
	if (!store)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (i = 0; i < sk_X509_num(sk); i++) {
		/* Takes its own reference; a duplicate certificate is not an error in 3.0. */
		if (X509_STORE_add_cert(store, sk_X509_value(sk, i)) != 1)
			return ossl_err(err, -ENOMEM, "cannot add a keyring certificate");
	}

	k = calloc(1, sizeof(*k));
	if (!k)
		return bk_err_set(err, -ENOMEM, "out of memory");
	k->store = TAKE_PTR(store);
	k->n_certs = (unsigned) n;
	BK_DBG(CRYPTO, "keyring '%s': %u certificates", path, k->n_certs);
	*ret = k;
	return 0;
}

struct bk_keyring *bk_keyring_free(struct bk_keyring *k)
{
	if (!k)
		return NULL;
	X509_STORE_free(k->store);
	free(k);
	return NULL;
}

/* A read-only memory BIO over the data; len is within BK_CMS_MAX_DATA (fits an int). */
static BIO *data_bio(const void *data, size_t len)
{
	return BIO_new_mem_buf(len > 0 ? data : "", (int) len);
}

int bk_cms_sign(const void *data, size_t len, const char *key_path, const char *cert_path,
		const char *const *intermediates, uint8_t **ret_der, size_t *ret_der_len,
		struct bk_err *err)
{
	_cleanup_(x509_stack_pop_freep) STACK_OF(X509) *chain = NULL;
	_cleanup_(CMS_ContentInfo_freep) CMS_ContentInfo *cms = NULL;
	_cleanup_(BIO_free_allp) BIO *kb = NULL, *cb = NULL, *db = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
	_cleanup_(X509_freep) X509 *cert = NULL;
	_cleanup_free_ uint8_t *der = NULL;
	unsigned flags = CMS_DETACHED | CMS_BINARY;
	unsigned char *p;
	int n, i, r;

	assert(key_path && cert_path && ret_der && ret_der_len);
	assert(data || len == 0);

	if (len > BK_CMS_MAX_DATA)
		return bk_err_set(err, -EFBIG, "data to sign is too large (%zu bytes, limit %d)",
				  len, BK_CMS_MAX_DATA);

	r = open_pem(key_path, "signing key", &kb, err);
	if (r < 0)
		return r;
	key = PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL);
	if (!key)
		return ossl_err(err, -ENOEXEC, "cannot read signing key '%s' (unencrypted PEM)",
				key_path);
	/* With SHA-256: Ed25519 would need SHA-512 (RFC 8419), Ed448 SHAKE256. */
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC && EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA)
		return bk_err_set(err, -EOPNOTSUPP,
				  "signing key '%s' is of type '%s', expected an EC or RSA key",
				  key_path, OBJ_nid2sn(EVP_PKEY_get_base_id(key)));

	r = open_pem(cert_path, "signing certificate", &cb, err);
	if (r < 0)
		return r;
	cert = PEM_read_bio_X509(cb, NULL, no_passphrase, NULL);
	if (!cert)
		return ossl_err(err, -ENOEXEC, "cannot read signing certificate '%s'", cert_path);
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		return bk_err_set(err, -EKEYREJECTED,
				  "signing key '%s' does not match certificate '%s'", key_path,
				  cert_path);
	}

	chain = sk_X509_new_null();
	if (!chain)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (i = 0; intermediates && intermediates[i]; i++) {
		r = load_pem_certs(intermediates[i], "intermediate certificate", chain, err);
		if (r < 0)
			return r;
	}

	db = data_bio(data, len);
	if (!db)
		return bk_err_set(err, -ENOMEM, "out of memory");

	/* Partial: the signer is added with its own flags, then the content is digested. */
	cms = CMS_sign(NULL, NULL, NULL, NULL, flags | CMS_PARTIAL);
	if (!cms)
		return ossl_err(err, -EIO, "cannot create CMS signature");
	if (!CMS_add1_signer(cms, cert, key, EVP_sha256(), flags | CMS_NOSMIMECAP))
		return ossl_err(err, -EIO, "cannot add the signer to the CMS signature");
	for (i = 0; i < sk_X509_num(chain); i++)
		if (CMS_add1_cert(cms, sk_X509_value(chain, i)) != 1)
			return ossl_err(err, -EIO, "cannot add intermediate certificate %d", i + 1);
	if (CMS_final(cms, db, NULL, flags) != 1)
		return ossl_err(err, -EIO, "cannot compute the CMS signature");

	n = i2d_CMS_ContentInfo(cms, NULL);
	if (n <= 0)
		return ossl_err(err, -EIO, "cannot encode the CMS signature");
	der = malloc((size_t) n);
	if (!der)
		return bk_err_set(err, -ENOMEM, "out of memory");
	p = der;
	if (i2d_CMS_ContentInfo(cms, &p) != n)
		return ossl_err(err, -EIO, "cannot encode the CMS signature");

	BK_DBG(CRYPTO, "signed %zu bytes with '%s': %d bytes of DER", len, cert_path, n);
	*ret_der_len = (size_t) n;
	*ret_der = TAKE_PTR(der);
	return 0;
}

/*
 * Build and check the chain from signer to a keyring certificate, with the CMS's certificates
 * as untrusted intermediates. The verify error tells "expired" from "untrusted" precisely,
 * which CMS_verify()'s own chain check does not expose (it only queues a text).
 */
static int verify_chain(X509_STORE *store, X509 *signer, struct stack_st_X509 *untrusted,
			unsigned flags, struct bk_err *err)
{
	_cleanup_(X509_STORE_CTX_freep) X509_STORE_CTX *ctx = NULL;
	_cleanup_free_ char *subject = NULL, *at = NULL;
	const char *why;
	int e, depth, r;

	ctx = X509_STORE_CTX_new();
	if (!ctx)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (X509_STORE_CTX_init(ctx, store, signer, untrusted) != 1)
		return ossl_err(err, -ENOMEM, "cannot set up certificate verification");

	/*
	 * OpenSSL 3.0 has no codeSigning purpose (and CMS_verify's default, smime_sign, would
	 * demand emailProtection): check no purpose here, the caller checks the signer's EKU.
	 * basicConstraints of every issuer in the chain is checked regardless of purpose.
	 */
	if (X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY) != 1)
		return ossl_err(err, -EIO, "cannot set the verification purpose");
	if (flags & BK_CMS_NO_CHECK_TIME)
		X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);

	r = X509_verify_cert(ctx);
	if (r == 1)
		return 0;

	e = X509_STORE_CTX_get_error(ctx);
	depth = X509_STORE_CTX_get_error_depth(ctx);
	why = X509_verify_cert_error_string(e);
	ERR_clear_error();
	subject_or(&subject, signer);
	subject_or(&at, X509_STORE_CTX_get_current_cert(ctx) ?: signer);

	switch (e) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return bk_err_set(err, -EKEYEXPIRED,
				  "signer '%s' is not valid at this time: %s (certificate '%s', "
				  "depth %d)",
				  subject, why, at, depth);
	default:
		return bk_err_set(
			err, -EKEYREJECTED,
			"signer '%s' is not trusted by the keyring: %s (certificate '%s', "
			"depth %d)",
			subject, why, at, depth);
	}
}

/*
 * The DER header at *p must have this tag, class and form (definite length only). Moves *p
 * past the header (enter) or past the whole element (skip); *ret_len (optional) gets the
 * length of the content.
 */
static bool der_next(const unsigned char **p, const unsigned char *end, int tag, int cls,
		     bool constructed, bool skip, long *ret_len)
{
	int t = -1, c = -1, r;
	long n = 0;

	if (*p >= end)
		return false;
	r = ASN1_get_object(p, &n, &t, &c, (long) (end - *p));
	if (r != (constructed ? V_ASN1_CONSTRUCTED : 0) || t != tag || c != cls)
		return false;
	if (skip)
		*p += n;
	if (ret_len)
		*ret_len = n;
	return true;
}

/* A version number: an INTEGER with one content byte. */
static bool der_version(const unsigned char **p, const unsigned char *end, int *ret)
{
	long n = 0;

	if (!der_next(p, end, V_ASN1_INTEGER, V_ASN1_UNIVERSAL, false, false, &n) || n != 1)
		return false;
	*ret = **p;
	*p += 1;
	return true;
}

#define ENTER(tag, cls)	  der_next(&p, end, tag, cls, true, false, NULL)
#define SKIP(tag, cls, c) der_next(&p, end, tag, cls, c, true, NULL)
#define U		  V_ASN1_UNIVERSAL
#define CTX		  V_ASN1_CONTEXT_SPECIFIC

/*
 * The version fields of SignedData and SignerInfo (RFC 5652 5.1, 5.3) are not covered by the
 * signature and OpenSSL does not check them. Check them anyway, so that no bit of a signature
 * can change without the signature being refused: a bundle with a flipped bit anywhere must
 * not install. For what we accept (X.509 certificates only, id-data content) the RFC fixes
 * both: 3 when the signer is named by subject key identifier, else 1. Walks the DER (already
 * parsed by d2i, so only its shape matters here) with ASN1_get_object().
 */
static int check_versions(const uint8_t *der, size_t der_len, CMS_SignerInfo *si,
			  struct bk_err *err)
{
	const unsigned char *p = der, *end = der + der_len;
	ASN1_OCTET_STRING *keyid = NULL;
	X509_NAME *issuer = NULL;
	ASN1_INTEGER *serial = NULL;
	int v_sd = -1, v_si = -1, want;
	bool ok;

	/*
	 * ContentInfo { contentType, [0] EXPLICIT SignedData { version, digestAlgorithms,
	 * encapContentInfo, [0] certificates OPTIONAL, [1] crls OPTIONAL, SET OF SignerInfo
	 * { version, ... } } }
	 */
	ok = ENTER(V_ASN1_SEQUENCE, U) && SKIP(V_ASN1_OBJECT, U, false) && ENTER(0, CTX) &&
	     ENTER(V_ASN1_SEQUENCE, U) && der_version(&p, end, &v_sd) &&
	     SKIP(V_ASN1_SET, U, true) && SKIP(V_ASN1_SEQUENCE, U, true);
	if (ok) {
		const unsigned char *q = p;

		/* The optional fields: try each, rewind when absent. */
		if (!SKIP(0, CTX, true))
			p = q;
		q = p;
		if (!SKIP(1, CTX, true))
			p = q;
		ok = ENTER(V_ASN1_SET, U) && ENTER(V_ASN1_SEQUENCE, U) &&
		     der_version(&p, end, &v_si);
	}
	ERR_clear_error();
	if (!ok)
		return bk_err_set(err, -EBADMSG,
				  "signature is not a DER CMS signed-data structure");

	if (CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &serial) != 1) {
		ERR_clear_error();
		return bk_err_set(err, -EBADMSG, "signature has no signer identifier");
	}
	want = keyid ? 3 : 1;
	if (v_sd != want || v_si != want)
		return bk_err_set(err, -EBADMSG,
				  "signature has invalid CMS versions (signed-data %d, signer %d, "
				  "expected %d)",
				  v_sd, v_si, want);
	return 0;
}

#undef ENTER
#undef SKIP
#undef U
#undef CTX

/*
 * The algorithms of the one SignerInfo: the digest must be SHA-2 (256 bits or more), and the
 * signature algorithm must fit the signer's key and that digest. OpenSSL 3.0 ignores the
 * signature algorithm of ECDSA signers, so a changed OID would go unnoticed otherwise.
 */
static int check_algorithms(CMS_SignerInfo *si, X509 *signer, struct bk_err *err)
{
	X509_ALGOR *dig = NULL, *sig = NULL;
	const ASN1_OBJECT *dobj = NULL, *sobj = NULL;
	EVP_PKEY *pub = X509_get0_pubkey(signer);
	int dig_nid, sig_nid, key_nid, md = NID_undef, pk = NID_undef;
	int dig_ptype = V_ASN1_UNDEF, sig_ptype = V_ASN1_UNDEF;
	bool ok;

	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sig);
	if (!dig || !sig || !pub) {
		ERR_clear_error();
		return bk_err_set(err, -EBADMSG, "signature lacks its algorithms or signer key");
	}
	X509_ALGOR_get0(&dobj, &dig_ptype, NULL, dig);
	X509_ALGOR_get0(&sobj, &sig_ptype, NULL, sig);
	dig_nid = OBJ_obj2nid(dobj);
	sig_nid = OBJ_obj2nid(sobj);
	key_nid = EVP_PKEY_get_base_id(pub);

	/* Parameters are absent or NULL, except RSASSA-PSS's (which OpenSSL checks itself). */
	if ((dig_ptype != V_ASN1_UNDEF && dig_ptype != V_ASN1_NULL) ||
	    (sig_nid != NID_rsassaPss && sig_ptype != V_ASN1_UNDEF && sig_ptype != V_ASN1_NULL))
		return bk_err_set(err, -EBADMSG, "signature has unexpected algorithm parameters");

	if (dig_nid != NID_sha256 && dig_nid != NID_sha384 && dig_nid != NID_sha512)
		return bk_err_set(
			err, -EBADMSG,
			"signature uses digest '%s', expected SHA-256, SHA-384 or SHA-512",
			OBJ_nid2sn(dig_nid));
	/*
	 * A combined OID (ecdsa-with-SHA256), or the key's own ("rsaEncryption", as OpenSSL
	 * writes it for RSA), or RSASSA-PSS with an RSA key.
	 */
	if (sig_nid == NID_rsassaPss)
		ok = key_nid == EVP_PKEY_RSA || key_nid == EVP_PKEY_RSA_PSS;
	else if (OBJ_find_sigid_algs(sig_nid, &md, &pk))
		ok = pk == key_nid && (md == dig_nid || md == NID_undef);
	else
		ok = sig_nid == key_nid;
	if (!ok)
		return bk_err_set(err, -EBADMSG,
				  "signature algorithm '%s' does not fit the signer's key '%s' and "
				  "digest '%s'",
				  OBJ_nid2sn(sig_nid), OBJ_nid2sn(key_nid), OBJ_nid2sn(dig_nid));
	return 0;
}

int bk_cms_verify(const void *data, size_t len, const uint8_t *der, size_t der_len,
		  const struct bk_keyring *keyring, unsigned flags, char **ret_signer,
		  struct bk_err *err)
{
	_cleanup_(x509_stack_pop_freep) STACK_OF(X509) *certs = NULL;
	_cleanup_(CMS_ContentInfo_freep) CMS_ContentInfo *cms = NULL;
	_cleanup_(x509_stack_freep) STACK_OF(X509) *signers = NULL;
	_cleanup_(BIO_free_allp) BIO *db = NULL;
	_cleanup_free_ char *subject = NULL;
	const unsigned char *p = der;
	const ASN1_OBJECT *ctype;
	CMS_SignerInfo *si;
	X509 *signer;
	int n, r;

	assert(keyring);
	assert(der || der_len == 0);
	assert(data || len == 0);

	if ((flags & ~(unsigned) BK_CMS_NO_CHECK_TIME) != 0)
		return bk_err_set(err, -EINVAL, "unknown signature verification flags 0x%x", flags);
	if (len > BK_CMS_MAX_DATA)
		return bk_err_set(err, -EFBIG, "signed data is too large (%zu bytes, limit %d)",
				  len, BK_CMS_MAX_DATA);
	if (der_len == 0)
		return bk_err_set(err, -EBADMSG, "signature is empty");
	if (der_len > BK_CMS_MAX_DER)
		return bk_err_set(err, -EBADMSG, "signature is too large (%zu bytes, limit %d)",
				  der_len, BK_CMS_MAX_DER);

	cms = d2i_CMS_ContentInfo(NULL, &p, (long) der_len);
	if (!cms)
		return ossl_err(err, -EBADMSG, "signature is not a DER CMS structure");
	if (p != der + der_len)
		return bk_err_set(err, -EBADMSG, "signature has %zu trailing bytes",
				  (size_t) (der + der_len - p));
	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed)
		return bk_err_set(err, -EBADMSG, "signature is not a CMS signed-data structure");
	if (OBJ_obj2nid(CMS_get0_eContentType(cms)) != NID_pkcs7_data)
		return bk_err_set(err, -EBADMSG, "signature is not over plain data (content type)");
	if (CMS_is_detached(cms) != 1)
		return bk_err_set(err, -EBADMSG, "signature is not detached (it embeds content)");
	n = sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(cms));
	if (n != 1)
		return bk_err_set(err, -EBADMSG, "signature has %d signers, expected exactly one",
				  n < 0 ? 0 : n);
	si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
	r = check_versions(der, der_len, si, err);
	if (r < 0)
		return r;

	db = data_bio(data, len);
	if (!db)
		return bk_err_set(err, -ENOMEM, "out of memory");

	/*
	 * Step 1: the signature itself (signed attributes and message digest) with the signer
	 * certificate embedded in the CMS. The chain is checked in step 2, by hand, so the
	 * result can tell a bad signature from an untrusted or expired signer.
	 */
	if (CMS_verify(cms, NULL, NULL, db, NULL,
		       CMS_DETACHED | CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1)
		return ossl_err(err, -EBADMSG, "signature does not verify");

	/*
	 * RFC 5652 11.1: a signed content-type attribute must match eContentType, which itself
	 * is not signed; OpenSSL 3.0 does not compare them. Signatures without signed attributes
	 * (openssl cms -noattr) have none.
	 */
	ctype = CMS_signed_get0_data_by_OBJ(si, OBJ_nid2obj(NID_pkcs9_contentType), -3,
					    V_ASN1_OBJECT);
	if (ctype && OBJ_obj2nid(ctype) != NID_pkcs7_data)
		return bk_err_set(err, -EBADMSG,
				  "signature is not over plain data (signed content type)");
	ERR_clear_error();

	signers = CMS_get0_signers(cms);
	if (!signers || sk_X509_num(signers) != 1)
		return bk_err_set(err, -EBADMSG, "signature has no signer certificate");
	signer = sk_X509_value(signers, 0);
	r = check_algorithms(si, signer, err);
	if (r < 0)
		return r;

	/* Step 2: chain to the keyring, validity periods. */
	certs = CMS_get1_certs(cms); /* never NULL here: the signer's certificate is among them */
	ERR_clear_error();
	r = verify_chain(keyring->store, signer, certs, flags, err);
	if (r < 0)
		return r;

	/*
	 * Step 3: the signer must be meant for code signing. Without the extension, OpenSSL
	 * reports "any usage" (UINT32_MAX): require the extension to be present.
	 */
	if (!(X509_get_extension_flags(signer) & EXFLAG_XKUSAGE) ||
	    !(X509_get_extended_key_usage(signer) & XKU_CODE_SIGN))
		return bk_err_set(err, -EKEYREJECTED,
				  "signer '%s' lacks the codeSigning extended key usage",
				  subject_or(&subject, signer));

	if (ret_signer) {
		subject = name_to_string(X509_get_subject_name(signer));
		if (!subject)
			return bk_err_set(err, -ENOMEM, "out of memory");
	}
	BK_DBG(CRYPTO, "signature over %zu bytes verified", len);
	if (ret_signer)
		*ret_signer = TAKE_PTR(subject);
	return 0;
}
