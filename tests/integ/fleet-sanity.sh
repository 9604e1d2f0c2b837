#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# ansible-test sanity on the bootbank.fleet collection (docs/fleet.md, "Sanity"), offline:
# fleet/ansible/tests/ansible-test-offline gives the sanity tests' virtual environments
# Debian's packages instead of pip's. One "ok" per sanity test that ran and passed, one
# "# skipped" line per test ansible-test skipped (with its reason); then a control: the same
# run on a copy with a rule broken on purpose must fail and name the rule.
. "$(dirname "$0")/lib.sh"
command -v ansible-test >/dev/null || bk_skip "needs ansible-test (ansible-core)"
repo=$(cd "$(dirname "$0")/../.." && pwd)
coll=$repo/fleet/ansible/ansible_collections/bootbank/fleet
tmp=$(bk_tmp)
# ansible-test's home: its sanity virtual environments (each only a .pth file to Debian's
# packages, keyed by their requirements) are kept in the build tree between runs.
home=$tmp/home
[ -n "${BK_BUILD:-}" ] && home=$(realpath -m "$BK_BUILD")/ansible-test-home
mkdir -p "$home"

# A copy of the collection under .../ansible_collections/bootbank/fleet (ansible-test's
# requirement), so its tests/output and venvs stay out of the source tree.
copy() { # DIR
	mkdir -p "$1/ansible_collections/bootbank"
	tar -C "$coll/.." --exclude=fleet/tests/output --exclude=__pycache__ -cf - fleet |
		tar -C "$1/ansible_collections/bootbank" -xf -
}

sanity() { # DIR ARGS...: ansible-test sanity in the copy in DIR, a clean environment
	local dir=$1/ansible_collections/bootbank/fleet
	shift
	(cd "$dir" && timeout 600 env -i HOME="$home" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		LANG=C.UTF-8 "$repo/fleet/ansible/tests/ansible-test-offline" sanity --python 3.11 \
		--color no --junit "$@")
}

# The results in DIR's junit files: "NAME passed|failed|skipped REASON", one a line.
results() {
	/usr/bin/python3 - "$1/ansible_collections/bootbank/fleet/tests/output/junit" <<'EOF'
import glob, os, sys
import xml.etree.ElementTree as ET
for f in sorted(glob.glob(os.path.join(sys.argv[1], '*.xml'))):
    for case in ET.parse(f).getroot().iter('testcase'):
        name = case.get('name').replace('-python-3.11', '')
        failure = case.find('failure')
        skipped = case.find('skipped')
        if failure is not None:
            print(name, 'failed', ' '.join((failure.text or failure.get('message', '')).split())[:300])
        elif skipped is not None:
            print(name, 'skipped', ' '.join((skipped.text or '').split()))
        else:
            print(name, 'passed')
EOF
}

start=$SECONDS
copy "$tmp/good"
sanity "$tmp/good" >"$tmp/good.log" 2>&1
rc=$?
ran=() skipped=()
while read -r name state reason; do
	case $state in
	passed) ok "sanity $name" && ran+=("$name") ;;
	failed) not_ok "sanity $name: $reason" && ran+=("$name") ;;
	skipped) echo "# skipped: $name ($reason)" && skipped+=("$name") ;;
	esac
done < <(results "$tmp/good")
check "ansible-test sanity exits 0 (exit $rc, $((SECONDS - start)) s)" [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$tmp/good.log" | grep -v '^#   Running' | head -n 40
echo "# ran (${#ran[@]}): ${ran[*]}"
echo "# skipped (${#skipped[@]}): ${skipped[*]}"
# The tests that need Debian's packages must have run, not been skipped.
for t in ansible-doc compile import pep8 pylint runtime-metadata validate-modules yamllint; do
	check "sanity $t ran" grep -qw -- "$t" <<<" ${ran[*]} "
done

# The control: an option in a module's argument_spec that its documentation lacks.
copy "$tmp/bad"
sed -i 's/^    spec = dict(COMMON_ARGS)$/&\n    spec.update(undocumented_option=dict(type="str"))/' \
	"$tmp/bad/ansible_collections/bootbank/fleet/plugins/modules/bootbank_assess.py"
check "the control's module was broken" grep -q undocumented_option \
	"$tmp/bad/ansible_collections/bootbank/fleet/plugins/modules/bootbank_assess.py"
sanity "$tmp/bad" --test validate-modules >"$tmp/bad.log" 2>&1
rc=$?
check "a module breaking a rule fails ansible-test sanity (exit $rc)" [ "$rc" -ne 0 ]
check "the failure names the module and the rule" \
	grep -q 'plugins/modules/bootbank_assess.py.*undocumented-parameter' "$tmp/bad.log"
grep 'undocumented-parameter' "$tmp/bad.log" | sed 's/^/# control: /'
bk_done
