#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankctl's one table (bankctl __table) against what it drives: every --help exits 0 on stdout,
# `bankctl help PATH` says the same, every option the table names is one the verb accepts,
# mistyped verbs, sub-commands and options get the closest suggestion; the bash completion
# and the man page (both generated at build time) offer and show exactly the table's words;
# every man page renders without a warning.
. "$(dirname "$0")/lib.sh"

T=$(bk_tmp)
B=${BK_BUILD:-build/cc}
export BANKCTL
root=$T/root
mkdir -p "$root"

expect_exit 0 "__table" "$BANKCTL" __table
# Fields separated by \x1f, which (unlike a tab) read does not merge when one is empty.
table=$(tr '\t' '\037' <<<"$OUT")
check "the table has verbs, groups and sub-commands" \
	test "$(grep -c $'^verb\037' <<<"$table")" -ge 10 -a "$(grep -c $'^group\037' <<<"$table")" -ge 6 \
	-a "$(grep -c $'^sub\037' <<<"$table")" -ge 20

# --- help at every level ---------------------------------------------------------------------
bad_help=() bad_helpverb=() bad_opts=() bad_usage=()
while IFS=$'\037' read -r kind path usage help opts operands; do
	[ "$kind" = verb ] || [ "$kind" = group ] || [ "$kind" = sub ] || continue
	# shellcheck disable=SC2086
	out=$("$BANKCTL" --root "$T/nonexistent" $path --help 2>"$T/err")
	rc=$?
	if [ $rc -ne 0 ] || [ -s "$T/err" ] || [[ $out != "usage: bankctl $path"* ]] ||
		! grep -qF -- "$help" <<<"$out"; then
		bad_help+=("$path (exit $rc)")
	fi
	# shellcheck disable=SC2086
	[ "$("$BANKCTL" help $path 2>&1)" = "$out" ] || bad_helpverb+=("$path")
	# shellcheck disable=SC2086
	[ "$("$BANKCTL" $path -h 2>&1)" = "$out" ] || bad_helpverb+=("$path -h")
	if [ "$kind" = group ]; then
		# one line per sub-command, with its help
		while IFS=$'\037' read -r k2 p2 u2 h2 o2 x2; do
			[ "$k2" = sub ] && [ "${p2%% *}" = "$path" ] || continue
			grep -qE "^  ${p2#* } +$(printf '%s' "$h2" | sed 's/[][\.*^$()|+?{}]/\\&/g')\$" <<<"$out" ||
				bad_help+=("$path: no line for '${p2#* }'")
		done <<<"$table"
		continue
	fi
	[ "$path" = help ] && continue
	# Every option of the table is accepted by the verb's parser. Too many operands make every
	# verb stop with a usage error before it does anything.
	for o in $opts; do
		name=${o%%=*} arg=() short=
		if [[ $name == -?'|'* ]]; then
			short=${name%%|*} name=${name#*|}
		fi
		if [[ $o == *=* ]]; then
			case ${o#*=} in
			N) arg=(1) ;; SIZE) arg=(1M) ;; *'|'*) arg=("${o#*=}") arg=("${arg[0]%%|*}") ;; *) arg=(x) ;;
			esac
		fi
		# shellcheck disable=SC2086
		"$BANKCTL" --root "$root" $path "$name" "${arg[@]}" x1 x2 x3 x4 x5 >/dev/null 2>"$T/err"
		if grep -qE "unrecognized option|invalid option|requires an argument" "$T/err"; then
			bad_opts+=("$path $name: $(head -n1 "$T/err")")
		fi
		grep -qF -- "$name" <<<"$usage" || { [ -n "$short" ] && grep -qF -- "$short " <<<"$usage"; } ||
			bad_usage+=("$path: $name not in the usage line")
	done
	# ... and every option in the usage line is in the table.
	for o in $(grep -oE -- '--[a-z][a-z-]*' <<<"$usage"); do
		case " $opts --json --wait --help " in *" $o"[=\ ]*) ;; *) bad_usage+=("$path: $o not in the table") ;; esac
	done
