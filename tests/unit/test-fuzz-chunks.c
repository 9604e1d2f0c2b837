/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replays the chunk-list fuzzer's seed corpus (tests/fuzz/corpus/chunks) and every finding kept
 * from `make fuzz` (tests/fuzz/regress/chunks) through the fuzz target itself (bk-test-fuzz.h).
 */
#include "../fuzz/fuzz-chunks.c"

#include "bk-test-fuzz.h"

int main(void)
{
	return bk_test_fuzz_run("chunks");
}
