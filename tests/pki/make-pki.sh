#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Test PKI for the CMS signature tests: tests/pki/make-pki.sh OUTDIR
#
# Creates in OUTDIR (EC P-256 keys unless said otherwise, SHA-256, PEM):
#   root-ca.{key,crt}        self-signed root, the only certificate in the keyring
#   intermediate.{key,crt}   CA signed by the root (pathlen 0)
#   signer.{key,crt}         codeSigning EKU, signed by the intermediate, valid now
#   rsa-signer.{key,crt}     the same with an RSA 2048 key
#   expired.{key,crt}        codeSigning, validity 2020-01-01..2021-01-01 (wholly past)
#   future.{key,crt}         codeSigning, validity starts in 2090 (not yet valid)
#   noeku.{key,crt}          signed by the intermediate, no extended key usage at all
#   wrongeku.{key,crt}       signed by the intermediate, serverAuth EKU only
#   other-ca.{key,crt}       a self-signed root that is NOT in the keyring
#   other-signer.{key,crt}   codeSigning, signed by other-ca
#   keyring.pem              the root CA only
#   keyring.d/               hashed directory (openssl rehash layout) with the root CA only
#   garbage.pem              text that is not PEM (for negative keyring tests)
#
# Idempotent: every run replaces the whole set (built in a staging directory, then moved in).
# Works from any cwd; needs only the openssl command. Takes well under a second.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
mkdir -p -- "$1"
out=$(cd -- "$1" && pwd -P)
stage=$(mktemp -d "$out/.pki.XXXXXX")
trap 'rm -rf -- "$stage"' EXIT
cd -- "$stage"

export OPENSSL_CONF=/dev/null # no site configuration influences the result
days=3650

newkey() { # name [rsa]
	if [ "${2:-}" = rsa ]; then
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key" 2>/dev/null
	else
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
	fi
}

# Self-signed CA: name cn
selfsigned_ca() {
	newkey "$1"
	openssl req -new -x509 -key "$1.key" -out "$1.crt" -days "$days" -sha256 \
		-subj "/O=bootbank test/CN=$2" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash"
}

# Certificate issued by a CA: name cn ca extensions... (KEYTYPE=rsa for an RSA key)
issue() {
	local name=$1 cn=$2 ca=$3
	shift 3
	local -a ext=()
	local e
	for e in "$@"; do
		ext+=(-addext "$e")
	done
	newkey "$name" "${KEYTYPE:-ec}"
	openssl req -new -x509 -key "$name.key" -CA "$ca.crt" -CAkey "$ca.key" \
		-out "$name.crt" -days "$days" -sha256 -subj "/O=bootbank test/CN=$cn" \
		-addext "subjectKeyIdentifier=hash" -addext "authorityKeyIdentifier=keyid" \
		"${ext[@]}"
}

leaf=("basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature")
codesign=("${leaf[@]}" "extendedKeyUsage=codeSigning")

selfsigned_ca root-ca "bootbank test root CA"
issue intermediate "bootbank test intermediate CA" root-ca \
	"basicConstraints=critical,CA:TRUE,pathlen:0" "keyUsage=critical,keyCertSign,cRLSign"
issue signer "bootbank test signer" intermediate "${codesign[@]}"
KEYTYPE=rsa issue rsa-signer "bootbank test RSA signer" intermediate "${codesign[@]}"
issue noeku "bootbank test signer without EKU" intermediate "${leaf[@]}"
issue wrongeku "bootbank test TLS server" intermediate "${leaf[@]}" \
	"extendedKeyUsage=serverAuth"
selfsigned_ca other-ca "bootbank other root CA"
issue other-signer "bootbank other signer" other-ca "${codesign[@]}"

# Validity periods outside "now": 'openssl x509/req -days' cannot go negative on OpenSSL
# 3.0, 'openssl ca' takes explicit -startdate/-enddate. A minimal CA configuration:
mkdir ca
: >ca/index.txt
cat >ca/ca.cnf <<CNF
[ ca ]
default_ca = testca
[ testca ]
dir = $stage/ca
database = \$dir/index.txt
new_certs_dir = \$dir
rand_serial = yes
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
organizationName = optional
commonName = supplied
[ codesign ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
dated() { # name cn startdate enddate
	newkey "$1"
	openssl req -new -key "$1.key" -out "ca/$1.csr" -subj "/O=bootbank test/CN=$2"
	openssl ca -batch -notext -config ca/ca.cnf -cert intermediate.crt \
		-keyfile intermediate.key -extensions codesign -startdate "$3" -enddate "$4" \
		-in "ca/$1.csr" -out "$1.crt" 2>/dev/null
}
dated expired "bootbank test expired signer" 20200101000000Z 20210101000000Z
dated future "bootbank test future signer" 20900101000000Z 20910101000000Z
rm -rf ca

cp root-ca.crt keyring.pem
mkdir keyring.d
cp root-ca.crt keyring.d/root-ca.pem
openssl rehash keyring.d
printf 'this is not a certificate\n' >garbage.pem
chmod 0600 ./*.key

# Move the complete set in; replace an older keyring.d as a whole.
rm -rf -- "$out/keyring.d"
mv -f -- ./* "$out/"