done <<<"$table"
check "every VERB [SUB] --help exits 0, prints its usage and help on stdout, nothing on stderr (${bad_help[*]:-})" \
	test ${#bad_help[@]} -eq 0
check "bankctl help PATH and PATH -h print the same (${bad_helpverb[*]:-})" test ${#bad_helpverb[@]} -eq 0
check "every option in the table is accepted by its verb (${bad_opts[*]:-})" test ${#bad_opts[@]} -eq 0
check "usage lines and option lists agree (${bad_usage[*]:-})" test ${#bad_usage[@]} -eq 0

expect_exit 0 "bankctl help" "$BANKCTL" help
check "bankctl help is bankctl --help" test "$OUT" = "$("$BANKCTL" --help)"
expect_exit 0 "bankctl livepatch --help (was: unknown sub-command)" "$BANKCTL" livepatch --help
check "livepatch --help lists apply, rollback, status one line each" \
	test "$(grep -cE '^  (apply|rollback|status) ' <<<"$OUT")" -eq 3
expect_exit 0 "bankctl rev --help" "$BANKCTL" rev --help
expect_exit 0 "bankctl workload --help" "$BANKCTL" workload --help
expect_exit 0 "bankctl help help" "$BANKCTL" help help

# --- suggestions -----------------------------------------------------------------------------
expect_exit 2 "unknown verb" "$BANKCTL" --root "$root" statsu
check "unknown verb: suggests status" grep -qF "unknown verb 'statsu'; did you mean 'status'?" <<<"$ERR"
expect_exit 2 "unknown verb far from all" "$BANKCTL" --root "$root" frobnicate
check "no suggestion when nothing is near" bash -c '! grep -q "did you mean" <<<"$1"' _ "$ERR"
expect_exit 2 "unknown sub-command" "$BANKCTL" --root "$root" rev lsit
check "unknown sub-command: suggests list" grep -qF "unknown sub-command 'lsit'; did you mean 'list'?" <<<"$ERR"
expect_exit 2 "help of an unknown sub-command" "$BANKCTL" help livepatch aply
check "help: suggests apply" grep -qF "did you mean 'apply'?" <<<"$ERR"
expect_exit 2 "unknown verb option" "$BANKCTL" --root "$root" status --jsno
check "verb option: suggests --json" grep -qF "did you mean '--json'?" <<<"$ERR"
expect_exit 2 "unknown option of a sub-command" "$BANKCTL" --root "$root" depot import x.bbi --forse
check "sub-command option: suggests --force" grep -qF "did you mean '--force'?" <<<"$ERR"
expect_exit 2 "unknown global option" "$BANKCTL" --verison
check "global option: suggests --version" grep -qF "did you mean '--version'?" <<<"$ERR"
expect_exit 2 "missing sub-command" "$BANKCTL" --root "$root" disk
check "missing sub-command names them" grep -qF "missing sub-command (init, probe)" <<<"$ERR"

# --- the bash completion -----------------------------------------------------------------------
comp=$(realpath "$B/completion/bankctl" 2>/dev/null)
bc=/usr/share/bash-completion/bash_completion
if [ ! -f "$comp" ] || [ ! -f "$bc" ]; then
	not_ok "the completion ($comp) and bash-completion ($bc) are there (make; scripts/deps.sh)"
else
	# complete LINE...: the words offered for the last word of LINE (bankctl from $BANKCTL).
	complete_words() {
		bash -c '
			. "$1"; . "$2"
			bankctl() { "$BANKCTL" "$@"; }
			line=$3
			read -ra COMP_WORDS <<<"$line"
			[[ $line == *" " ]] && COMP_WORDS+=("")
			COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
			COMP_LINE=$line COMP_POINT=${#line}
			_bankctl bankctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
			printf "%s\n" "${COMPREPLY[@]}" | sort' _ "$bc" "$comp" "$1"
	}
	words_of() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort; }
	missing=()
	verbs=$(awk -F '\037' '$1 == "verb" || $1 == "group" { print $2 }' <<<"$table" | sort)
	[ "$(complete_words "bankctl ")" = "$verbs" ] || missing+=("verbs")
	while IFS=$'\037' read -r kind path usage help opts operands; do
		case $kind in
		group)
			want=$( (awk -F '\037' -v g="$path" '$1 == "sub" && index($2, g " ") == 1 { sub(/^[^ ]* /, "", $2); print $2 }' <<<"$table"; echo --help) | sort)
			[ "$(complete_words "bankctl $path ")" = "$want" ] || missing+=("$path: sub-commands")
			;;
		verb | sub)
			[ "$path" = help ] && continue
			want=$(words_of "$(sed 's/=[^ ]*//g; s/-.|//g' <<<"$opts") --json --wait --help" | sort -u)
			[ "$(complete_words "bankctl $path --" | sort -u)" = "$want" ] || missing+=("$path: options")
			;;
		esac
	done <<<"$table"
	check "the completion offers exactly the table's verbs, sub-commands and options (${missing[*]:-})" \
		test ${#missing[@]} -eq 0
	check "completion: bank names" test "$(complete_words "bankctl mark-good " | tr '\n' ' ')" = "A B booted other "
	check "completion: activate A|B" test "$(complete_words "bankctl activate " | tr '\n' ' ')" = "A B "
	check "completion: rev gc options" test "$(complete_words "bankctl rev gc --k")" = "--keep"
	check "completion: --type values" test "$(complete_words "bankctl rev add --type " | tr '\n' ' ')" = "erofs squashfs "
	check "completion: help VERB" test "$(complete_words "bankctl help liv")" = "livepatch"
	check "completion: help VERB SUB" test "$(complete_words "bankctl help depot " | tr '\n' ' ')" = "import list remove "
	mkdir -p "$T/files/sub.d"
	touch "$T/files/a.bbi" "$T/files/b.bbi" "$T/files/notes.txt"
	check "completion: *.bbi files (and directories) for stage" \
		test "$(cd "$T/files" && complete_words "bankctl stage " | tr '\n' ' ')" = "a.bbi b.bbi sub.d "
	check "completion: *.bbi after --root R and an option" \
		test "$(cd "$T/files" && complete_words "bankctl --root / livepatch apply --no-beneath " | tr '\n' ' ')" = "a.bbi b.bbi sub.d "
	# Names bankctl lists in the sandbox given with --root.
	mkdir -p "$root/etc/bootbank"
	printf '[system]\ncompatible = demo\n' >"$root/etc/bootbank/system.conf"
	"$BANKCTL" --root "$root" workload add web --unit web.service --view /srv/web >/dev/null
	"$BANKCTL" --root "$root" workload add db --unit db.service --view /srv/db >/dev/null
	check "completion: workload names from workload list --json" \
		test "$(complete_words "bankctl --root $root workload remove " | tr '\n' ' ')" = "db web "
	if command -v mksquashfs >/dev/null && [ "$(id -u)" -eq 0 ] && [ -e /dev/loop-control ]; then
		mkdir -p "$T/tree" && echo x >"$T/tree/f"
		mksquashfs "$T/tree" "$T/r.squashfs" -quiet -noappend -all-root >/dev/null
		"$BANKCTL" --root "$root" rev add rel-1 "$T/r.squashfs" --type squashfs >/dev/null &&
			"$BANKCTL" --root "$root" rev add rel-2 "$T/r.squashfs" --type squashfs >/dev/null
		check "completion: revision ids from rev list --json" \
			test "$(complete_words "bankctl --root $root rev switch " | tr '\n' ' ')" = "rel-1 rel-2 "
		umount "$root/run/bootbank/rev/rel-1" "$root/run/bootbank/rev/rel-2" 2>/dev/null
	fi
fi

# --- the man pages -------------------------------------------------------------------------------
pages=$(ls "$B"/man/*.[578] 2>/dev/null)
if [ -z "$pages" ]; then
	not_ok "man pages built (make man: needs scdoc, scripts/deps.sh)"
else
	for p in $pages; do
		check "man -l renders $(basename "$p") without warnings" \
			test -z "$(MANWIDTH=80 man -l --warnings "$p" 2>&1 >/dev/null)"
	done
	text=$(MANWIDTH=400 man -l "$B/man/bankctl.8" 2>/dev/null)
	nomatch=()
	while IFS=$'\037' read -r kind path usage help opts operands; do
		[ "$kind" = verb ] || [ "$kind" = sub ] || continue
		grep -qF -- "bankctl [OPTIONS] $usage" <<<"$text" || nomatch+=("$path")
		grep -qF -- "$help" <<<"$text" || nomatch+=("$path: help")
	done <<<"$table"
	check "bankctl(8)'s synopsis and commands are the table's (${nomatch[*]:-})" test ${#nomatch[@]} -eq 0
	if [ -x "$B/bin/bankd" ] && [ -f "$B/man/bankd.8" ]; then
		btext=$(MANWIDTH=400 man -l "$B/man/bankd.8" 2>/dev/null)
		nodoc=()
		for o in $("$B/bin/bankd" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
			grep -qF -- "$o" <<<"$btext" || nodoc+=("$o")
		done
		check "bankd(8) documents every option of bankd --help (${nodoc[*]:-})" test ${#nodoc[@]} -eq 0
	fi
	n_syn=$(sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' <<<"$text" | grep -c 'bankctl \[OPTIONS\]')
	check "bankctl(8) has one synopsis line per verb and sub-command, no more" \
		test "$n_syn" -eq "$(grep -cE $'^(verb|sub)\037' <<<"$table")"
fi

bk_done
