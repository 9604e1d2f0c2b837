#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The GRUB side of bootbank, run by real GRUB 2.06 in grub-emu (no VM, no loop device for most
# of it): the selection fragment (bootloader-hooks/grub/bootbank-select.cfg) over every
# reachable boot state of two banks, with and without the rollback key, compared with the C
# model (lib/bk-select.c through tests/tools/bk-model): the bank, the reason, the state GRUB
# saved with save_env, and that GRUB writes nothing when the model changes nothing. Then the
# fragment's documented handling of malformed or unwritable state, the full prompt (grub.cfg:
# countdown, hotkeys r and R fed on grub-emu's stdin) on a GPT disk image, the /etc/grub.d
# generator, and (root, loop device) that a grubenv saved by the `grub` backend on a mounted
# ext4 is what GRUB reads at once, without unmounting.
#
# grub-emu: -d DIR is GRUB's prefix (DIR/grub.cfg runs first), -m FILE a device map that
# makes a disk image (hd0); its console is stdin/stdout; `reboot` ends it.
. "$(dirname "$0")/lib.sh"

command -v grub-emu >/dev/null || bk_skip "grub-emu is not installed (apt-get install grub-emu)"
for p in grub-editenv mkfs.ext4 debugfs sfdisk; do
	command -v $p >/dev/null || bk_skip "$p is not installed"
done
MODEL=$(realpath "${BK_BUILD:-build/cc}/tests/tools/bk-model")
[ -x "$MODEL" ] || bk_skip "bk-model is not built (make tests)"
HOOKS=$(realpath bootloader-hooks/grub)
SELECT=$HOOKS/bootbank-select.cfg
tmp=$(bk_tmp)
[ -n "$tmp" ] && [ -d "$tmp" ] || { echo "not ok - no temporary directory"; exit 1; }

# run_emu DIR DEVMAP [KEYS]: run grub-emu with prefix DIR; KEYS (if any) are typed after
# 0.5 s. Output without carriage returns and terminal escapes in $tmp/emu.out. A run that
# does not end (a GRUB prompt waiting for input) is killed after EMU_TIMEOUT seconds.
EMU_TIMEOUT=60
run_emu() {
	local dir=$1 map=$2 keys=${3:-} rc
	if [ -n "$keys" ]; then
		{
			sleep 0.5
			printf '%s' "$keys"
		} | timeout "$EMU_TIMEOUT" grub-emu -d "$dir" -m "$map" >"$tmp/emu.raw" 2>&1
	else
		timeout "$EMU_TIMEOUT" grub-emu -d "$dir" -m "$map" </dev/null >"$tmp/emu.raw" 2>&1
	fi
	rc=$?
	tr -d '\r' <"$tmp/emu.raw" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' >"$tmp/emu.out"
	return $rc
}

# A first run proves grub-emu works here at all (else skip, with its words).
mkdir -p "$tmp/smoke"
printf 'echo bootbank-smoke\nreboot\n' >"$tmp/smoke/grub.cfg"
printf '(hd0) %s\n' /dev/null >"$tmp/smoke.map"
run_emu "$tmp/smoke" "$tmp/smoke.map" || true
grep -q bootbank-smoke "$tmp/emu.out" || bk_skip "grub-emu does not run here: $(head -c 200 "$tmp/emu.out")"

# --- 1. every reachable boot state, with and without the key, against the model ---------
# A case is one grubenv file c/D/F on an ext4 image (100 files per directory: GRUB's ext2
# driver scans directories linearly); its line in cases.txt is "c/D/F KEY STATE".
EXTRA='bootbank_test_extra=keep\me'
: >"$tmp/cases.txt"
n=0
# Every reachable state as it is; every third one again with big numbers (10 digits, tries
# 98-100) and with numbers that cross a digit (9 -> 10), for the script's arithmetic.
for scale in identity big carry; do
	"$MODEL" enumerate --scale $scale >"$tmp/states.$scale" || not_ok "bk-model enumerate --scale $scale"
	if [ $scale != identity ]; then
		awk 'NR % 3 == 1' "$tmp/states.$scale" >"$tmp/states.tmp" && mv "$tmp/states.tmp" "$tmp/states.$scale"
	fi
	while read -r state; do
		for key in 0 1; do
			echo "$((n / 100))/$((n % 100)) $key $state"
			n=$((n + 1))
		done
	done <"$tmp/states.$scale"
