# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/: benchmarks printing ratios against baselines measured in the same run. Not part of
# make check. `make bench` builds bankctl and runs every bench/*.sh in turn
# (BENCH_STRICT=1: exit non-zero when a target is missed).
BENCH_SCRIPTS := $(sort $(wildcard bench/*.sh))

bench: all
	@for s in $(BENCH_SCRIPTS); do BK_BUILD='$(O)' bash $$s || exit 1; done
