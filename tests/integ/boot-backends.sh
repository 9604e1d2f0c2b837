#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The uboot, systemd-boot and custom boot state backends end to end:
#   1. every reachable boot state of two banks saved and loaded back through each backend
#      (on a tmpfs: the fsyncs are real calls but cost nothing); what comes back is the state,
#      except the documented losses of systemd-boot (trying with no tries left reads as bad);
#   2. bankctl's boot verbs (activate, boot --simulate, mark-good, rollback, roll-forward,
#      mark-bad) on a sandbox root with each backend, checked in the loader's own terms
#      (fw_printenv, the entry file names, the custom executable's calls);
#   3. systemd-bless-boot (the real one, from systemd-boot) and bankctl agreeing on the same
#      entry: run in a chroot without the container marker and with an efivarfs stand-in
#      holding LoaderBootCountPath, as systemd-boot leaves it after booting a counted entry.
. "$(dirname "$0")/lib.sh"

bk_need_root
# Part 3 bind-mounts the host's /usr, /etc, /proc, /dev and /sys into a chroot beneath the
# test's directory: only ever in a private mount namespace (the runner gives one; a direct
# run gets its own), and everything is detached before the directory is removed.
if [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/1/ns/mnt 2>/dev/null)" ]; then
	exec unshare -m --propagation private bash "$0" "$@"
fi
MODEL=$(realpath "${BK_BUILD:-build/cc}/tests/tools/bk-model")
UENV=$(realpath "${BK_BUILD:-build/cc}/tests/tools/uboot-env")
FAKE=$(realpath tests/fake-bin/custom-backend)
[ -x "$MODEL" ] && [ -x "$UENV" ] || bk_skip "bk-model or uboot-env is not built (make tests)"
[ -x "$BANKCTL" ] || bk_skip "bankctl is not built"
tmp=$(bk_tmp)
mount -t tmpfs -o size=256m bootbank-test "$tmp" || bk_skip "cannot mount a tmpfs"
trap 'umount -R -l "$tmp"; bk_cleanup' EXIT
"$MODEL" enumerate >"$tmp/states" || not_ok "bk-model enumerate"
n=$(wc -l <"$tmp/states")

# new_root DIR BACKEND: a sandbox root whose system.conf selects BACKEND, with its store.
new_root() {
	local r=$1
	rm -rf "$r"
	mkdir -p "$r/etc/bootbank" "$r/var/lib/bootbank/uboot" "$r/boot/efi/loader" \
		"$r/usr/lib/bootbank" "$r/fake"
	printf '[system]\nbootloader = %s\n[boot]\ncustom-backend = /usr/lib/bootbank/custom-backend\n' \
		"$2" >"$r/etc/bootbank/system.conf"
	# uboot: two copies of 16 KiB, never written, and the board's default environment
	truncate -s 16K "$r/var/lib/bootbank/uboot/env.0" "$r/var/lib/bootbank/uboot/env.1"
	printf '/var/lib/bootbank/uboot/env.0 0x0 0x4000\n/var/lib/bootbank/uboot/env.1 0x0 0x4000\n' \
		>"$r/etc/fw_env.config"
	printf "%s 0x0 0x4000\n%s 0x0 0x4000\n" "$r/var/lib/bootbank/uboot/env.0" \
		"$r/var/lib/bootbank/uboot/env.1" >"$r/host-fw_env.config"
	printf 'bootcmd=run bootbank\nbootdelay=1\n' >"$r/etc/bootbank/uboot-default.env"
	# custom: the fake executable beneath the root, its state in DIR/fake
	cp "$FAKE" "$r/usr/lib/bootbank/custom-backend"
}

# --- 1. every reachable state through each backend -------------------------------------------
for backend in uboot systemd-boot custom; do
	new_root "$tmp/rt" $backend
	export BK_FAKE_DIR=$tmp/rt/fake
	# custom: every seventh state (each costs a dozen runs of the executable)
	if [ $backend = custom ]; then
		awk 'NR % 7 == 1' "$tmp/states" >"$tmp/states.in"
	else
		cp "$tmp/states" "$tmp/states.in"
	fi
	n=$(wc -l <"$tmp/states.in")
	start=$(date +%s%N)
	if ! "$UENV" --backend $backend roundtrip "$tmp/rt" <"$tmp/states.in" >"$tmp/rt.$backend" 2>"$tmp/rt.err"; then
		not_ok "$backend: roundtrip failed: $(head -c 300 "$tmp/rt.err")"
		continue
	fi
	ms=$((($(date +%s%N) - start) / 1000000))
	check "$backend: all $n states saved and loaded ($ms ms)" test "$(wc -l <"$tmp/rt.$backend")" -eq "$n"
	# "STATE LOADED": 4 words each; what should come back
	if [ $backend = systemd-boot ]; then
		expect='{ want = $1 " " $2 " " $3 " " $4; gsub(/trying:([0-9]+):0:/, "bad:&", want);
			gsub(/bad:trying:/, "bad:", want) }'
	else
		expect='{ want = $1 " " $2 " " $3 " " $4 }'
	fi
	awk "$expect"'{ got = $5 " " $6 " " $7 " " $8; if (got != want) print "  " $1, $2, $3, $4, "->", got }' \
		"$tmp/rt.$backend" >"$tmp/rt.diff"
	if [ -s "$tmp/rt.diff" ]; then
		not_ok "$backend: states that do not come back as documented:"
		head -5 "$tmp/rt.diff"
	else
		ok "$backend: every state comes back$([ $backend = systemd-boot ] && echo ' (trying with no tries left as bad)')"
	fi
