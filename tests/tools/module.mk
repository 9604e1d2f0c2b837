# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/tools: small programs the integration scripts drive (one per .c file), linked against
# libbootbank.a and built into $(O)/tests/tools/ by `make tests`.
TEST_TOOLS := $(patsubst tests/tools/%.c,$(O)/tests/tools/%,$(wildcard tests/tools/*.c))
UNIT_TESTS += $(TEST_TOOLS)

$(TEST_TOOLS): $(O)/tests/tools/%: $(O)/tests/tools/%.o $(O)/libbootbank.a
	$(call quiet,LD,$@)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(O)/libbootbank.a $(LIBS)
