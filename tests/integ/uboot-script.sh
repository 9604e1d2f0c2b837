#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The U-Boot side of bootbank, run by real U-Boot 2023.01 (Debian's u-boot-qemu, qemu_arm64
# build) under qemu-system-aarch64 (TCG, no kernel, no disk): the boot script
# (bootloader-hooks/uboot/boot.cmd, built with mkimage) over every reachable boot state of two
# banks, with and without the rollback key, compared with the C model (lib/bk-select.c through
# tests/tools/bk-model): the bank, the reason, whether the state changed and every variable the
# script leaves for `saveenv`. Then the script's handling of malformed values, and the
# environment in both directions:
#   - U-Boot boots from a flash environment that the `uboot` backend wrote (starting from the
#     board's default environment) and fw_setenv amended: it runs the bootcmd from it and
#     decides from its boot state;
#   - what U-Boot serialises (`env export -c`, the function `saveenv` uses) is read by
#     fw_printenv and by the backend;
#   - a real `saveenv` to the flash. QEMU 7.2's CFI flash rejects U-Boot 2023.01's buffered
#     writes ("Flash buffer write timeout"), so there it fails, and the script must then not
#     spend a try on an unconfirmed bank: it boots the good bank instead. Should the write
#     succeed (another QEMU), the flash must hold the model's next state.
# All cases run in two U-Boot boots (one per CPU); each case is `source` of boot.scr with
# bootbank_dryrun=1 after the case's variables were set exactly as the backend writes them
# (tests/tools/uboot-env setenv).
. "$(dirname "$0")/lib.sh"

# UBOOT_BIN and UBOOT_SCRIPT override the U-Boot build and the script (to check that the
# comparison fails for a wrong script).
UBOOT_BIN=${UBOOT_BIN:-/usr/lib/u-boot/qemu_arm64/u-boot.bin}
for p in qemu-system-aarch64 mkimage fw_printenv fw_setenv xxd; do
	command -v $p >/dev/null || bk_skip "$p is not installed (scripts/deps.sh)"
done
[ -f "$UBOOT_BIN" ] || bk_skip "$UBOOT_BIN is missing (apt-get install u-boot-qemu)"
MODEL=$(realpath "${BK_BUILD:-build/cc}/tests/tools/bk-model")
UENV=$(realpath "${BK_BUILD:-build/cc}/tests/tools/uboot-env")
[ -x "$MODEL" ] && [ -x "$UENV" ] || bk_skip "bk-model or uboot-env is not built (make tests)"
BOOTCMD_SRC=$(realpath "${UBOOT_SCRIPT:-bootloader-hooks/uboot/boot.cmd}")
tmp=$(bk_tmp)

# Guest addresses (RAM is 0x40000000-0x50000000; U-Boot relocates itself to the top).
SCR=0x44000000  # boot.scr
DRV=0x45000000  # the driver script of a run
EXP=0x4f000000  # env export -c
EXP_SIZE=0x4000 # bytes exported (the CRC covers all of them)

