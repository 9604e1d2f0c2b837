# SPDX-License-Identifier: LGPL-2.1-or-later
# bootbank: the boot selection model (docs/banks.md, "The selection model") as a U-Boot script.
# Build: mkimage -A arm64 -O linux -T script -C none -n bootbank -d boot.cmd boot.scr
# (or `make uboot-script`); run with `source` (docs/uboot.md gives the bootcmd).
#
# It decides, saves the new boot state with `saveenv` before the kernel starts, then loads the
# chosen bank's kernel and boots it with bootbank.bank= and bootbank.reason= on its command
# line. tests/integ/uboot-script.sh runs it in U-Boot under QEMU over every reachable boot state
# and compares it with the C model.
#
# Boot state (the U-Boot environment, written by bankctl's `uboot` backend):
#   bootbank_A_state  empty|staged|trying|good|bad (absent: empty)
#   bootbank_A_gen    generation (decimal, absent: 0)
#   bootbank_A_tries  tries left (decimal, at most 100, absent: 0)
#   bootbank_A_epoch  security epoch of the image (decimal, absent: 0)
#   bootbank_B_*      the same for bank B
#   bootbank_floor    anti-rollback floor (decimal, absent: 0)
#   bootbank_pin      A or B: the operator's rollback target; absent: none
# Inputs:
#   bootbank_key      "rollback": the operator asks for the other bank (rule 8). Set it at the
#                     prompt without saving (`setenv bootbank_key rollback; boot`); the script
#                     deletes it before it saves, so it never outlives one boot.
#   bootbank_dryrun   "1": decide and set the variables in RAM, but neither save nor boot
# Settings (optional, in the environment):
#   bootbank_devtype, bootbank_devnum   where the banks are (default: ${devtype} ${devnum},
#                     set by U-Boot's distro boot, else mmc 0)
#   bootbank_A_part, bootbank_B_part    partition numbers of the banks (default: found by GPT
#                     partition name bootbank_a / bootbank_b with `part number`)
#   bootbank_kernel   kernel path in a bank (default /vmlinuz)
#   bootbank_initrd   initrd path in a bank (default /initrd.img; "none": no initrd)
#   bootbank_fdt      device tree path in a bank (default: none, use ${fdtcontroladdr})
#   bootbank_cmdline  kernel command line before bootbank.bank= and bootbank.reason=
#   bootbank_bootm    boot command: booti (default, arm64 Image), bootz (arm zImage) or bootm
#   bootbank_noreset  "1": return to the caller instead of resetting when a bank that took
#                     a try cannot be loaded
# Outputs (shell variables, not saved): bootbank_bank (A, B, or - when nothing boots),
# bootbank_reason (primary|fallback|rollback|emergency|none), bootbank_changed (1 when the
# state changed and was saved, or would be in a dry run).
#
# U-Boot's hush has no functions and no decimal arithmetic: `setexpr` computes in hexadecimal.
# Numbers are canonical decimals (no sign, no leading zero) of at most 10 digits. `test -gt`
# reads them as decimals (64-bit long on arm64). A number is checked by three hex computations
# (see "numbers" below); tries_left (at most 100) is decremented in hex with a correction for
# trailing zeros (0x10 - 7 = 0x9, 0x100 - 0x67 = 0x99), which is the decimal result.
# A malformed value is never trusted: an unknown state or a malformed number makes that bank
# bad (not eligible, generation 0 for the comparisons, its variables never rewritten); a
# malformed floor makes no bank eligible (emergency boot); a pin other than A or B is deleted.
# bankctl never writes such values (the uboot backend refuses to load them).
#
# Shell variables (name=value, not in the environment) start with bb_; the only environment
# variable the script uses for scratch is bootbank_t, deleted before saving. U-Boot's hush
# cannot set a shell variable to the empty string (`x=` and `x="${unset}"` keep the old
# value), and the variables outlive one `source`: every shell variable is first given a
# non-empty value ("-" stands for none), then the environment's value if it has one.