done >"$tmp/cases.txt"
n_identity=$(wc -l <"$tmp/states.identity")
check "the model reaches more than 1000 boot states of two banks ($n_identity)" test "$n_identity" -gt 1000

mkdir -p "$tmp/fs/c"
for d in $(seq 0 $(((n - 1) / 100))); do mkdir -p "$tmp/fs/c/$d"; done
awk '{ id = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); print id, $0 }' "$tmp/cases.txt" |
	"$MODEL" write-env "$tmp/fs/c" "$EXTRA" || not_ok "bk-model write-env"
"$MODEL" decide <"$tmp/cases.txt" >"$tmp/expected.txt" || not_ok "bk-model decide"
cp -a "$tmp/fs/c" "$tmp/before"

mkfs.ext4 -q -F -b 1024 -N $((n + 2000)) -L bootbank_boot -d "$tmp/fs" "$tmp/cases.img" \
	$((n + 16384))K >/dev/null
printf '(hd0) %s\n' "$tmp/cases.img" >"$tmp/cases.map"
mkdir -p "$tmp/emu1"
{
	# Sourcing defines bootbank_select and runs it once (here without saving); each case
	# then runs bootbank_select, the code a boot runs, without parsing the file again.
	echo 'set enable_progress_indicator=0'
	echo 'set bootbank_env="(hd0)/c/0/0"'
	echo 'set bootbank_dryrun=1'
	echo "source \"(host)$SELECT\""
	echo 'set bootbank_dryrun=""'
	echo 'function bbt {'
	echo '	set bootbank_env="(hd0)/c/$1"'
	echo '	if [ "$2" = 1 ]; then set bootbank_key=rollback; else set bootbank_key=""; fi'
	echo '	bootbank_select'
	echo '	if [ -z "$bootbank_bank" ]; then set bootbank_bank=-; fi'
	echo '	echo "BBR $1 $2 $bootbank_bank $bootbank_reason"'
	echo '	if [ -n "$bootbank_error" ]; then echo "BBE $1 $2"; fi'
	echo '}'
	awk '{ print "bbt", $1, $2 }' "$tmp/cases.txt"
	echo 'reboot'
} >"$tmp/emu1/grub.cfg"

start=$(date +%s%N)
EMU_TIMEOUT=600 run_emu "$tmp/emu1" "$tmp/cases.map"
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
check "grub-emu ran $n cases in one process and ended with reboot (exit $rc, $ms ms)" test "$rc" -eq 0
grep '^BBR ' "$tmp/emu.out" | cut -d' ' -f2- >"$tmp/grub-decisions.txt"
check "grub-emu printed one decision per case ($(wc -l <"$tmp/grub-decisions.txt") of $n)" \
	test "$(wc -l <"$tmp/grub-decisions.txt")" -eq "$n"
check "no case reported an error" test -z "$(grep '^BBE ' "$tmp/emu.out" | head -5)"

# Bank and reason: "ID KEY BANK REASON" from both sides.
cut -d' ' -f1-4 "$tmp/expected.txt" >"$tmp/model-decisions.txt"
if diff "$tmp/model-decisions.txt" "$tmp/grub-decisions.txt" >"$tmp/diff1"; then
	ok "GRUB picks the model's bank and reason in all $n cases"
else
	not_ok "GRUB and the model disagree on bank/reason (ID KEY BANK REASON; < model, > GRUB):"
	head -n 20 "$tmp/diff1"
