/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: bundle header + manifest parsing (make fuzz). The input is tried as a
 * manifest, as a build spec, and as a whole bundle file (header, manifest and signature
 * bytes, manifest parse and layout cross-check, then payload hashing, which must stay within
 * the file). Signatures are not verified (that is bk-cms's own fuzzing surface): the point is
 * the parsers that see bytes before and after authentication.
 * tests/unit/test-fuzz-bundle.c replays the seed corpus and every kept finding in make check.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bk-bundle.h"
#include "bk-manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void try_manifest(const uint8_t *data, size_t size, unsigned flags)
{
	struct bk_manifest *m = NULL;
	struct bk_err err = { 0 };
	char *s = NULL;
	size_t len;
	uint64_t end;

	if (bk_manifest_parse((const char *) data, size, flags, &m, &err) < 0)
		return;
	if (!(flags & BK_MANIFEST_PARSE_SPEC)) {
		(void) bk_manifest_check_layout(m, m->payloads[0].offset, UINT64_MAX / 2, &err);
		if (bk_manifest_serialise(m, &s, &len, &err) == 0) {
			struct bk_manifest *again = NULL;

			/* What we serialise we must parse back. */
			if (bk_manifest_parse(s, len, 0, &again, &err) < 0)
				__builtin_trap();
			bk_manifest_free(again);
			free(s);
		}
		(void) bk_manifest_assign_offsets(m, 4096, &end);
	}
	bk_manifest_free(m);
}

static void try_bundle(const uint8_t *data, size_t size)
{
	struct bk_bundle *b = NULL;
	struct bk_err err = { 0 };
	int fd = memfd_create("fuzz-bundle", MFD_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, data, size) != (ssize_t) size) {
		close(fd);
		return;
	}
	if (bk_bundle_open_fd(fd, &b, &err) == 0) {
		if (bk_bundle_load_manifest(b, &err) == 0)
			(void) bk_bundle_verify_payloads(b, 1, NULL, &err);
		bk_bundle_free(b);
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1024 * 1024)
		return 0;
	try_manifest(data, size, 0);
	try_manifest(data, size, BK_MANIFEST_PARSE_SPEC);
	try_bundle(data, size);
	return 0;
}