bootbank_bank=-
bootbank_reason=none
bootbank_changed=0

# --- read the boot state -----------------------------------------------------------------------
bb_sA=empty
bb_gA=0
bb_tA=0
bb_eA=0
bb_sB=empty
bb_gB=0
bb_tB=0
bb_eB=0
bb_floor=0
bb_pin=-
if test -n "${bootbank_A_state}"; then bb_sA="${bootbank_A_state}"; fi
if test -n "${bootbank_A_gen}"; then bb_gA="${bootbank_A_gen}"; fi
if test -n "${bootbank_A_tries}"; then bb_tA="${bootbank_A_tries}"; fi
if test -n "${bootbank_A_epoch}"; then bb_eA="${bootbank_A_epoch}"; fi
if test -n "${bootbank_B_state}"; then bb_sB="${bootbank_B_state}"; fi
if test -n "${bootbank_B_gen}"; then bb_gB="${bootbank_B_gen}"; fi
if test -n "${bootbank_B_tries}"; then bb_tB="${bootbank_B_tries}"; fi
if test -n "${bootbank_B_epoch}"; then bb_eB="${bootbank_B_epoch}"; fi
if test -n "${bootbank_floor}"; then bb_floor="${bootbank_floor}"; fi
# bb_pin0 is the pin as stored: - when absent, x followed by the value otherwise.
bb_pin0=-
if test -n "${bootbank_pin}"; then
	bb_pin="${bootbank_pin}"
	bb_pin0="x${bootbank_pin}"
fi

# numbers: bb_v is a canonical decimal of at most 10 digits when (1) it reads back unchanged
# through setexpr (hex digits only, no leading zero, no 0x), (2) `test` reads it below 10^10
# and (3) no hex digit is above 9: adding 6 to every digit carries out of a digit only when it
# is A-F, and ((v + 0x6666666666) ^ v) & 0x11111111110 holds exactly those carries.
bb_okA=1
for bb_v in "${bb_gA}" "${bb_tA}" "${bb_eA}"; do
	setexpr bootbank_t "${bb_v}" + 0
	if test "${bootbank_t}" != "${bb_v}"; then bb_okA=0; fi
	if test "${bb_v}" -ge 10000000000; then bb_okA=0; fi
	setexpr bootbank_t "${bb_v}" + 6666666666
	setexpr bootbank_t "${bootbank_t}" ^ "${bb_v}"
	setexpr bootbank_t "${bootbank_t}" "&" 11111111110
	if test "${bootbank_t}" != 0; then bb_okA=0; fi
done
bb_okB=1
for bb_v in "${bb_gB}" "${bb_tB}" "${bb_eB}"; do
	setexpr bootbank_t "${bb_v}" + 0
	if test "${bootbank_t}" != "${bb_v}"; then bb_okB=0; fi
	if test "${bb_v}" -ge 10000000000; then bb_okB=0; fi
	setexpr bootbank_t "${bb_v}" + 6666666666
	setexpr bootbank_t "${bootbank_t}" ^ "${bb_v}"
	setexpr bootbank_t "${bootbank_t}" "&" 11111111110
	if test "${bootbank_t}" != 0; then bb_okB=0; fi
done
bb_okfloor=1
for bb_v in "${bb_floor}"; do
	setexpr bootbank_t "${bb_v}" + 0
	if test "${bootbank_t}" != "${bb_v}"; then bb_okfloor=0; fi
	if test "${bb_v}" -ge 10000000000; then bb_okfloor=0; fi
	setexpr bootbank_t "${bb_v}" + 6666666666
	setexpr bootbank_t "${bootbank_t}" ^ "${bb_v}"
	setexpr bootbank_t "${bootbank_t}" "&" 11111111110
	if test "${bootbank_t}" != 0; then bb_okfloor=0; fi
done
setenv bootbank_t

if test "${bb_okA}" = 1; then
	if test "${bb_tA}" -gt 100; then bb_okA=0; fi