# run_uboot OUT FLASH [FILE ADDR]...: boot U-Boot with FLASH as its environment flash (bank 1)
# and each FILE loaded at ADDR; the console (without carriage returns) goes to OUT.
run_uboot() {
	local out=$1 flash=$2 args=() rc
	shift 2
	while [ $# -gt 0 ]; do
		args+=(-device "loader,file=$1,addr=$2,force-raw=on")
		shift 2
	done
	timeout 600 qemu-system-aarch64 -machine virt -cpu cortex-a57 -m 256 -nographic \
		-bios "$UBOOT_BIN" -no-reboot -nic none \
		-drive "if=pflash,unit=1,format=raw,file=$flash" "${args[@]}" </dev/null >"$out.raw" 2>&1
	rc=$?
	tr -d '\r' <"$out.raw" >"$out"
	return $rc
}

# new_flash FILE: an erased 64 MiB flash bank (the virt board's second bank holds the env).
new_flash() {
	rm -f "$1"
	truncate -s 64M "$1"
}

# The board's environment: flash bank 1, offset 0, 0x40000 bytes, one copy (the qemu_arm64
# build has no redundant environment). ROOT/etc/fw_env.config names it beneath the sandbox
# root; fw_printenv gets the same line with the host path.
ROOT=$tmp/root
mkdir -p "$ROOT/etc/bootbank" "$ROOT/var/lib/bootbank/uboot"
FLASH=$ROOT/var/lib/bootbank/uboot/flash1.img
echo '/var/lib/bootbank/uboot/flash1.img 0x0 0x40000' >"$ROOT/etc/fw_env.config"
echo "$FLASH 0x0 0x40000" >"$tmp/fw_env.config"
FWCFG=$tmp/fw_env.config

check "mkimage builds boot.scr from boot.cmd" \
	mkimage -A arm64 -O linux -T script -C none -n bootbank -d "$BOOTCMD_SRC" "$tmp/boot.scr" \
	-q
[ -s "$tmp/boot.scr" ] || bk_done

# mkscript SRC DST: a U-Boot script image.
mkscript() {
	mkimage -A arm64 -O linux -T script -C none -n bootbank-test -d "$1" "$2" >/dev/null
}

# --- 1. every reachable boot state, with and without the key, against the model -----------
# Every reachable state as it is; every twentieth again with big numbers (10 digits, tries
# 98-100) and with numbers that cross a digit (9 -> 10), for the script's hex arithmetic.
n=0
for scale in identity big carry; do
	"$MODEL" enumerate --scale $scale >"$tmp/states.$scale" || not_ok "bk-model enumerate --scale $scale"
	if [ $scale != identity ]; then
		awk 'NR % 20 == 1' "$tmp/states.$scale" >"$tmp/states.tmp" && mv "$tmp/states.tmp" "$tmp/states.$scale"
	fi
	while read -r state; do
		echo "$n 0 $state"
		echo "$((n + 1)) 1 $state"
		n=$((n + 2))
	done <"$tmp/states.$scale"
done >"$tmp/cases.txt"
n_identity=$(wc -l <"$tmp/states.identity")
check "the model reaches more than 1000 boot states of two banks ($n_identity)" test "$n_identity" -gt 1000
"$MODEL" decide <"$tmp/cases.txt" >"$tmp/expected.txt" || not_ok "bk-model decide"

# The U-Boot commands that set each case's variables, as the uboot backend writes them.
awk '{ id = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); print id, $0 }' "$tmp/cases.txt" |
	"$UENV" setenv >"$tmp/setenv.txt" || not_ok "uboot-env setenv"
check "one setenv line per case" test "$(wc -l <"$tmp/setenv.txt")" -eq "$n"

# The board's flash environment, written by fw_setenv from a default environment: U-Boot runs
# the driver at DRV as soon as it has read it.
new_flash "$tmp/drv-flash.img"
printf 'bootdelay=0\nbootcmd=source %s; poweroff\n' $DRV >"$tmp/drv-default.env"
echo "$tmp/drv-flash.img 0x0 0x40000" >"$tmp/drv-fw_env.config"
check "fw_setenv writes the driver's environment into the flash image" \
	fw_setenv -c "$tmp/drv-fw_env.config" -f "$tmp/drv-default.env" bootbank_test 1

# driver CASES SCRIPT: a driver script that runs boot.scr once per case and prints
# "R ID KEY BANK REASON CHANGED A B FLOOR p=PIN x=LEFTOVERS" (LEFTOVERS: bootbank_key and
# bootbank_t, which the script must delete).
driver() {
	{
		echo 'setenv bootbank_dryrun 1'
		echo 'setenv verify n'
		awk -v scr=$SCR 'NR == FNR { key[$1] = $2; next }
			{
				id = $1; $1 = ""; print
				if (key[id] == 1) print "setenv bootbank_key rollback"
				print "source " scr
				print "echo \"R " id " " key[id] " ${bootbank_bank} ${bootbank_reason} ${bootbank_changed}" \
					" ${bootbank_A_state}:${bootbank_A_gen}:${bootbank_A_tries}:${bootbank_A_epoch}" \
					" ${bootbank_B_state}:${bootbank_B_gen}:${bootbank_B_tries}:${bootbank_B_epoch}" \
					" ${bootbank_floor} p=${bootbank_pin} x=${bootbank_key}${bootbank_t}\""
			}' "$tmp/cases.txt" "$1"
	} >"$2"
}

# Two halves, two U-Boots at once.
head -n "$((n / 2))" "$tmp/setenv.txt" >"$tmp/setenv.1"
tail -n "+$((n / 2 + 1))" "$tmp/setenv.txt" >"$tmp/setenv.2"
for i in 1 2; do
	driver "$tmp/setenv.$i" "$tmp/driver.$i.cmd"
	mkscript "$tmp/driver.$i.cmd" "$tmp/driver.$i.scr"
	cp --sparse=always "$tmp/drv-flash.img" "$tmp/drv-flash.$i.img"
done
start=$(date +%s%N)
run_uboot "$tmp/run.1" "$tmp/drv-flash.1.img" "$tmp/boot.scr" $SCR "$tmp/driver.1.scr" $DRV &
pid1=$!
run_uboot "$tmp/run.2" "$tmp/drv-flash.2.img" "$tmp/boot.scr" $SCR "$tmp/driver.2.scr" $DRV
rc2=$?
wait $pid1
rc1=$?
ms=$((($(date +%s%N) - start) / 1000000))
check "U-Boot ran $n cases in two boots and powered off (exit $rc1 $rc2, $ms ms)" \
	test "$rc1" -eq 0 -a "$rc2" -eq 0
check "U-Boot read the environment fw_setenv wrote (bootcmd ran the driver)" \
	grep -q "Executing script at ${DRV#0x}" "$tmp/run.1"
cat "$tmp/run.1" "$tmp/run.2" | grep '^R ' >"$tmp/uboot.txt"
check "U-Boot printed one result per case ($(wc -l <"$tmp/uboot.txt") of $n)" \
	test "$(wc -l <"$tmp/uboot.txt")" -eq "$n"
check "no case left bootbank_key or bootbank_t in the environment" \
	test -z "$(grep -v ' x=$' "$tmp/uboot.txt" | head -5)"

# "ID KEY BANK REASON CHANGED STATE" from both sides, U-Boot's pin "" being the model's none.
awk '{ pin = substr($10, 3); if (pin == "") pin = "none"
	print $2, $3, $4, $5, $6, "A=" $7, "B=" $8, "floor=" $9, "pin=" pin }' \
	"$tmp/uboot.txt" | sort -n >"$tmp/uboot-decisions.txt"