fi

# The saved state: read every file back from the image (debugfs reads it as GRUB left it).
rm -rf "$tmp/after"
mkdir -p "$tmp/after"
debugfs -R "rdump /c $tmp/after" "$tmp/cases.img" >/dev/null 2>&1
(cd "$tmp/after/c" && awk '{ print $1 }' "$tmp/cases.txt" | xargs "$MODEL" read-env) \
	>"$tmp/grub-saved.txt"
check "every file GRUB left is a grubenv bankctl loads" test "$(grep -c ' error: ' "$tmp/grub-saved.txt")" -eq 0
awk -v extra="$EXTRA" '{ id = $1; $1 = $2 = $3 = $4 = $5 = ""; sub(/^ +/, ""); print id, $0, extra }' \
	"$tmp/expected.txt" >"$tmp/model-saved.txt"
if diff "$tmp/model-saved.txt" "$tmp/grub-saved.txt" >"$tmp/diff2"; then
	ok "GRUB saves the model's next state (and keeps other variables) in all $n cases"
else
	not_ok "GRUB saved another state than the model's (< model, > GRUB):"
	head -n 20 "$tmp/diff2"
fi

# GRUB writes exactly when the model says the state changes.
awk '$5 == 1 { print $1 }' "$tmp/expected.txt" | sort >"$tmp/model-changed.txt"
diff -rq "$tmp/before" "$tmp/after/c" | sed -n "s|^Files $tmp/before/\([^ ]*\) and .*|\1|p" |
	sort >"$tmp/grub-changed.txt"
if diff "$tmp/model-changed.txt" "$tmp/grub-changed.txt" >"$tmp/diff3"; then
	ok "GRUB rewrote the grubenv in exactly the $(wc -l <"$tmp/model-changed.txt") cases where the state changes"
else
	not_ok "GRUB wrote where the model changes nothing, or the reverse (< model, > GRUB):"
	head -n 20 "$tmp/diff3"
fi
echo "# compared $n cases: $n_identity reachable states x 2 keys, and $(($(wc -l <"$tmp/states.big") + $(wc -l <"$tmp/states.carry"))) of them x 2 keys with big and carry numbers"

