# SPDX-License-Identifier: LGPL-2.1-or-later
# bankd/: banks and the programs. bk-*.c go into libbootbank.a; bankctl*.c make bankctl;
# bankd*.c make bankd (the daemon, docs/dbus-api.md), as $(O)/bin/bankd: $(O)/bankd/ holds the
# objects.
LIBBK_SRCS += $(wildcard bankd/bk-*.c)
BANKCTL_SRCS := $(wildcard bankd/bankctl*.c)
BANKCTL_OBJS := $(patsubst %.c,$(O)/%.o,$(BANKCTL_SRCS))
PROGRAMS += $(O)/bankctl

$(O)/bankctl: $(BANKCTL_OBJS) $(O)/libbootbank.a
	$(call quiet,LD,$@)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(BANKCTL_OBJS) $(O)/libbootbank.a $(LIBS)

BANKD_SRCS := $(wildcard bankd/bankd*.c)
BANKD_OBJS := $(patsubst %.c,$(O)/%.o,$(BANKD_SRCS))
PROGRAMS += $(O)/bin/bankd

$(O)/bin/bankd: $(BANKD_OBJS) $(O)/libbootbank.a
	@mkdir -p $(dir $@)
	$(call quiet,LD,$@)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(BANKD_OBJS) $(O)/libbootbank.a $(LIBS) $(BANKD_LIBS)