sort -n "$tmp/expected.txt" >"$tmp/model-decisions.txt"
if diff <(cut -d' ' -f1-4 "$tmp/model-decisions.txt") <(cut -d' ' -f1-4 "$tmp/uboot-decisions.txt") >"$tmp/diff1"; then
	ok "U-Boot picks the model's bank and reason in all $n cases"
else
	not_ok "U-Boot and the model disagree on bank/reason (ID KEY BANK REASON; < model, > U-Boot):"
	head -20 "$tmp/diff1" | sed 's/^/#   /'
fi
if diff <(cut -d' ' -f1,2,5- "$tmp/model-decisions.txt") <(cut -d' ' -f1,2,5- "$tmp/uboot-decisions.txt") >"$tmp/diff2"; then
	ok "U-Boot leaves the model's next state (and changes nothing when the model does not) in all $n cases"
else
	not_ok "U-Boot and the model disagree on the saved state (ID KEY CHANGED STATE; < model, > U-Boot):"
	head -20 "$tmp/diff2" | sed 's/^/#   /'
fi
n_changed=$(awk '$5 == 1' "$tmp/model-decisions.txt" | wc -l)
check "both kinds of case are covered ($n_changed change the state, $((n - n_changed)) do not)" \
	test "$n_changed" -gt 100 -a "$((n - n_changed))" -gt 100