# --- 2. what the fragment does with state bankctl never writes ---------------------------
mkdir -p "$tmp/fs2/m" "$tmp/emu2"
mkenv() { # NAME VAR=VALUE...
	local f=$tmp/fs2/m/$1
	shift
	grub-editenv "$f" create
	[ $# -eq 0 ] || grub-editenv "$f" set "$@"
}
good_a="bootbank_A_state=good bootbank_A_gen=1 bootbank_A_tries=0 bootbank_A_epoch=1"
mkenv badstate bootbank_A_state=bogus bootbank_A_gen=2 bootbank_A_epoch=1 \
	bootbank_B_state=good bootbank_B_gen=1 bootbank_B_epoch=1
mkenv leadzero $good_a bootbank_B_state=staged bootbank_B_gen=2 bootbank_B_tries=03 bootbank_B_epoch=1
mkenv octal $good_a bootbank_B_state=staged bootbank_B_gen=010 bootbank_B_tries=1 bootbank_B_epoch=1
mkenv badfloor $good_a bootbank_B_state=staged bootbank_B_gen=2 bootbank_B_tries=2 \
	bootbank_B_epoch=1 bootbank_floor=x1
mkenv badpin $good_a bootbank_pin=C
mkenv fresh
mkenv sparse bootbank_B_state=good
cp "$tmp/fs2/m/sparse" "$tmp/fs2/m/hostenv"
# On the host device: load_env works, save_env cannot ("disk device required").
mkenv hoststaged $good_a bootbank_B_state=staged bootbank_B_gen=2 bootbank_B_tries=2 bootbank_B_epoch=1
mkenv hoststaged2 bootbank_A_state=bad bootbank_A_gen=1 bootbank_B_state=staged bootbank_B_gen=2 \
	bootbank_B_tries=2 bootbank_B_epoch=1
mkdir -p "$tmp/hostenv"
mv "$tmp/fs2/m/hoststaged" "$tmp/fs2/m/hoststaged2" "$tmp/hostenv/"
cp -a "$tmp/fs2/m" "$tmp/before2"
mkfs.ext4 -q -F -b 1024 -d "$tmp/fs2" "$tmp/m.img" 4M >/dev/null
printf '(hd0) %s\n' "$tmp/m.img" >"$tmp/m.map"
{
	echo 'set enable_progress_indicator=0'
	echo 'function bbt {'
	echo '	set bootbank_env="$1"'
	echo '	set bootbank_key="$2"'
	echo "	source \"(host)$SELECT\""
	echo '	echo "BBR $3 [$bootbank_bank] $bootbank_reason other=[$bootbank_other]"'
	echo '}'
	for c in badstate leadzero octal badfloor badpin fresh sparse; do
		echo "bbt (hd0)/m/$c \"\" $c"
	done
	echo 'bbt (hd0)/m/missing "" missing'
	echo "bbt (host)$tmp/hostenv/hoststaged \"\" hoststaged"
	echo "bbt (host)$tmp/hostenv/hoststaged2 \"\" hoststaged2"
	echo 'reboot'
} >"$tmp/emu2/grub.cfg"
run_emu "$tmp/emu2" "$tmp/m.map"
out2=$tmp/emu.out
expect_case() { # NAME EXPECTED-LINE-AFTER-NAME DESCRIPTION
	if grep -qxF "BBR $1 $2" "$out2"; then
		ok "$3"
	else
		not_ok "$3 (got: $(grep "^BBR $1 " "$out2"))"
	fi
}
expect_case badstate "[B] fallback other=[]" "an unknown state makes that bank bad: the other one boots"
check "an unknown state is reported on the console" grep -q "bank A: unknown state 'bogus'" "$out2"
expect_case leadzero "[A] fallback other=[]" "tries with a leading zero (03) are malformed: that bank is bad"
expect_case octal "[A] primary other=[]" "a generation GRUB would read as octal (010) is malformed: that bank is bad (generation 0)"
expect_case badfloor "[B] emergency other=[]" "a malformed floor leaves no bank eligible: emergency boot of the newest"
expect_case badpin "[A] primary other=[]" "a pin that is not A or B is cleared"
expect_case fresh "[] none other=[]" "a fresh grubenv (grub-editenv create) is two empty banks: nothing boots"
expect_case sparse "[B] primary other=[]" "absent numbers read as 0"
expect_case missing "[] none other=[]" "a missing grubenv boots nothing"
check "a missing grubenv is reported" grep -q "cannot read the boot state '(hd0)/m/missing'" "$out2"
expect_case hoststaged "[A] fallback other=[]" \
	"a try that cannot be saved is not spent: the good bank boots instead"
check "the failed save is reported" grep -q "bootbank: cannot save the boot state to" "$out2"
expect_case hoststaged2 "[B] emergency other=[]" \
	"a try that cannot be saved, with no good bank to fall back to: emergency boot"
rm -rf "$tmp/after2"
mkdir -p "$tmp/after2"
debugfs -R "rdump /m $tmp/after2" "$tmp/m.img" >/dev/null 2>&1
check "the pin was cleared on disk" bash -c "grub-editenv '$tmp/after2/m/badpin' list | grep -qx 'bootbank_pin='"
check "malformed state is never rewritten" bash -c "cmp -s '$tmp/before2/badstate' '$tmp/after2/m/badstate' && \
	cmp -s '$tmp/before2/leadzero' '$tmp/after2/m/leadzero' && cmp -s '$tmp/before2/badfloor' '$tmp/after2/m/badfloor'"

# --- 3. the whole prompt: grub.cfg on a GPT disk, hotkeys on stdin -----------------------
# Disk: p1 boot partition (grub.cfg in /grub, the bootbank files in /bootbank), p2 and p3
# the banks (filesystem labels bootbank_a, bootbank_b) with a "kernel" each.
BOOT_UUID=0b0071ab-bad5-4b0b-9d2e-6d8a9c0f1e2d
LOCAL_CFG='set bootbank_cmdline="console=ttyS0 ro"'
mkdisk() { # STATE: a disk image $tmp/disk.img whose grubenv holds STATE
	rm -rf "$tmp/p1" "$tmp/p2" "$tmp/p3"
	mkdir -p "$tmp/p1/grub" "$tmp/p1/bootbank" "$tmp/p2" "$tmp/p3"
	cp "$HOOKS/grub.cfg" "$tmp/p1/grub/"
	cp "$HOOKS/bootbank-menu.cfg" "$HOOKS/bootbank-select.cfg" "$tmp/p1/bootbank/"
	if [ -n "$LOCAL_CFG" ]; then
		printf '%s\n' "$LOCAL_CFG" >"$tmp/p1/bootbank/local.cfg"
	fi
	echo "p1 $1" | "$MODEL" write-env "$tmp/p1/bootbank" && mv "$tmp/p1/bootbank/p1" "$tmp/p1/bootbank/grubenv"
	echo A >"$tmp/p2/vmlinuz"
	echo B >"$tmp/p3/vmlinuz"
	: >"$tmp/p2/initrd.img"
	: >"$tmp/p3/initrd.img"
	mkfs.ext4 -q -F -b 1024 -L bootbank_boot -U "$BOOT_UUID" -d "$tmp/p1" "$tmp/p1.img" 8M >/dev/null
	mkfs.ext4 -q -F -b 1024 -L bootbank_a -d "$tmp/p2" "$tmp/p2.img" 2M >/dev/null
	mkfs.ext4 -q -F -b 1024 -L bootbank_b -d "$tmp/p3" "$tmp/p3.img" 2M >/dev/null
	rm -f "$tmp/disk.img"
	truncate -s 14M "$tmp/disk.img"
	printf 'label: gpt\nstart=2048, size=16384, name=bootbank_boot\nstart=18432, size=4096, name=bootbank_a\nstart=22528, size=4096, name=bootbank_b\n' |
		sfdisk -q "$tmp/disk.img" >/dev/null
	dd if="$tmp/p1.img" of="$tmp/disk.img" bs=512 seek=2048 conv=notrunc status=none
	dd if="$tmp/p2.img" of="$tmp/disk.img" bs=512 seek=18432 conv=notrunc status=none
	dd if="$tmp/p3.img" of="$tmp/disk.img" bs=512 seek=22528 conv=notrunc status=none
	printf '(hd0) %s\n' "$tmp/disk.img" >"$tmp/disk.map"
}
# The boot partition's grubenv, as bankctl would load it.
disk_state() {
	dd if="$tmp/disk.img" of="$tmp/p1.out" bs=512 skip=2048 count=16384 status=none
	rm -f "$tmp/grubenv.out"
	debugfs -R "dump /bootbank/grubenv $tmp/grubenv.out" "$tmp/p1.out" >/dev/null 2>&1
	"$MODEL" read-env "$tmp/grubenv.out" | cut -d' ' -f2-
}
# GRUB's linux/initrd commands do not exist in grub-emu: functions stand in for them and
# print one argument per line (grub-emu's console wraps at 80 columns); kernel_line joins them.
STUBS='function linux { echo LINUX; while [ $# -gt 0 ]; do echo "ARG $1"; shift; done; echo END; }
function initrd { echo "INITRD $*"; reboot; }'
kernel_line() {
	awk '/^LINUX$/ { l = "" } /^ARG / { l = l (l == "" ? "" : " ") substr($0, 5) } /^END$/ { print l }' "$tmp/emu.out"
}
mkdir -p "$tmp/emu3"
emu3_cfg() { # CTRL_WINDOW: the wrapper grub-emu runs first; it starts the real grub.cfg
	{
		echo 'set enable_progress_indicator=0'
		echo "$STUBS"
		echo 'set root=hd0,gpt1'
		echo 'set bootbank_timeout=2'
		echo "set bootbank_ctrl_window=$1"
		echo 'source (hd0,gpt1)/grub/grub.cfg'
	} >"$tmp/emu3/grub.cfg"
}
S0="A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none"

mkdisk "$S0"
emu3_cfg 1
run_emu "$tmp/emu3" "$tmp/disk.map"
check "grub.cfg: the plan is shown with the Ctrl window" grep -q "bank B (primary); hold Ctrl for bank A" "$tmp/emu.out"
check "grub.cfg: the menu offers the rollback with r and Shift+R" \
	bash -c "grep -q 'Roll back to bank A  \[r\]' '$tmp/emu.out' && grep -q 'Roll back to bank A  \[Shift+R\]' '$tmp/emu.out'"
check "grub.cfg: after the countdown bank B boots (primary) from its partition" \
	test "$(kernel_line)" = "(hd0,gpt3)/vmlinuz console=ttyS0 ro bootbank.bank=B bootbank.reason=primary"
check "grub.cfg: with its initrd" grep -qx "INITRD (hd0,gpt3)/initrd.img" "$tmp/emu.out"
check "grub.cfg: the try was saved before the kernel was loaded" \
	test "$(disk_state)" = "A=good:1:0:1 B=trying:2:1:1 floor=1 pin=none"

for key in r R; do
	mkdisk "$S0"
	emu3_cfg 0
	run_emu "$tmp/emu3" "$tmp/disk.map" "$key"
	check "grub.cfg: key '$key' boots bank A with reason rollback" \
		test "$(kernel_line)" = "(hd0,gpt2)/vmlinuz console=ttyS0 ro bootbank.bank=A bootbank.reason=rollback"
	check "grub.cfg: key '$key' pins A (persistent rollback), B keeps its tries" \
		test "$(disk_state)" = "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=A"
done

mkdisk "A=empty:0:0:0 B=empty:0:0:0 floor=0 pin=none"
emu3_cfg 0
run_emu "$tmp/emu3" "$tmp/disk.map" $'\n'
check "grub.cfg: with nothing to boot, no countdown, manual entries" \
	bash -c "grep -q 'no bank to boot' '$tmp/emu.out' && grep -q 'Bank A as it is (emergency)' '$tmp/emu.out'"
check "grub.cfg: the manual entry boots bank A as it is" \
	test "$(kernel_line)" = "(hd0,gpt2)/vmlinuz console=ttyS0 ro bootbank.bank=A bootbank.reason=emergency"

# --- 4. the /etc/grub.d generator emits the same prompt ----------------------------------
# grub-mkconfig_lib lets grub_probe and grub_mkrelpath be replaced: fakes answer for the
# boot partition of the disk image.
mkdir -p "$tmp/fake" "$tmp/etc-boot/bootbank"
cp "$HOOKS/bootbank-menu.cfg" "$HOOKS/bootbank-select.cfg" "$tmp/etc-boot/bootbank/"
uuid=$BOOT_UUID
cat >"$tmp/fake/grub-probe" <<EOF
#!/bin/sh
for a; do case \$a in --target=*) t=\${a#--target=};; esac; done
case \$t in
device) echo /dev/fakeboot;;
partmap) echo gpt;;
abstraction) ;;
fs) echo ext2;;
compatibility_hint) echo hd0,gpt1;;
fs_uuid) echo $uuid;;
hints_string) echo --hint=hd0,gpt1;;
*) exit 1;;
esac
EOF
printf '#!/bin/sh\necho /bootbank\n' >"$tmp/fake/grub-mkrelpath"
chmod +x "$tmp/fake/grub-probe" "$tmp/fake/grub-mkrelpath"
printf 'BOOTBANK_DIR=%s\nBOOTBANK_CMDLINE="console=ttyS0 it'"'"'s ro"\nBOOTBANK_TIMEOUT=2\nBOOTBANK_CTRL_WINDOW=0\n' \
	"$tmp/etc-boot/bootbank" >"$tmp/default-bootbank"
