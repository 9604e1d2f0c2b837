#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every key the configuration parser accepts (lib/bk-config.c, its one table of keys) is
# described in bootbank-system.conf(5) (man/bootbank-system.conf.5.scd: a definition line
# "*key* = ..." under "## [section]") and in docs/configuration.md's table, and the man page
# defines no key the parser would refuse. Reads the sources only: no build, no root.
. "$(dirname "$0")/lib.sh"

repo=$(cd "$(dirname "$0")/../.." && pwd)
src=$repo/lib/bk-config.c
scd=$repo/man/bootbank-system.conf.5.scd
doc=$repo/docs/configuration.md

# "section key" per entry of the table: { "system", "compatible", KEY_STRING, ... }
parser=$(sed -n 's/^[[:space:]]*{ *"\([a-z0-9-]*\)", *"\([a-z0-9-]*\)", *KEY_.*/\1 \2/p' "$src" |
	LC_ALL=C sort -u)
check "the parser's key table is read from lib/bk-config.c ($(wc -l <<<"$parser") keys)" \
	test "$(wc -l <<<"$parser")" -ge 20

# "section key" per definition in the man page: in the lines that are not indented and hold
# " = " after a "## [section]" heading, each *word* followed by " =" or "," is a key
# (*bank-a*, *bank-b*, *boot* = _PATH_; *client-cert* = _PATH_, *client-key* = _PATH_), not
# the values after it (*file*|*grub*).
man=$(awk '
	/^## \[[a-z0-9-]+\]/ { sec = $2; gsub(/[][]/, "", sec); next }
	/^#/ { sec = ""; next }
	sec != "" && /^[^\t]/ && / = / {
		s = $0
		while (match(s, /\*[a-z0-9-]+\*( =|,)/)) {
			k = substr(s, RSTART + 1, RLENGTH - 1)
			sub(/\*.*/, "", k)
			print sec, k
			s = substr(s, RSTART + RLENGTH)
		}
	}' "$scd" | LC_ALL=C sort -u)

missing=$(LC_ALL=C comm -23 <(echo "$parser") <(echo "$man") | sed 's/^\([^ ]*\) /[\1] /' |
	paste -sd, -)
check "bootbank-system.conf(5) describes every key the parser accepts${missing:+ (missing: $missing)}" \
	test -z "$missing"
extra=$(LC_ALL=C comm -13 <(echo "$parser") <(echo "$man") | sed 's/^\([^ ]*\) /[\1] /' |
	paste -sd, -)
check "bootbank-system.conf(5) defines no key the parser refuses${extra:+ (unknown: $extra)}" \
	test -z "$extra"

# docs/configuration.md: a table row per key; the section is named in its first row only
# (| `[boot]` | `tries` | ... then | | `custom-backend` | ...).
docs=$(awk -F'|' '
	/^\| *`\[[a-z0-9-]+\]`/ { sec = $2; gsub(/[ `[\]]/, "", sec) }
	/^\| *(`\[[a-z0-9-]+\]`)? *\| *`/ && sec != "" {
		k = $3
		while (match(k, /`[a-z0-9-]+`/)) {
			print sec, substr(k, RSTART + 1, RLENGTH - 2)
			k = substr(k, RSTART + RLENGTH)
		}
	}' "$doc" | LC_ALL=C sort -u)
missing=$(LC_ALL=C comm -23 <(echo "$parser") <(echo "$docs") | sed 's/^\([^ ]*\) /[\1] /' |
	paste -sd, -)
check "docs/configuration.md lists every key the parser accepts${missing:+ (missing: $missing)}" \
	test -z "$missing"

bk_done