# --- 2. malformed values: never trusted --------------------------------------------------------
# "ID SETENV... | EXPECTED-BANK EXPECTED-REASON EXPECTED-CHANGED VAR=VALUE-AFTER ..."
GOOD='setenv bootbank_A_state good; setenv bootbank_A_gen 1; setenv bootbank_A_tries 0; setenv bootbank_A_epoch 1; setenv bootbank_floor 1; setenv bootbank_pin; setenv bootbank_key'
B='setenv bootbank_B_state staged; setenv bootbank_B_gen 2; setenv bootbank_B_tries 3; setenv bootbank_B_epoch 1'
cat >"$tmp/bad.txt" <<EOF
gen-leading-zero|$GOOD; $B; setenv bootbank_B_gen 02|A primary 0 bootbank_B_gen=02 bootbank_B_tries=3
tries-hex-letter|$GOOD; $B; setenv bootbank_B_tries 1a|A primary 0 bootbank_B_tries=1a
tries-above-100|$GOOD; $B; setenv bootbank_B_tries 101|A primary 0 bootbank_B_tries=101
gen-11-digits|$GOOD; $B; setenv bootbank_B_gen 10000000000|A primary 0 bootbank_B_gen=10000000000
epoch-sign|$GOOD; $B; setenv bootbank_B_epoch -1|A primary 0 bootbank_B_epoch=-1
epoch-0x|$GOOD; $B; setenv bootbank_B_epoch 0x1|A primary 0 bootbank_B_epoch=0x1
state-unknown|$GOOD; $B; setenv bootbank_B_state tried|A primary 0 bootbank_B_state=tried
state-bad-A|$GOOD; $B; setenv bootbank_A_state gut|B primary 1 bootbank_A_state=gut bootbank_B_tries=2
floor-junk|$GOOD; $B; setenv bootbank_floor one|B emergency 0 bootbank_B_tries=3 bootbank_floor=one
pin-junk|$GOOD; $B; setenv bootbank_pin C|B primary 1 bootbank_pin= bootbank_B_tries=2
pin-dash|$GOOD; $B; setenv bootbank_pin -|B primary 1 bootbank_pin= bootbank_B_tries=2
state-option|$GOOD; $B; setenv bootbank_B_state -a|A primary 0 bootbank_B_state=-a bootbank_B_tries=3
pin-junk-key|$GOOD; $B; setenv bootbank_pin C; setenv bootbank_key rollback|A rollback 1 bootbank_pin=A bootbank_B_tries=3
absent-all|setenv bootbank_A_state; setenv bootbank_A_gen; setenv bootbank_A_tries; setenv bootbank_A_epoch; setenv bootbank_B_state; setenv bootbank_B_gen; setenv bootbank_B_tries; setenv bootbank_B_epoch; setenv bootbank_floor; setenv bootbank_pin|- none 0 bootbank_A_state=
absent-floor|$GOOD; $B; setenv bootbank_floor|B primary 1 bootbank_floor= bootbank_B_tries=2
EOF
{
	echo 'setenv bootbank_dryrun 1'
	while IFS='|' read -r id cmds expect; do
		echo "$cmds"
		echo "source $SCR"
		set -- $expect
		shift 3
		printf 'echo "M %s ${bootbank_bank} ${bootbank_reason} ${bootbank_changed}' "$id"
		for kv in "$@"; do printf ' %s=${%s}' "${kv%%=*}" "${kv%%=*}"; done
		printf '"\n'
	done <"$tmp/bad.txt"
	# What U-Boot serialises (env export -c is saveenv's format) for fw_printenv and the
	# backend: a state the script has just changed (B takes a try, the key sets a pin).
	echo "$GOOD; $B"
	echo "source $SCR"
	echo "setenv bootbank_key rollback"
	echo "source $SCR"
	echo "setenv bootbank_dryrun; setenv verify; setenv bootbank_test"
	echo "env export -c -s $EXP_SIZE $EXP"
	echo "echo EXPORT-BEGIN; md.b $EXP $EXP_SIZE; echo EXPORT-END"
	echo 'poweroff'
} >"$tmp/bad.cmd"
mkscript "$tmp/bad.cmd" "$tmp/bad.scr"
cp --sparse=always "$tmp/drv-flash.img" "$tmp/bad-flash.img"
run_uboot "$tmp/run.bad" "$tmp/bad-flash.img" "$tmp/boot.scr" $SCR "$tmp/bad.scr" $DRV
while IFS='|' read -r id cmds expect; do
	got=$(grep "^M $id " "$tmp/run.bad" | cut -d' ' -f3-)
	if [ "$got" = "$expect" ]; then
		ok "malformed value ($id): $expect"
	else
		not_ok "malformed value ($id): expected '$expect', U-Boot: '$got'"
	fi
done <"$tmp/bad.txt"
check "the script says what it did not trust" grep -q 'bank B: malformed boot state, treated as bad' "$tmp/run.bad"

# md.b lines are "ADDR: XX XX ... ASCII": the hex bytes back into a file.
sed -n '/^EXPORT-BEGIN/,/^EXPORT-END/p' "$tmp/run.bad" | grep -E '^[0-9a-f]{8}:' |
	cut -c11-57 | xxd -r -p >"$tmp/exported.env"