expect_exit 0 "10_bootbank runs" env grub_probe="$tmp/fake/grub-probe" \
	grub_mkrelpath="$tmp/fake/grub-mkrelpath" BOOTBANK_DEFAULTS="$tmp/default-bootbank" \
	sh "$HOOKS/10_bootbank"
printf '%s\n' "$OUT" >"$tmp/generated.cfg"
check "10_bootbank finds the boot partition by filesystem UUID" grep -q "search --no-floppy --fs-uuid --set=root.* $uuid" "$tmp/generated.cfg"
check "10_bootbank sources the menu from the bootbank directory" grep -qx 'source "$bootbank_dir/bootbank-menu.cfg"' "$tmp/generated.cfg"

LOCAL_CFG=''
mkdisk "$S0"
{
	echo 'set enable_progress_indicator=0'
	echo "$STUBS"
	echo 'set root=host'
	cat "$tmp/generated.cfg"
	echo 'echo "root after bootbank: $root"'
} >"$tmp/emu3/grub.cfg"
run_emu "$tmp/emu3" "$tmp/disk.map" R
check "generated config: the boot partition is found by its UUID" bash -c "! grep -q 'no such device' '$tmp/emu.out'"
check "generated config: Shift+R boots bank A with reason rollback (quoted cmdline intact)" \
	test "$(kernel_line)" = "(hd0,gpt2)/vmlinuz console=ttyS0 it's ro bootbank.bank=A bootbank.reason=rollback"
