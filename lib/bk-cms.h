/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Detached CMS (PKCS#7) signatures over libcrypto: signing with a key and certificate, and
 * verification against a keyring of trusted CA certificates (chain, codeSigning extended key
 * usage, validity time). Formats, key generation and the checks are described in
 * docs/signing.md. Nothing here logs, blocks on the network, needs root or fsyncs.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "bk-err.h"

/* Largest DER signature accepted by bk_cms_verify() (-EBADMSG above). */
#define BK_CMS_MAX_DER (1024 * 1024)
/* Largest data signed or verified (a manifest): -EFBIG above. */
#define BK_CMS_MAX_DATA (64 * 1024 * 1024)

struct bk_keyring; /* opaque: an X509_STORE of trusted CA certificates */

/*
 * Load a keyring: a PEM file of one or more CA certificates, or a hashed directory
 * (openssl rehash / c_rehash layout). *ret is owned by the caller (bk_keyring_free()).
 * Returns 0; -ENOENT missing, -ENOEXEC unparsable/no certificate, -ENOMEM, -errno from
 * stat/open (-EACCES ...).
 */
int bk_keyring_load(const char *path, struct bk_keyring **ret, struct bk_err *err);
struct bk_keyring *bk_keyring_free(struct bk_keyring *k); /* accepts NULL, returns NULL */

enum bk_cms_flags {
	BK_CMS_NO_CHECK_TIME = 1 << 0, /* do not check certificate validity periods */
};

/*
 * Sign data with a detached CMS (PKCS#7) signature in DER, binary mode, SHA-256, the signer
 * certificate and every intermediate embedded. key/cert/intermediates are PEM file paths
 * (intermediates: NULL-terminated array, may be NULL). *ret_der malloc'ed.
 * The key must be an unencrypted EC or RSA key (never prompts for a passphrase).
 * Returns 0; -ENOENT a file is missing, -ENOEXEC a file is not a PEM key/certificate,
 * -EOPNOTSUPP another key type (Ed25519...), -EKEYREJECTED the key does not match the
 * certificate, -EFBIG data larger than BK_CMS_MAX_DATA, -ENOMEM, -EIO other libcrypto failure.
 */
int bk_cms_sign(const void *data, size_t len, const char *key_path, const char *cert_path,
		const char *const *intermediates, uint8_t **ret_der, size_t *ret_der_len,
		struct bk_err *err);

/*
 * Verify a detached DER CMS signature over data against the keyring: the signature must be
 * valid, the signer certificate must chain to the keyring (intermediates from the CMS), be
 * valid now (unless BK_CMS_NO_CHECK_TIME) and carry the codeSigning extended key usage.
 * Exactly one signer is required.
 * Returns 0; -EBADMSG signature does not verify / not parseable CMS / not exactly one signer /
 * DER larger than BK_CMS_MAX_DER; -EKEYREJECTED chain to keyring fails or codeSigning EKU
 * missing; -EKEYEXPIRED certificate expired or not yet valid; -EFBIG data larger than
 * BK_CMS_MAX_DATA; -ENOMEM; -EINVAL unknown flags.
 * *ret_signer (optional, malloc'ed) gets the signer's subject as one line ("CN=...,O=...").
 */
int bk_cms_verify(const void *data, size_t len, const uint8_t *der, size_t der_len,
		  const struct bk_keyring *keyring, unsigned flags, char **ret_signer,
		  struct bk_err *err);