check "U-Boot's export is $EXP_SIZE bytes" test "$(stat -c %s "$tmp/exported.env")" -eq $((EXP_SIZE))
echo "$tmp/exported.env 0x0 $EXP_SIZE" >"$tmp/exp-fw_env.config"
check "fw_printenv reads U-Boot's serialised environment (B took a try)" \
	test "$(fw_printenv -c "$tmp/exp-fw_env.config" -n bootbank_B_tries 2>/dev/null)" = 2
mkdir -p "$tmp/exproot/etc" "$tmp/exproot/var"
cp "$tmp/exported.env" "$tmp/exproot/var/u.env"
echo "/var/u.env 0x0 $EXP_SIZE" >"$tmp/exproot/etc/fw_env.config"
check "the uboot backend reads the state U-Boot left (rollback pin A, B took a try)" \
	test "$("$UENV" load "$tmp/exproot")" = "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=A"
check "and U-Boot's own variables are still there (bootcmd)" \
	grep -q "^bootcmd=source $DRV" <(fw_printenv -c "$tmp/exp-fw_env.config" 2>/dev/null)

# --- 3. a real boot: U-Boot reads the backend's environment, decides, saves ------------------
# The backend writes the boot state into the erased flash, starting from the board's default
# environment; fw_setenv adds the operator's setting; U-Boot boots it with no driver at all.
new_flash "$FLASH"
printf 'bootdelay=0\nbootcmd=source %s; poweroff\n' $SCR >"$ROOT/etc/bootbank/uboot-default.env"
STATE='A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none'
expect_exit 0 "the uboot backend saves into a never-written environment from the default one" \
	"$UENV" save "$ROOT" "$STATE"
check "fw_printenv reads what the uboot backend wrote" \
	test "$(fw_printenv -c "$FWCFG" -n bootbank_B_state 2>/dev/null)" = staged
check "fw_printenv sees the default environment kept (bootcmd)" \
	test "$(fw_printenv -c "$FWCFG" -n bootcmd 2>/dev/null)" = "source $SCR; poweroff"
check "fw_setenv changes the environment (bootbank_kernel)" \
	fw_setenv -c "$FWCFG" bootbank_kernel /boot/Image
check "the uboot backend reads what fw_setenv wrote" \
	test "$("$UENV" load "$ROOT")" = "$STATE"
sum_before=$(sha256sum <"$FLASH")
run_uboot "$tmp/run.boot" "$FLASH" "$tmp/boot.scr" $SCR
check "U-Boot loaded the environment from flash (CRC good)" \
	grep -q 'Loading Environment from Flash... OK' "$tmp/run.boot"
check "U-Boot ran boot.scr from the bootcmd in it and chose B (primary, takes a try)" \
	grep -q 'bootbank: bank B reason primary changed 1' "$tmp/run.boot"
if grep -q 'Saving Environment to Flash' "$tmp/run.boot" && ! grep -q 'Failed (1)' "$tmp/run.boot"; then
	check "saveenv wrote the model's next state, read by the backend" \
		test "$("$UENV" load "$ROOT")" = "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none"
else
	check "saveenv ran and failed (QEMU flash): the script reports it" \
		grep -q 'bootbank: cannot save the boot state (saveenv failed)' "$tmp/run.boot"
	check "and does not spend the unrecorded try on B: it boots the good bank A" \
		grep -q 'bootbank: cannot boot bank A (' "$tmp/run.boot"
	check "the failed save is not reset: no reset after an unloadable good bank" \
		grep -q 'poweroff' "$tmp/run.boot"
fi
check "U-Boot used the kernel path fw_setenv set (bootbank_kernel)" \
	grep -q 'cannot boot bank A (/boot/Image from ' "$tmp/run.boot"

# A state the model does not change: U-Boot must not write the flash at all.
new_flash "$FLASH"
expect_exit 0 "the backend writes a state that needs no change" \
	"$UENV" save "$ROOT" 'A=good:1:0:1 B=good:2:0:1 floor=1 pin=none'
sum_before=$(sha256sum <"$FLASH")
run_uboot "$tmp/run.same" "$FLASH" "$tmp/boot.scr" $SCR
check "U-Boot chose B (primary) and changed nothing" \
	grep -q 'bootbank: bank B reason primary changed 0' "$tmp/run.same"
check "nothing was saved: the flash is unchanged" \
	test "$(sha256sum <"$FLASH")" = "$sum_before"
check "and U-Boot did not try to save" test -z "$(grep 'Saving Environment' "$tmp/run.same")"

bk_done