check "generated config: root is restored for the entries that follow" grep -qx "root after bootbank: host" "$tmp/emu.out"
check "generated config: the pin is saved" test "$(disk_state)" = "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=A"

# --- 5. bankctl's write on a mounted ext4 is what GRUB reads, at once --------------------
# GRUB reads the filesystem without replaying its journal; the backend flushes (syncfs and a
# journal checkpoint) so the new grubenv is in place before bankctl returns. GRUB reads the
# image file under the loop device while the filesystem is still mounted.
if [ "$(id -u)" -eq 0 ] && command -v losetup >/dev/null; then
	truncate -s 32M "$tmp/live.img"
	mkfs.ext4 -q -F "$tmp/live.img" >/dev/null
	loop=$(losetup -f --show "$tmp/live.img")
	bk_track_loop "$loop"
	mkdir -p "$tmp/live/boot"
	if mount "$loop" "$tmp/live/boot"; then
		expect_exit 0 "grub backend: save a first state" "$MODEL" save "$tmp/live" "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none"
		expect_exit 0 "grub backend: save a second state" "$MODEL" save "$tmp/live" "$S0"
		expect_exit 0 "grub backend: load it back" "$MODEL" load "$tmp/live"
		check "grub backend: load returns what was saved" test "$OUT" = "$S0"
		check "grub backend: the grubenv is 1024 bytes, read by grub-editenv" \
			bash -c "test \$(stat -c %s '$tmp/live/boot/bootbank/grubenv') -eq 1024 && grub-editenv '$tmp/live/boot/bootbank/grubenv' list | grep -qx bootbank_B_tries=2"
		mkdir -p "$tmp/emu5"
		{
			echo 'set enable_progress_indicator=0'
			echo 'set bootbank_env=(hd0)/bootbank/grubenv'
			echo 'set bootbank_dryrun=1'
			echo 'load_env -f (hd0)/bootbank/grubenv bootbank_B_state bootbank_B_tries'
			echo 'echo "RAW $bootbank_B_state $bootbank_B_tries"'
			echo "source \"(host)$SELECT\""
			echo 'echo "BBR $bootbank_bank $bootbank_reason"'
			echo 'reboot'
		} >"$tmp/emu5/grub.cfg"
		printf '(hd0) %s\n' "$tmp/live.img" >"$tmp/live.map"
		run_emu "$tmp/emu5" "$tmp/live.map"
		check "GRUB reads the second state from the mounted filesystem's image at once" \
			grep -qx "RAW trying 2" "$tmp/emu.out"
		check "... and decides on it" grep -qx "BBR B primary" "$tmp/emu.out"
		umount "$tmp/live/boot"
	else
		not_ok "cannot mount the ext4 image on $loop"
	fi
	losetup -d "$loop"
