# SPDX-License-Identifier: LGPL-2.1-or-later
# bootbank: one non-recursive Makefile; each folder adds itself in its module.mk.
#
#   make [all]            build bankctl, bankd and libbootbank.a into $(O)
#   make check            unit + integration tests (installs missing dependencies as root)
#   make demo             the A/B cycle on a loop-backed disk image under build/
#   make deps             install every build and test dependency with apt (root)
#   make check-fleet      only the Ansible fleet test (docs/fleet.md; also in make check)
#   make deb              the Debian package into build/deb (make check-deb: install, use, purge)
#   knobs: SANITIZE=address,undefined  WERROR=1  V=1  CC=clang  O=builddir  DESTDIR= PREFIX=

PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
# initramfs-tools reads only /usr/share/initramfs-tools (and /etc), whatever the PREFIX
INITRAMFSDIR ?= /usr/share/initramfs-tools
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g
VERSION := 0.1.0

comma := ,
O ?= build/$(notdir $(firstword $(CC)))$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))

PKGS := mount blkid fdisk libcrypto json-c inih
# libcurl: its header only; images/bk-fetch.c dlopen()s libcurl.so.4 on the first fetch, so
# bankd and bankctl do not map it and its 40-odd libraries unless they fetch.
DLOPEN_PKGS := libcurl
# Only bankd links libsystemd (sd-bus, sd-event): bankctl and the tests stay without it.
BANKD_PKGS := libsystemd
TEST_PKGS := cmocka
pkgs-ok := $(shell $(PKG_CONFIG) --exists $(PKGS) $(DLOPEN_PKGS) $(BANKD_PKGS) $(TEST_PKGS) 2>/dev/null && echo yes)

cc-option = $(shell $(CC) -Werror $(1) -c -x c /dev/null -o /dev/null 2>/dev/null && echo $(1))

WARNFLAGS := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wold-style-definition -Wpointer-arith -Wcast-qual -Wwrite-strings -Wundef -Wvla -Walloca \
	-Wimplicit-fallthrough -Wswitch-enum -Wnull-dereference -Wredundant-decls -Wnested-externs \
	-Werror=implicit-function-declaration -Werror=incompatible-pointer-types \
	-Werror=int-conversion -Werror=return-type -Wno-unused-parameter \
	-Wno-missing-field-initializers \
	$(foreach w,-Wlogical-op -Wduplicated-cond -Wduplicated-branches -Wjump-misses-init,$(call cc-option,$(w)))
ifeq ($(WERROR),1)
WARNFLAGS += -Werror
endif

HARDEN_CFLAGS := -fstack-protector-strong -fstack-clash-protection -fPIE
HARDEN_LDFLAGS := -pie -Wl,-z,relro,-z,now
ifdef SANITIZE
CFLAGS += -O1 -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZE)
else
# -U first: dpkg-buildflags' CPPFLAGS (the package build) bring -D_FORTIFY_SOURCE=2
HARDEN_CFLAGS += -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3
endif

BK_CPPFLAGS := -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DBK_VERSION='"$(VERSION)"' \
	-Ilib -Iimages -Imountrev -Ibootloader-hooks -Ibankd \
	$(shell $(PKG_CONFIG) --cflags $(PKGS) $(DLOPEN_PKGS) $(BANKD_PKGS) 2>/dev/null)
ALL_CFLAGS = -std=gnu11 $(BK_CPPFLAGS) $(CPPFLAGS) $(WARNFLAGS) $(HARDEN_CFLAGS) $(CFLAGS) -MMD -MP
ALL_LDFLAGS = $(HARDEN_LDFLAGS) $(LDFLAGS)
LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lpthread
BANKD_LIBS := $(shell $(PKG_CONFIG) --libs $(BANKD_PKGS) 2>/dev/null)

ifeq ($(V),1)
Q :=
quiet = 
else
Q := @
quiet = @printf '  %-7s %s\n' $(1) $(2);
endif

# Filled by the modules.
LIBBK_SRCS :=
PROGRAMS :=
UNIT_TESTS :=
CLEAN_FILES :=

.PHONY: all check check-run demo deps ensure-deps install uninstall clean format format-check \
	analyze hdrcheck asan tests bench fuzz deb check-deb check-fleet