done
n=$(wc -l <"$tmp/states")
lost=$(awk '$1 " " $2 " " $3 " " $4 != $5 " " $6 " " $7 " " $8' "$tmp/rt.systemd-boot" | wc -l)
check "systemd-boot loses only 'trying, no tries left' ($lost of $n states), none of them eligible" \
	test "$lost" -gt 0 -a "$lost" -eq "$(grep -c -E 'trying:[0-9]+:0:' <(cut -d' ' -f1-4 "$tmp/rt.systemd-boot"))"

# --- 2. bankctl's verbs through each backend ------------------------------------------------
# run_flow ROOT: from "A good, B staged (not activated)": activate B, boot, mark-good, rollback,
# roll-forward, mark-bad; after each, the state bankctl reads and the loader's view (VIEW_CMD).
flow_steps='activate B|A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none
boot --simulate|A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none
mark-good|A=good:1:0:1 B=good:2:0:1 floor=1 pin=none
rollback|A=good:1:0:1 B=good:2:0:1 floor=1 pin=A
roll-forward|A=good:1:0:1 B=good:2:0:1 floor=1 pin=none
mark-bad B|A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none'
for backend in uboot systemd-boot custom; do
	r=$tmp/flow-$backend
	new_root "$r" $backend
	export BK_FAKE_DIR=$r/fake
	"$UENV" --backend $backend save "$r" 'A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none' ||
		not_ok "$backend: initial save"
	while IFS='|' read -r verb want; do
		# shellcheck disable=SC2086
		if ! "$BANKCTL" --root "$r" $verb >"$tmp/out" 2>&1; then
			not_ok "$backend: bankctl $verb: $(head -c 300 "$tmp/out")"
			continue
		fi
		got=$("$UENV" --backend $backend load "$r" | head -1)
		check "$backend: bankctl $verb leaves $want" test "$got" = "$want"
		case $backend in
		uboot) fw_printenv -c "$r/host-fw_env.config" 2>/dev/null >"$r/view.$verb" ;;
		systemd-boot) (cd "$r/boot/efi/loader/entries" && ls && grep -H '^sort-key' ./*) >"$r/view.$verb" ;;
		custom) cat "$r/fake/primary" "$r/fake/state.A" "$r/fake/state.B" >"$r/view.$verb" ;;
		esac
	done <<<"$flow_steps"
done
r=$tmp/flow-uboot
check "uboot: fw_printenv shows the try bankctl's boot took (bootbank_B_tries=2)" \
	grep -qx 'bootbank_B_tries=2' "$r/view.boot --simulate"
check "uboot: fw_printenv shows the pin of the rollback and the board's bootcmd" \
	grep -qx 'bootbank_pin=A' "$r/view.rollback"
check "uboot: the board's default environment is kept (bootcmd)" grep -qx 'bootcmd=run bootbank' "$r/view.mark-bad B"
check "uboot: roll-forward deletes bootbank_pin" test -z "$(grep bootbank_pin "$r/view.roll-forward")"
r=$tmp/flow-systemd-boot
check "systemd-boot: activate names B's entry +3" grep -qx 'bootbank-b+3.conf' "$r/view.activate B"
check "systemd-boot: a boot renames it +2-1, like systemd-boot" grep -qx 'bootbank-b+2-1.conf' "$r/view.boot --simulate"
check "systemd-boot: mark-good drops the counter, like systemd-bless-boot good" grep -qx 'bootbank-b.conf' "$r/view.mark-good"
# B was good: no count of tries was running, DONE starts at 0 (part 3 shows a running one kept).
check "systemd-boot: mark-bad is +0-DONE, like systemd-bless-boot bad" grep -qx 'bootbank-b+0-0.conf' "$r/view.mark-bad B"
check "systemd-boot: the rollback pin is A's sort-key (A sorts first)" \
	grep -qx './bootbank-a.conf:sort-key bootbank-0' "$r/view.rollback"
check "systemd-boot: roll-forward gives both the same sort-key (the generation decides)" \
	test "$(grep -c 'sort-key bootbank-1' "$r/view.roll-forward")" -eq 2
r=$tmp/flow-custom
check "custom: activate made B primary and good" test "$(tr '\n' ' ' <"$r/view.activate B")" = "B good good "
check "custom: rollback made A primary" test "$(head -1 "$r/view.rollback")" = A
check "custom: mark-bad told the executable B is bad, A primary" \
	test "$(tr '\n' ' ' <"$r/view.mark-bad B")" = "A good bad "
check "custom: only set-state and set-primary change anything (no other verbs were called)" \
	test -z "$(grep -v -E '^(get-primary|get-state [AB]|set-state [AB] (good|bad)|set-primary [AB])$' "$r/fake/calls")"

# --- 3. systemd-bless-boot and bankctl on the same entry --------------------------------------
BLESS=/lib/systemd/systemd-bless-boot
[ -x $BLESS ] || BLESS=/usr/lib/systemd/systemd-bless-boot
if [ ! -x $BLESS ]; then
	echo "# systemd-bless-boot is not installed (apt-get install systemd-boot): part 3 skipped"
	bk_done
fi
# A root for systemd-bless-boot: the host's /usr, /etc, /proc, /dev and the test's tmpfs, but
# no /.dockerenv (it refuses to run "in a container") and a stand-in for efivarfs.
cr=$tmp/chroot
mkdir -p "$cr"
for d in usr etc proc dev sys; do
	mkdir -p "$cr/$d"
	mount --rbind "/$d" "$cr/$d"
done
ln -s usr/bin "$cr/bin"
ln -s usr/lib "$cr/lib"
ln -s usr/lib64 "$cr/lib64"
ln -s usr/sbin "$cr/sbin"
mount -t tmpfs bootbank-efivars "$cr/sys/firmware" || bk_skip "cannot mount over /sys/firmware"
mkdir -p "$cr/sys/firmware/efi/efivars" "$cr/esp/loader"
r=$tmp/bless
new_root "$r" systemd-boot
mount --bind "$r/boot/efi" "$cr/esp"

# loader_booted ENTRY: what systemd-boot leaves when it boots a counted entry (the path of the
# entry as it named it before the boot, in LoaderBootCountPath).
loader_booted() {
	local v=$cr/sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
	{
		printf '\006\000\000\000'
		printf '%s' "\\loader\\entries\\$1" | iconv -f utf-8 -t utf-16le
		printf '\000\000'
	} >"$v"
}
bless() {
	chroot "$cr" env SYSTEMD_RELAX_ESP_CHECKS=1 "$BLESS" --path=/esp "$@" 2>&1
}
entries() { (cd "$r/boot/efi/loader/entries" && ls | tr '\n' ' '); }
view() { "$UENV" --backend systemd-boot load "$r" | head -1; }

"$UENV" --backend systemd-boot save "$r" 'A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none'
# systemd-boot boots B: renames +3 to +2-1 and remembers the name it booted.
mv "$r/boot/efi/loader/entries/bootbank-b+3.conf" "$r/boot/efi/loader/entries/bootbank-b+2-1.conf"
loader_booted 'bootbank-b+2-1.conf'
out=$(bless status)
check "systemd-bless-boot status: indeterminate ($out)" test "$out" = indeterminate
check "bankctl reads the same boot: B trying, 2 tries left" \
	test "$(view)" = 'A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none'
bless good >/dev/null
check "systemd-bless-boot good renames the entry ($(entries))" test "$(entries)" = 'bootbank-a.conf bootbank-b.conf '
check "bankctl reads B good" test "$(view)" = 'A=good:1:0:1 B=good:2:0:1 floor=1 pin=none'
bless indeterminate >/dev/null
bless bad >/dev/null
check "systemd-bless-boot bad: +0-DONE ($(entries))" test "$(entries)" = 'bootbank-a.conf bootbank-b+0-1.conf '
check "bankctl reads B bad" test "$(view)" = 'A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none'
out=$(bless status)
check "systemd-bless-boot status after bad: bad ($out)" test "$out" = bad
# The other direction: bankctl marks, systemd-bless-boot sees it.
bless indeterminate >/dev/null
"$BANKCTL" --root "$r" mark-good B >/dev/null 2>&1 || not_ok "bankctl mark-good B"
out=$(bless status)
check "bankctl mark-good: systemd-bless-boot status says good ($out)" test "$out" = good
"$UENV" --backend systemd-boot save "$r" 'A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none'
check "back to trying, the same name systemd-boot gave it" test "$(entries)" = 'bootbank-a.conf bootbank-b+2-1.conf '
"$BANKCTL" --root "$r" mark-bad B >/dev/null 2>&1 || not_ok "bankctl mark-bad B"
out=$(bless status)
check "bankctl mark-bad: systemd-bless-boot status says bad ($out)" test "$out" = bad

bk_done
