# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/fuzz/: libFuzzer targets (clang). `make fuzz` builds libbootbank.a with clang,
# ASan/UBSan and fuzzer instrumentation into build/fuzz, links every tests/fuzz/fuzz-NAME.c,
# and runs each for FUZZ_TIME seconds on its seed corpus tests/fuzz/corpus/NAME plus the kept
# findings tests/fuzz/regress/NAME. New inputs go to build/fuzz/corpus-NAME, crashes to
# build/fuzz/artifacts-NAME/: copy a crasher into tests/fuzz/regress/NAME/ once it is fixed
# (tests/unit/test-fuzz-*.c replay those in make check).
FUZZ_TIME ?= 60
FUZZ_CC ?= clang
FUZZ_O := build/fuzz
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz-%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
FUZZ_SAN := address,undefined
# The targets parse images: only lib/ and images/ are linked in (as objects, not the archive,
# so the rest of the tree need not build with clang at that moment).
FUZZ_OBJS := $(patsubst %.c,$(FUZZ_O)/%.o,$(wildcard lib/*.c images/*.c))

fuzz:
	@$(MAKE) --no-print-directory O=$(FUZZ_O) CC=$(FUZZ_CC) SANITIZE=$(FUZZ_SAN),fuzzer-no-link \
		$(FUZZ_OBJS)
	@for n in $(FUZZ_NAMES); do \
		echo "  FUZZ    $$n ($(FUZZ_TIME) s)"; \
		$(FUZZ_CC) -std=gnu11 -g -O1 -fsanitize=fuzzer,$(FUZZ_SAN) $(BK_CPPFLAGS) \
			-o $(FUZZ_O)/fuzz-$$n tests/fuzz/fuzz-$$n.c $(FUZZ_OBJS) $(LIBS) || exit 1; \
		mkdir -p $(FUZZ_O)/corpus-$$n $(FUZZ_O)/artifacts-$$n tests/fuzz/regress/$$n; \
		$(FUZZ_O)/fuzz-$$n -max_total_time=$(FUZZ_TIME) -max_len=65536 -timeout=10 \
			-artifact_prefix=$(FUZZ_O)/artifacts-$$n/ -print_final_stats=1 \
			$(FUZZ_O)/corpus-$$n tests/fuzz/corpus/$$n tests/fuzz/regress/$$n || exit 1; \
	done