fi
if test "x${bb_sA}" = xempty -o "x${bb_sA}" = xstaged -o "x${bb_sA}" = xtrying; then
	true
elif test "x${bb_sA}" = xgood -o "x${bb_sA}" = xbad; then
	true
else
	bb_okA=0
fi
if test "${bb_okA}" = 0; then
	echo "bootbank: bank A: malformed boot state, treated as bad"
	bb_sA=bad
	bb_tA=0
	bb_gA=0
	bb_eA=0
fi
if test "${bb_okB}" = 1; then
	if test "${bb_tB}" -gt 100; then bb_okB=0; fi
fi
if test "x${bb_sB}" = xempty -o "x${bb_sB}" = xstaged -o "x${bb_sB}" = xtrying; then
	true
elif test "x${bb_sB}" = xgood -o "x${bb_sB}" = xbad; then
	true
else
	bb_okB=0
fi
if test "${bb_okB}" = 0; then
	echo "bootbank: bank B: malformed boot state, treated as bad"
	bb_sB=bad
	bb_tB=0
	bb_gB=0
	bb_eB=0
fi
if test "${bb_okfloor}" = 0; then
	echo "bootbank: malformed bootbank_floor: no bank is eligible"
fi
if test "${bb_pin0}" != - -a "${bb_pin0}" != xA -a "${bb_pin0}" != xB; then
	echo "bootbank: malformed bootbank_pin, deleted"
	bb_pin=-
fi

# What the state was, to save only what changes.
bb_sA0="${bb_sA}"
bb_tA0="${bb_tA}"
bb_sB0="${bb_sB}"
bb_tB0="${bb_tB}"

# --- rule 2: a trying bank with no tries left failed its last try ---------------------------
if test "${bb_sA}" = trying && test "${bb_tA}" = 0; then bb_sA=bad; fi
if test "${bb_sB}" = trying && test "${bb_tB}" = 0; then bb_sB=bad; fi

# --- rule 1: eligible banks ----------------------------------------------------------------
bb_elA=0
if test "${bb_okfloor}" = 1 && test "${bb_eA}" -ge "${bb_floor}"; then
	if test "${bb_sA}" = good; then bb_elA=1; fi
	if test "${bb_sA}" = staged || test "${bb_sA}" = trying; then
		if test "${bb_tA}" -gt 0; then bb_elA=1; fi
	fi
fi
bb_elB=0
if test "${bb_okfloor}" = 1 && test "${bb_eB}" -ge "${bb_floor}"; then
	if test "${bb_sB}" = good; then bb_elB=1; fi
	if test "${bb_sB}" = staged || test "${bb_sB}" = trying; then
		if test "${bb_tB}" -gt 0; then bb_elB=1; fi
	fi
fi

# --- rule 3: the intended bank, the newest non-empty one (ties: A) --------------------------
bb_int=-
if test "${bb_sA}" != empty; then bb_int=A; fi
if test "${bb_sB}" != empty; then
	if test "${bb_int}" = -; then
		bb_int=B
	elif test "${bb_gB}" -gt "${bb_gA}"; then
		bb_int=B
	fi
fi

# --- rules 4-6: the pin, else the newest eligible bank, else an emergency -------------------
if test "${bb_pin}" = A && test "${bb_elA}" = 1; then
	bootbank_bank=A
	bootbank_reason=rollback
elif test "${bb_pin}" = B && test "${bb_elB}" = 1; then
	bootbank_bank=B
	bootbank_reason=rollback
else
	bb_pin=-
	if test "${bb_elA}" = 1; then bootbank_bank=A; fi
	if test "${bb_elB}" = 1; then
		if test "${bootbank_bank}" = -; then
			bootbank_bank=B
		elif test "${bb_gB}" -gt "${bb_gA}"; then
			bootbank_bank=B
		fi
	fi
	if test "${bootbank_bank}" != -; then
		if test "${bootbank_bank}" = "${bb_int}"; then
			bootbank_reason=primary
		else
			bootbank_reason=fallback
		fi
	elif test "${bb_int}" != -; then
		bootbank_bank="${bb_int}"
		bootbank_reason=emergency
	fi
