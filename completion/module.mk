# SPDX-License-Identifier: LGPL-2.1-or-later
# completion/: bash completion of bankctl, its word lists made from bankctl's table
# (scripts/gen-cli.sh). Installed where bash-completion looks (its pkg-config completionsdir
# with datadir = DATADIR, else DATADIR/bash-completion/completions; bash-completion also
# looks under /usr/local/share).
BASH_COMPLETION := $(O)/completion/bankctl
BASHCOMPDIR ?= $(or $(shell $(PKG_CONFIG) --define-variable=datadir=$(DATADIR) \
	--variable=completionsdir bash-completion 2>/dev/null),$(DATADIR)/bash-completion/completions)

.PHONY: install-completion uninstall-completion
all: $(BASH_COMPLETION)
install: install-completion
uninstall: uninstall-completion

$(BASH_COMPLETION): completion/bankctl.bash.in scripts/gen-cli.sh $(O)/bankctl
	@mkdir -p $(dir $@)
	$(call quiet,GEN,$@)scripts/gen-cli.sh bash $(O)/bankctl $< >$@.tmp && mv $@.tmp $@

install-completion: $(BASH_COMPLETION)
	install -d '$(DESTDIR)$(BASHCOMPDIR)'
	install -m 0644 $(BASH_COMPLETION) '$(DESTDIR)$(BASHCOMPDIR)/bankctl'

uninstall-completion:
	rm -f '$(DESTDIR)$(BASHCOMPDIR)/bankctl'

# tests/integ/cli-help.sh checks the completion.
tests: $(BASH_COMPLETION)