else
	echo "# skipped the mounted-filesystem case: needs root and losetup"
fi

# --- 6. bankctl and GRUB take turns on one grubenv ---------------------------------------
# A sandbox with `bootloader = grub`: bankctl's verbs write ROOT/boot/bootbank/grubenv, GRUB
# (the boot partition as an ext4 image made from ROOT/boot) boots by it and saves, and the
# file GRUB left goes back into the sandbox for bankctl.
if [ -x "$BANKCTL" ]; then
	sb=$tmp/sb
	mkdir -p "$sb/etc/bootbank" "$tmp/emu6"
	printf '[system]\ncompatible = acme\nbootloader = grub\n' >"$sb/etc/bootbank/system.conf"
	{
		echo 'set enable_progress_indicator=0'
		echo 'set bootbank_env=(hd0)/bootbank/grubenv'
		echo "source \"(host)$SELECT\""
		echo 'echo "BBR $bootbank_bank $bootbank_reason"'
		echo 'reboot'
	} >"$tmp/emu6/grub.cfg"
	printf '(hd0) %s\n' "$tmp/sb.img" >"$tmp/sb.map"
	grub_boot() { # one boot by GRUB of the sandbox's grubenv; prints GRUB's "BANK REASON"
		mkfs.ext4 -q -F -b 1024 -d "$sb/boot" "$tmp/sb.img" 4M >/dev/null
		run_emu "$tmp/emu6" "$tmp/sb.map"
		rm -f "$tmp/sb.grubenv"
		debugfs -R "dump /bootbank/grubenv $tmp/sb.grubenv" "$tmp/sb.img" >/dev/null 2>&1
		cp "$tmp/sb.grubenv" "$sb/boot/bootbank/grubenv"
		sed -n 's/^BBR //p' "$tmp/emu.out"
	}
	"$MODEL" save "$sb" "A=good:1:0:1 B=trying:2:3:1 floor=1 pin=none"
	check "bankctl reports the grub store" bash -c "'$BANKCTL' --root '$sb' status | grep -q \"boot state.*grub, '$sb/boot/bootbank/grubenv'\""
	check "GRUB boots the newest bank and takes a try" test "$(grub_boot)" = "B primary"
	check "bankctl reads the try GRUB saved" test "$("$MODEL" load "$sb")" = "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none"
	expect_exit 0 "bankctl rollback on the grub store" "$BANKCTL" --root "$sb" rollback
	check "GRUB boots the rollback bank (bankctl's pin)" test "$(grub_boot)" = "A rollback"
	check "... again at the next boot: the rollback is persistent" test "$(grub_boot)" = "A rollback"
	expect_exit 0 "bankctl roll-forward on the grub store" "$BANKCTL" --root "$sb" roll-forward
	check "GRUB boots bank B again after roll-forward" test "$(grub_boot)" = "B primary"
	check "... taking its next try" test "$("$MODEL" load "$sb")" = "A=good:1:0:1 B=trying:2:1:1 floor=1 pin=none"
else
	echo "# skipped bankctl with the grub store: no bankctl at '$BANKCTL'"
fi

bk_done