fi

# --- rule 8: the operator's rollback key -------------------------------------------------------
if test "${bootbank_key}" = rollback; then
	if test "${bootbank_reason}" != emergency && test "${bootbank_reason}" != none; then
		if test "${bootbank_bank}" = A && test "${bb_elB}" = 1; then
			bb_pin=B
			bootbank_bank=B
			bootbank_reason=rollback
		elif test "${bootbank_bank}" = B && test "${bb_elA}" = 1; then
			bb_pin=A
			bootbank_bank=A
			bootbank_reason=rollback
		else
			echo "bootbank: rollback key ignored: the other bank is not eligible"
		fi
	else
		echo "bootbank: rollback key ignored: no bank is eligible"
	fi
fi

# --- rule 7: an unconfirmed bank pays one try (never in an emergency) -----------------------
# tries_left <= 100 here: a decimal minus one computed in hex, corrected for trailing zeros.
bb_try=0
if test "${bootbank_reason}" != emergency && test "${bootbank_reason}" != none; then
	if test "${bootbank_bank}" = A; then
		bb_t="${bb_tA}"
		bb_s="${bb_sA}"
	else
		bb_t="${bb_tB}"
		bb_s="${bb_sB}"
	fi
	if test "${bb_s}" = staged || test "${bb_s}" = trying; then
		bb_try=1
		setexpr bootbank_t "${bb_t}" "&" ff
		if test "${bootbank_t}" = 0; then
			setexpr bootbank_t "${bb_t}" - 67
		else
			setexpr bootbank_t "${bb_t}" "&" f
			if test "${bootbank_t}" = 0; then
				setexpr bootbank_t "${bb_t}" - 7
			else
				setexpr bootbank_t "${bb_t}" - 1
			fi
		fi
		if test "${bootbank_bank}" = A; then
			bb_tA="${bootbank_t}"
			bb_sA=trying
		else
			bb_tB="${bootbank_t}"
			bb_sB=trying
		fi
		setenv bootbank_t
	fi
fi

# --- save what changed, before the kernel starts -------------------------------------------
if test "${bb_sA}" != "${bb_sA0}"; then
	setenv bootbank_A_state "${bb_sA}"
	bootbank_changed=1
fi
if test "${bb_tA}" != "${bb_tA0}"; then
	setenv bootbank_A_tries "${bb_tA}"
	bootbank_changed=1
fi
if test "${bb_sB}" != "${bb_sB0}"; then
	setenv bootbank_B_state "${bb_sB}"
	bootbank_changed=1
fi
if test "${bb_tB}" != "${bb_tB0}"; then
	setenv bootbank_B_tries "${bb_tB}"
	bootbank_changed=1
fi
bb_pin1=-
if test "${bb_pin}" != -; then bb_pin1="x${bb_pin}"; fi
if test "${bb_pin1}" != "${bb_pin0}"; then
	if test "${bb_pin}" = -; then
		setenv bootbank_pin
	else
		setenv bootbank_pin "${bb_pin}"
	fi
	bootbank_changed=1
fi
setenv bootbank_key
setenv bootbank_t

