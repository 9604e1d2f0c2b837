/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replays the bundle fuzzer's seed corpus (tests/fuzz/corpus/bundle) and every finding kept
 * from `make fuzz` (tests/fuzz/regress/bundle) through the fuzz target itself (bk-test-fuzz.h).
 */
#include "../fuzz/fuzz-bundle.c"

#include "bk-test-fuzz.h"

int main(void)
{
	return bk_test_fuzz_run("bundle");
}
