# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/crash: the LD_PRELOAD crash injector used by tests/integ/crash-*.sh and switch.sh.
CRASH_SO := $(O)/tests/crash/bk-crash.so
UNIT_TESTS += $(CRASH_SO)

$(CRASH_SO): tests/crash/bk-crash.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$@)$(CC) -std=gnu11 -D_GNU_SOURCE -O2 -g -fPIC -shared -Wall -Wextra \
		$(if $(filter 1,$(WERROR)),-Werror) -o $@ $< -ldl

# The LD_PRELOAD fault injector of tests/integ/switch-faults.sh (one failing switch step).
FAULT_SO := $(O)/tests/crash/bk-fault.so
UNIT_TESTS += $(FAULT_SO)

$(FAULT_SO): tests/crash/bk-fault.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$@)$(CC) -std=gnu11 -D_GNU_SOURCE -O2 -g -fPIC -shared -Wall -Wextra \
		$(if $(filter 1,$(WERROR)),-Werror) -o $@ $< -ldl