echo "bootbank: bank ${bootbank_bank} reason ${bootbank_reason} changed ${bootbank_changed}"
if test "${bootbank_dryrun}" != 1; then
	if test "${bootbank_changed}" = 1; then
		if saveenv; then
			true
		else
			echo "bootbank: cannot save the boot state (saveenv failed)"
			# A try that cannot be recorded must not be spent on an unconfirmed bank (it
			# could boot-loop forever): boot the other bank if it is good and eligible,
			# else this one as an emergency.
			if test "${bb_try}" = 1; then
				bb_other=0
				if test "${bootbank_bank}" = A; then
					if test "${bb_sB}" = good; then bb_other="${bb_elB}"; fi
				else
					if test "${bb_sA}" = good; then bb_other="${bb_elA}"; fi
				fi
				if test "${bb_other}" = 1; then
					if test "${bootbank_bank}" = A; then
						bootbank_bank=B
					else
						bootbank_bank=A
					fi
					bootbank_reason=fallback
				else
					bootbank_reason=emergency
				fi
				bb_try=0
			fi
		fi
	fi

	if test "${bootbank_bank}" = -; then
		echo "bootbank: no bank to boot: both banks are empty"
	else
		# --- load and boot the chosen bank ------------------------------------------------
		bb_dt=mmc
		bb_dn=0
		if test -n "${devtype}"; then bb_dt="${devtype}"; fi
		if test -n "${devnum}"; then bb_dn="${devnum}"; fi
		if test -n "${bootbank_devtype}"; then bb_dt="${bootbank_devtype}"; fi
		if test -n "${bootbank_devnum}"; then bb_dn="${bootbank_devnum}"; fi
		bb_part=-
		if test "${bootbank_bank}" = A; then
			if test -n "${bootbank_A_part}"; then bb_part="${bootbank_A_part}"; fi
			bb_label=bootbank_a
		else
			if test -n "${bootbank_B_part}"; then bb_part="${bootbank_B_part}"; fi
			bb_label=bootbank_b
		fi
		if test "${bb_part}" = -; then
			setenv bootbank_t
			part number "${bb_dt}" "${bb_dn}" "${bb_label}" bootbank_t
			if test -n "${bootbank_t}"; then bb_part="${bootbank_t}"; fi
			setenv bootbank_t
		fi
		bb_kernel=/vmlinuz
		bb_initrd=/initrd.img
		bb_boot=booti
		if test -n "${bootbank_kernel}"; then bb_kernel="${bootbank_kernel}"; fi
		if test -n "${bootbank_initrd}"; then bb_initrd="${bootbank_initrd}"; fi
		if test -n "${bootbank_bootm}"; then bb_boot="${bootbank_bootm}"; fi

		bb_fdt=-
		if test -n "${fdtcontroladdr}"; then bb_fdt="${fdtcontroladdr}"; fi
		bb_rd=-
		bb_loaded=0
		if test "${bb_part}" != -; then
			if load "${bb_dt}" "${bb_dn}:${bb_part}" "${kernel_addr_r}" "${bb_kernel}"; then
				bb_loaded=1
			fi
		fi
		if test "${bb_loaded}" = 1; then
			if test "${bb_initrd}" != none; then
				if load "${bb_dt}" "${bb_dn}:${bb_part}" "${ramdisk_addr_r}" "${bb_initrd}"; then
					bb_rd="${ramdisk_addr_r}:${filesize}"
				else
					bb_loaded=0
				fi
			fi
		fi
		if test "${bb_loaded}" = 1; then
			if test -n "${bootbank_fdt}"; then
				if load "${bb_dt}" "${bb_dn}:${bb_part}" "${fdt_addr_r}" "${bootbank_fdt}"; then
					bb_fdt="${fdt_addr_r}"
				else
					bb_loaded=0
				fi
			fi
		fi
		if test "${bb_loaded}" = 1; then
			setenv bootargs "${bootbank_cmdline} bootbank.bank=${bootbank_bank} bootbank.reason=${bootbank_reason}"
			echo "bootbank: booting bank ${bootbank_bank} (${bb_dt} ${bb_dn}:${bb_part}) reason ${bootbank_reason}"
			${bb_boot} "${kernel_addr_r}" "${bb_rd}" "${bb_fdt}"
		fi

		echo "bootbank: cannot boot bank ${bootbank_bank} (${bb_kernel} from ${bb_dt} ${bb_dn}:${bb_part})"
		# The try is spent: a reset lets the next boot go on counting (and fall back when
		# the tries are gone). An emergency boot has nothing to fall back to: stay at the
		# prompt.
		if test "${bb_try}" = 1; then
			if test "${bootbank_noreset}" != 1; then reset; fi
		fi
	fi
fi