.DEFAULT_GOAL := all

include $(sort $(wildcard */module.mk */*/module.mk))

LIBBK_OBJS := $(patsubst %.c,$(O)/%.o,$(LIBBK_SRCS))
LIBBK := $(O)/libbootbank.a

ifneq ($(pkgs-ok),yes)
all: ensure-deps-hint
endif
all: $(PROGRAMS)

ensure-deps-hint:
	@echo "missing build dependencies: run 'make deps' as root (or: scripts/deps.sh print)" >&2
	@exit 1

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$@)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBBK): $(LIBBK_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(call quiet,AR,$@)$(AR) rcs $@ $^

# --- dependencies -------------------------------------------------------------------------
deps:
	scripts/deps.sh install

ensure-deps:
	@scripts/deps.sh ensure

# --- tests --------------------------------------------------------------------------------
tests: $(PROGRAMS) $(UNIT_TESTS)

check: ensure-deps
	@$(MAKE) --no-print-directory check-run

check-run: tests
	@BK_BUILD='$(O)' tests/run-tests.sh

# The fleet layer alone (docs/fleet.md): also part of make check.
check-fleet: ensure-deps tests
	@BK_BUILD='$(O)' tests/run-tests.sh integ/fleet

asan:
	@$(MAKE) --no-print-directory SANITIZE=address,undefined check

demo: ensure-deps
	@$(MAKE) --no-print-directory all
	@BK_BUILD='$(O)' scripts/demo.sh

HOST_UNITS = bootbank-assess.service bootbank-deadline.service bootbank-deadline.timer \
	bootbank-rev-restore.service

# --- install ------------------------------------------------------------------------------
# The loader files go to DATADIR/bootbank; installers copy them onto the boot partition
# (docs/grub.md, docs/uboot.md). The grub.d generator goes to SYSCONFDIR/grub.d.
install: all
	install -d '$(DESTDIR)$(SBINDIR)' '$(DESTDIR)$(LIBDIR)' '$(DESTDIR)$(INCLUDEDIR)/bootbank' \
		'$(DESTDIR)$(DATADIR)/bootbank/grub' '$(DESTDIR)$(DATADIR)/bootbank/uboot' \
		'$(DESTDIR)$(SYSCONFDIR)/grub.d'
	install -m 0755 $(O)/bankctl '$(DESTDIR)$(SBINDIR)/bankctl'
	install -m 0644 $(LIBBK) '$(DESTDIR)$(LIBDIR)/libbootbank.a'
	install -m 0644 lib/*.h images/*.h mountrev/*.h bootloader-hooks/*.h \
		'$(DESTDIR)$(INCLUDEDIR)/bootbank/'
	install -m 0644 bootloader-hooks/grub/*.cfg '$(DESTDIR)$(DATADIR)/bootbank/grub/'
	install -m 0644 bootloader-hooks/uboot/boot.cmd '$(DESTDIR)$(DATADIR)/bootbank/uboot/'
	install -m 0755 bootloader-hooks/grub/10_bootbank '$(DESTDIR)$(SYSCONFDIR)/grub.d/10_bootbank'
	install -d '$(DESTDIR)$(DATADIR)/dbus-1/system.d' '$(DESTDIR)$(DATADIR)/dbus-1/system-services' \
		'$(DESTDIR)$(UNITDIR)'
	install -m 0755 $(O)/bin/bankd '$(DESTDIR)$(SBINDIR)/bankd'
	install -m 0644 data/dbus/org.bootbank.Manager1.conf '$(DESTDIR)$(DATADIR)/dbus-1/system.d/'
	install -m 0644 data/dbus/org.bootbank.Manager1.service \
		'$(DESTDIR)$(DATADIR)/dbus-1/system-services/'
	sed 's|^ExecStart=.*|ExecStart=$(SBINDIR)/bankd|' data/systemd/bankd.service \
		>'$(DESTDIR)$(UNITDIR)/bankd.service'
	chmod 0644 '$(DESTDIR)$(UNITDIR)/bankd.service'

	@# a real host (docs/systemd.md, docs/initramfs.md): units, tmpfiles, the initramfs-tools
	@# boot method, the health-check directories
	install -d '$(DESTDIR)$(UNITDIR)' '$(DESTDIR)$(TMPFILESDIR)' \
		'$(DESTDIR)$(INITRAMFSDIR)/hooks' '$(DESTDIR)$(INITRAMFSDIR)/scripts' \
		'$(DESTDIR)$(DATADIR)/bootbank/systemd' \
		'$(DESTDIR)$(SYSCONFDIR)/bootbank/health.d/required.d' \
		'$(DESTDIR)$(SYSCONFDIR)/bootbank/health.d/wanted.d'
	for u in $(HOST_UNITS); do \
		sed 's|@SBINDIR@|$(SBINDIR)|g' data/systemd/$$u >'$(DESTDIR)$(UNITDIR)/'$$u && \
		chmod 0644 '$(DESTDIR)$(UNITDIR)/'$$u || exit 1; \
	done
	install -m 0644 data/systemd/workload.conf.example '$(DESTDIR)$(DATADIR)/bootbank/systemd/'
	install -m 0644 data/tmpfiles.d/bootbank.conf '$(DESTDIR)$(TMPFILESDIR)/bootbank.conf'
	install -m 0755 data/initramfs-tools/hooks/bootbank '$(DESTDIR)$(INITRAMFSDIR)/hooks/bootbank'
	install -m 0644 data/initramfs-tools/scripts/bootbank '$(DESTDIR)$(INITRAMFSDIR)/scripts/bootbank'

uninstall:
	rm -f '$(DESTDIR)$(SBINDIR)/bankctl' '$(DESTDIR)$(LIBDIR)/libbootbank.a' \
		'$(DESTDIR)$(SYSCONFDIR)/grub.d/10_bootbank' '$(DESTDIR)$(SBINDIR)/bankd' \
		'$(DESTDIR)$(DATADIR)/dbus-1/system.d/org.bootbank.Manager1.conf' \
		'$(DESTDIR)$(DATADIR)/dbus-1/system-services/org.bootbank.Manager1.service' \
		'$(DESTDIR)$(UNITDIR)/bankd.service' \
		'$(DESTDIR)$(TMPFILESDIR)/bootbank.conf' \
		'$(DESTDIR)$(INITRAMFSDIR)/hooks/bootbank' '$(DESTDIR)$(INITRAMFSDIR)/scripts/bootbank'
	for u in $(HOST_UNITS); do rm -f '$(DESTDIR)$(UNITDIR)/'$$u; done
	rm -rf '$(DESTDIR)$(INCLUDEDIR)/bootbank' '$(DESTDIR)$(DATADIR)/bootbank'

# --- Debian package (docs/packaging.md) ----------------------------------------------------
# The package is built as Debian builds it, whatever this make was given (WERROR=1, O=, CC=
# would otherwise reach its inner make through MAKEFLAGS).
deb:
	@scripts/deps.sh ensure-deb
	MAKEFLAGS= MAKEOVERRIDES= scripts/build-deb.sh build/deb

check-deb: deb
	@BK_DEB_DIR=build/deb BK_BUILD='$(O)' tests/run-tests.sh integ/deb

clean:
	rm -rf build $(CLEAN_FILES)

# --- code hygiene -------------------------------------------------------------------------
C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build/*')

format:
	clang-format -i $(C_FILES)

format-check:
	clang-format --dry-run -Werror $(C_FILES)

hdrcheck:
	@for h in $(wildcard lib/*.h images/*.h mountrev/*.h bootloader-hooks/*.h bankd/*.h); do \
		printf '#include "%s"\n' "$$h" | $(CC) $(ALL_CFLAGS) -MMD -MF /dev/null -x c -c -o /dev/null - \
			|| { echo "not self-contained: $$h" >&2; exit 1; }; \
	done; echo "headers are self-contained"

analyze:
	cppcheck --quiet --enable=warning,portability --inline-suppr -D_GNU_SOURCE \
		--suppress=missingIncludeSystem -Ilib $(LIBBK_SRCS)
	$(MAKE) --no-print-directory O=build/analyze CFLAGS='-O1 -g -fanalyzer' all

-include $(shell find $(O) -name '*.d' 2>/dev/null)
.SECONDARY:
