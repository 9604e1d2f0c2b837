#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Makes the bash completion and the man page's command list from bankctl's one table
# (`bankctl __table`, bankd/bankctl.c), at build time, so neither can drift from the program.
#   gen-cli.sh bash BANKCTL TEMPLATE   completion/bankctl.bash.in with @TABLE@ filled in
#   gen-cli.sh man BANKCTL TEMPLATE    man/bankctl.8.scd.in with @SYNOPSIS@ and @COMMANDS@
set -eu

mode=$1 bankctl=$2 template=$3
table=$("$bankctl" __table)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "$mode" in
bash)
	data=$(printf '%s\n' "$table" | awk -F '\t' -v OFS='\t' '
	function q(s) { gsub(/'\''/, "'\''\\'\'''\''", s); return "'\''" s "'\''" }
	# "-o|--output=OUT.bbi" -> "--output=OUT.bbi -o=OUT.bbi": each name, with its argument
	function optnames(s,   n, w, i, out, arg, eq) {
		n = split(s, w, " ")
		out = ""
		for (i = 1; i <= n; i++) {
			if (w[i] ~ /^-[^-]\|--/) {
				eq = index(w[i], "=")
				arg = eq ? substr(w[i], eq) : ""
				out = out " " substr(w[i], 4) " " substr(w[i], 1, 2) arg
			} else
				out = out " " w[i]
		}
		return substr(out, 2)
	}
	{ $5 = optnames($5) }
	$1 == "global" { print "_bankctl_global_opts=" q($5) }
	$1 == "common" { print "_bankctl_common_opts=" q($5) }
	$1 == "verb" || $1 == "group" { verbs = verbs (verbs == "" ? "" : " ") $2 }
	$1 == "sub" { split($2, p, " "); subs[p[1]] = subs[p[1]] (subs[p[1]] == "" ? "" : " ") p[2] }
	$1 == "verb" || $1 == "sub" { opts[$2] = $5; operands[$2] = $6; order[++n] = $2 }
	END {
		print "_bankctl_verbs=" q(verbs)
		print "_bankctl_subs() {"
		print "\tcase $1 in"
		for (g in subs) print "\t" g ") echo " q(subs[g]) " ;;"
		print "\tesac"
		print "}"
		print "_bankctl_opts() {"
		print "\tcase $1 in"
		for (i = 1; i <= n; i++) print "\t" q(order[i]) ") echo " q(opts[order[i]]) " ;;"
		print "\tesac"
		print "}"
		print "_bankctl_operands() {"
		print "\tcase $1 in"
		for (i = 1; i <= n; i++) print "\t" q(order[i]) ") echo " q(operands[order[i]]) " ;;"
		print "\tesac"
		print "}"
	}')
	printf '%s\n' "$data" >"$tmp/data"
	awk -v datafile="$tmp/data" '
		$0 == "@TABLE@" { while ((getline l < datafile) > 0) print l; next } { print }' "$template"
	;;
man)
	# scdoc: escape its markup characters in the table's text.
	printf '%s\n' "$table" | awk -F '\t' '
	function esc(s) { gsub(/\\/, "\\\\", s); gsub(/\*/, "\\*", s); gsub(/_/, "\\_", s); return s }
	$1 == "verb" || $1 == "sub" { syn = syn "*bankctl* [_OPTIONS_] " esc($3) "\n\n" }
	$1 == "verb" || $1 == "group" || $1 == "sub" {
		if ($1 == "group") cmds = cmds "## " toupper(substr($2, 1, 1)) substr($2, 2) "\n\n" esc($4) "\n\n"
		else cmds = cmds "*" esc($3) "*\n\t" esc($4) ".\n\n"
	}
	END { printf "%s", syn > "/dev/stderr"; printf "%s", cmds }' >"$tmp/cmds" 2>"$tmp/syn"
	awk -v cf="$tmp/cmds" -v sf="$tmp/syn" '
		$0 == "@SYNOPSIS@" { while ((getline l < sf) > 0) print l; next }
		$0 == "@COMMANDS@" { while ((getline l < cf) > 0) print l; next } { print }' "$template"
	;;
*)
	echo "usage: gen-cli.sh bash|man BANKCTL TEMPLATE" >&2
	exit 2
	;;
esac
