#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# make deb: build the Debian package from a copy of this tree (tracked and untracked files that
# git does not ignore; no build/) with dpkg-buildpackage -us -uc -b, into OUTDIR (build/deb),
# then run lintian on it. Missing Build-Depends are installed with apt when root.
#   build-deb.sh OUTDIR
set -eu

out=$1
top=$(cd "$(dirname "$0")/.." && pwd)
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
src=$out/src/bootbank-$version

cd "$top"
missing=$(dpkg-checkbuilddeps 2>&1 | sed -n 's/.*Unmet build dependencies: //p' |
	sed 's/([^)]*)//g; s/ | [^ ]*//g') || true
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "make deb needs: $missing (apt-get install them as root)" >&2
		exit 1
	fi
	echo "installing the build dependencies: $missing"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

rm -rf "$out/src"
mkdir -p "$src"
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$top" ls-files -co --exclude-standard -z | grep -zv '^build/' |
		xargs -0 tar -C "$top" -cf - | tar -C "$src" -xf -
else
	tar -C "$top" --exclude=./build -cf - . | tar -C "$src" -xf -
fi

(cd "$src" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 || {
	tail -n 40 "$out/build.log" >&2
	echo "dpkg-buildpackage failed: $out/build.log" >&2
	exit 1
}
rm -f "$out"/*.deb "$out"/*.buildinfo "$out"/*.changes
mv "$out"/src/*.deb "$out"/src/*.buildinfo "$out"/src/*.changes "$out"/
rm -rf "$out/src"
deb=$(ls "$out"/bootbank_"$version"_*.deb)
echo "built $deb"
if command -v lintian >/dev/null; then
	# Errors fail the build; the warnings kept are listed in docs/packaging.md. The tags go to
	# the file first and are shown after: piped into tee, lintian's exit status was lost (sh has
	# no pipefail), and an error did not fail make deb. An E: line fails it as well, should
	# lintian ever exit 0 with one.
	status=0
	lintian --fail-on error "$deb" >"$out/lintian.txt" || status=$?
	cat "$out/lintian.txt"
	if [ "$status" -ne 0 ] || grep -q '^E: ' "$out/lintian.txt"; then
		echo "lintian reports errors (exit $status): $out/lintian.txt" >&2
		exit 1
	fi
fi
