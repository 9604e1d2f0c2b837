# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/: one cmocka binary per library module (tests/unit/test-<module>.c), fault-injection
# wrappers in tests/mocks (one wrap-<sym>.c each), integration scripts in tests/integ.
UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_TESTS += $(patsubst tests/unit/%.c,$(O)/tests/unit/%,$(UNIT_SRCS))
MOCK_OBJS := $(patsubst %.c,$(O)/%.o,$(wildcard tests/mocks/wrap-*.c))
MOCKLIB := $(O)/tests/libmocks.a
TEST_CFLAGS = -U_FORTIFY_SOURCE -Itests/mocks $(shell $(PKG_CONFIG) --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS = $(shell $(PKG_CONFIG) --libs $(TEST_PKGS) 2>/dev/null)

# Symbols each binary wraps (-Wl,--wrap=SYM): fault injection only.
WRAPS_test-fs := fsync write renameat renameat2 close
WRAPS_test-json := fsync
WRAPS_test-bank := unlinkat read __read_chk
WRAPS_test-stage := write pwrite64 pread64 fsync
WRAPS_test-bundle := pread64
WRAPS_test-maint := fsync
WRAPS_test-events := fsync
WRAPS_test-switch := renameat
WRAPS_test-cgroup := open64
WRAPS_test-boot-file := fsync renameat
WRAPS_test-grubenv := renameat
WRAPS_test-boot-uboot := fsync
WRAPS_test-boot-sdboot := fsync

$(O)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$@)$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -c -o $@ $<

$(MOCKLIB): $(MOCK_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(call quiet,AR,$@)$(AR) rcs $@ $^

$(O)/tests/unit/test-%: $(O)/tests/unit/test-%.o $(MOCKLIB) $(O)/libbootbank.a
	$(call quiet,LD,$@)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< \
		$(foreach w,$(WRAPS_test-$*),-Wl,--wrap=$(w)) \
		-Wl,--start-group $(MOCKLIB) $(O)/libbootbank.a -Wl,--end-group $(LIBS) $(TEST_LIBS)
