# SPDX-License-Identifier: LGPL-2.1-or-later
# man/: the man pages, scdoc sources (docs/packaging.md says why scdoc). bankctl(8)'s synopsis
# and command list are made from bankctl's table (scripts/gen-cli.sh). Built by `make` when
# scdoc is installed (scripts/deps.sh lists it), installed under MANDIR by `make install`.
SCDOC ?= scdoc
HAVE_SCDOC := $(shell command -v $(SCDOC) >/dev/null 2>&1 && echo yes)
MAN_SRCS := man/bankctl.8.scd.in man/bootbank-system.conf.5.scd man/bootbank-bundle.5.scd \
	man/bootbank-hooks.7.scd $(if $(wildcard bankd/bankd.c),man/bankd.8.scd)
MAN_PAGES := $(patsubst man/%,$(O)/man/%,$(basename $(MAN_SRCS:.in=)))

.PHONY: man install-man uninstall-man
man: $(MAN_PAGES)
ifeq ($(HAVE_SCDOC),yes)
all: man
tests: man
install: install-man
endif
uninstall: uninstall-man

$(O)/man/bankctl.8.scd: man/bankctl.8.scd.in scripts/gen-cli.sh $(O)/bankctl
	@mkdir -p $(dir $@)
	$(call quiet,GEN,$@)scripts/gen-cli.sh man $(O)/bankctl $< >$@.tmp && mv $@.tmp $@

$(O)/man/%: $(O)/man/%.scd
	$(call quiet,SCDOC,$@)$(SCDOC) <$< >$@.tmp && mv $@.tmp $@

$(O)/man/%: man/%.scd
	@mkdir -p $(dir $@)
	$(call quiet,SCDOC,$@)$(SCDOC) <$< >$@.tmp && mv $@.tmp $@

install-man: $(MAN_PAGES)
	@for p in $(MAN_PAGES); do \
		s=$${p##*.}; \
		install -d '$(DESTDIR)$(MANDIR)'/man$$s && \
		install -m 0644 $$p '$(DESTDIR)$(MANDIR)'/man$$s/ || exit 1; \
	done

uninstall-man:
	rm -f '$(DESTDIR)$(MANDIR)'/man8/bankctl.8 '$(DESTDIR)$(MANDIR)'/man8/bankd.8 \
		'$(DESTDIR)$(MANDIR)'/man5/bootbank-system.conf.5 \
		'$(DESTDIR)$(MANDIR)'/man5/bootbank-bundle.5 '$(DESTDIR)$(MANDIR)'/man7/bootbank-hooks.7
