#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The boot state verbs on a sandbox (--root, file backend, no root needed): activate, boot
# --simulate (tries, fallback, bad), mark-good and the security floor, rollback/roll-forward,
# the rollback key, explain-next-boot, refused operations, the lock, a corrupt boot state.
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || bk_skip "needs python3"
command -v flock >/dev/null || bk_skip "needs flock (util-linux)"

root=$(bk_tmp)/root
state_file=$root/var/lib/bootbank/bootstate.json
booted_file=$root/run/bootbank/booted.json
mkdir -p "$root/etc/bootbank" "$root/var/lib/bootbank"
printf '[system]\ncompatible = acme-x86_64\nbootloader = file\n\n[boot]\ntries = 3\n' \
	>"$root/etc/bootbank/system.conf"

bc() { "$BANKCTL" --root "$root" "$@"; }

# write_state A_STATE:GEN:TRIES:EPOCH B_STATE:GEN:TRIES:EPOCH FLOOR: craft bootstate.json
write_state() {
	local a b
	IFS=: read -r -a a <<<"$1"
	IFS=: read -r -a b <<<"$2"
	cat >"$state_file" <<EOF
{ "format": 1,
  "banks": {
    "A": { "state": "${a[0]}", "generation": ${a[1]}, "tries_left": ${a[2]}, "epoch": ${a[3]} },
    "B": { "state": "${b[0]}", "generation": ${b[1]}, "tries_left": ${b[2]}, "epoch": ${b[3]} } },
  "floor": $3, "pin": null }
EOF
}

# state: the boot state in the model's text form ("boot.text" of status --json)
state() {
	bc --json status | sed -n 's/^ *"text": "\(.*\)",\{0,1\}$/\1/p'
}

# expect_state DESC TEXT
expect_state() {
	local got
	got=$(state)
	if [ "$got" = "$2" ]; then ok "$1"; else not_ok "$1 (state '$got', expected '$2')"; fi
}

# booted_is BANK REASON: run/bootbank/booted.json records that boot, with a time
booted_is() {
	grep -qF "\"bank\": \"$1\"" "$booted_file" &&
		grep -qF "\"reason\": \"$2\"" "$booted_file" &&
		grep -qE '"time": [1-9][0-9]*' "$booted_file"
}

# --- an update that never comes up: tries, fallback, bad ----------------------------------
write_state good:1:0:1 staged:0:0:1 0
expect_exit 0 "status with a crafted boot state" bc status
check "status shows bank B staged" grep -qE '^  bank B +staged +generation 0 +epoch 1' <<<"$OUT"
check "status says the bank content is not recorded yet" grep -q 'no content record yet' <<<"$OUT"

expect_exit 0 "activate --tries 2 (the staged bank by default)" bc activate --tries 2
check "activate names the bank and its tries" grep -q '^bank B activated: generation 2, 2 tries' <<<"$OUT"
expect_state "activate: B gets the highest generation and the tries" \
	"A=good:1:0:1 B=staged:2:2:1 floor=0 pin=none"

expect_exit 0 "explain-next-boot" bc explain-next-boot
check "explain: B boots, primary, takes a try" \
	grep -qF 'next boot: bank B boots with reason primary (takes a try: 2 -> 1 left)' <<<"$OUT"
check "explain: A is eligible" grep -qF 'bank A  eligible: good, generation 1, epoch 1' <<<"$OUT"
check "explain: the rollback key would boot A" grep -qF 'with the rollback key: bank A boots' <<<"$OUT"

expect_exit 0 "boot --simulate (1)" bc boot --simulate
check "boot 1: bank B, primary" grep -q '^booted bank B (reason primary)' <<<"$OUT"
check "boot 1: the kernel command line" grep -qF 'bootbank.bank=B bootbank.reason=primary' <<<"$OUT"
expect_state "boot 1: one try taken, B trying" "A=good:1:0:1 B=trying:2:1:1 floor=0 pin=none"
check "boot 1: booted.json records B primary" booted_is B primary

expect_exit 0 "boot --simulate (2)" bc boot --simulate
expect_state "boot 2: last try taken" "A=good:1:0:1 B=trying:2:0:1 floor=0 pin=none"
expect_exit 0 "explain-next-boot with B out of tries" bc explain-next-boot
check "explain: B has no tries left" grep -qF 'bank B  not eligible: no tries left (marked bad at the next boot)' <<<"$OUT"
check "explain: A falls back" grep -qF 'next boot: bank A boots with reason fallback' <<<"$OUT"

expect_exit 0 "boot --simulate (3)" bc boot --simulate
check "boot 3: bank A, fallback" grep -q '^booted bank A (reason fallback)' <<<"$OUT"
check "boot 3: B marked bad" grep -qF 'bank B marked bad (no tries left)' <<<"$OUT"
expect_state "boot 3: B bad" "A=good:1:0:1 B=bad:2:0:1 floor=0 pin=none"
check "boot 3: booted.json records A fallback" booted_is A fallback
expect_exit 0 "status after the fallback" bc status
check "status: booted A (fallback)" grep -qF 'booted         bank A (fallback' <<<"$OUT"
check "status: why B is bad" grep -qF 'why bad   no tries left' <<<"$OUT"
expect_exit 0 "status --json after the fallback" bc --json status
check "status --json: bad_reason and booted" python3 -c '
import json,sys; d=json.load(sys.stdin)["boot"]
assert d["banks"]["B"]["bad_reason"].startswith("no tries left"), d
assert d["booted"]["bank"] == "A" and d["booted"]["reason"] == "fallback", d
assert d["next_boot"]["bank"] == "A" and d["last_boot"]["reason"] == "fallback", d
assert d["banks"]["A"]["content"] is None' <<<"$OUT"

expect_exit 0 "mark-good (the booted bank)" bc mark-good
check "mark-good raises the floor to A's epoch" grep -qF 'security floor raised from 0 to 1' <<<"$OUT"
expect_state "mark-good: floor 1" "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none"

# --- an update that works; rollback and roll-forward ---------------------------------------
write_state good:1:0:1 staged:0:0:2 1
expect_exit 0 "activate (default tries from system.conf)" bc activate
expect_state "activate: 3 tries" "A=good:1:0:1 B=staged:2:3:2 floor=1 pin=none"
expect_exit 0 "boot --simulate into B" bc boot --simulate
expect_exit 0 "mark-good booted" bc mark-good booted
check "the floor stays at A's epoch, so A stays bootable" grep -qF 'security floor stays 1' <<<"$OUT"
expect_state "B good" "A=good:1:0:1 B=good:2:0:2 floor=1 pin=none"

expect_exit 0 "rollback" bc rollback
check "rollback says where it goes and how back" grep -qF "rolled back: bank A boots from now on (reason rollback); 'bankctl roll-forward' returns to bank B" <<<"$OUT"
expect_state "rollback pins A" "A=good:1:0:1 B=good:2:0:2 floor=1 pin=A"
expect_exit 0 "boot --simulate after rollback" bc boot --simulate
check "booted A with reason rollback" booted_is A rollback
expect_exit 0 "boot --simulate again: the rollback persists" bc boot --simulate
check "still A, rollback" booted_is A rollback
expect_exit 0 "roll-forward" bc roll-forward
check "roll-forward names the bank rolled back to" grep -qF 'rolled forward: the rollback to bank A is over' <<<"$OUT"
expect_state "roll-forward clears the pin" "A=good:1:0:1 B=good:2:0:2 floor=1 pin=none"
expect_exit 0 "boot --simulate after roll-forward" bc boot --simulate
check "booted B, primary" booted_is B primary

expect_exit 0 "boot --simulate --rollback-key" bc boot --simulate --rollback-key
check "the key boots A with reason rollback" grep -q '^booted bank A (reason rollback)' <<<"$OUT"
check "the key's choice is saved as the pin" grep -qF 'pin set to bank A' <<<"$OUT"
expect_state "the key pins A" "A=good:1:0:1 B=good:2:0:2 floor=1 pin=A"
expect_exit 0 "boot --simulate after the key" bc boot --simulate
check "A again (the rollback is persistent)" booted_is A rollback
expect_exit 0 "roll-forward after the key" bc roll-forward
expect_exit 0 "boot --simulate --json" bc --json boot --simulate
check "boot --json: the decision" python3 -c '
import json,sys; d=json.load(sys.stdin)
assert (d["bank"], d["reason"], d["try_taken"], d["changed"]) == ("B", "primary", False, False), d' <<<"$OUT"

expect_exit 0 "mark-bad other --reason" bc mark-bad other --reason "disk errors on sda"
check "mark-bad says why" grep -qF 'bank A marked bad: disk errors on sda' <<<"$OUT"
expect_state "A bad" "A=bad:1:0:1 B=good:2:0:2 floor=1 pin=none"
expect_exit 4 "rollback with the other bank bad: exit 4" bc rollback
check "rollback refusal: one line, names the bank and why" \
	test "$ERR" = "bankctl: no bank to roll back to: bank A is not eligible: bad (generation 1)"
expect_exit 0 "mark-good B now raises the floor to B's epoch" bc mark-good B
check "floor raised from 1 to 2" grep -qF 'security floor raised from 1 to 2' <<<"$OUT"
expect_exit 0 "boot --simulate --rollback-key with A bad" bc boot --simulate --rollback-key
check "the key is ignored" grep -qF 'rollback key ignored: bank A is not eligible' <<<"$OUT"
check "B boots, primary" booted_is B primary

expect_exit 0 "explain-next-boot --json" bc explain-next-boot --json
check "explain --json: per-bank reasons" python3 -c '
import json,sys; d=json.load(sys.stdin)
assert d["next"]["bank"] == "B" and d["next"]["reason"] == "primary", d
assert d["banks"]["A"]["eligible"] is False and d["banks"]["A"]["why_not"] == ["bad", "below-floor"], d
assert d["banks"]["B"]["eligible"] is True and d["banks"]["B"]["why_not"] == [], d
assert d["with_rollback_key"]["rollback_key_applied"] is False and d["floor"] == 2, d' <<<"$OUT"

# --- refused operations --------------------------------------------------------------------
before=$(cat "$state_file")
expect_exit 4 "activate with no staged bank: exit 4" bc activate
check "activate: says no bank is staged" grep -qF 'no staged bank to activate (bank A is bad, bank B is good)' <<<"$ERR"
expect_exit 1 "activate A (bad): exit 1" bc activate A
check "activate A: names the bank and its state" test "$ERR" = "bankctl: bank A is not staged (it is bad)"
expect_exit 2 "activate --tries 0: exit 2" bc activate --tries 0 B
expect_exit 2 "activate C: exit 2" bc activate C
expect_exit 2 "mark-good C: exit 2" bc mark-good C
expect_exit 2 "mark-bad --reason with a newline: exit 2" bc mark-bad A --reason "$(printf 'a\nb')"
expect_exit 4 "roll-forward with no rollback: exit 4" bc roll-forward
check "roll-forward: says so" grep -qF 'nothing to roll forward: no rollback is in force' <<<"$ERR"
expect_exit 2 "boot without --simulate: exit 2" bc boot
expect_exit 2 "an unexpected argument: exit 2" bc rollback now
check "refused operations left the boot state alone" test "$before" = "$(cat "$state_file")"

write_state good:1:0:2 staged:0:0:1 2
expect_exit 9 "activate below the security floor: exit 9" bc activate
check "below the floor: says it would never boot" grep -qF 'bank B: epoch 1 is below the security floor 2, it would never boot' <<<"$ERR"
write_state good:1:0:2 empty:0:0:0 0
expect_exit 1 "mark-good of an empty bank: exit 1" bc mark-good B
check "empty: named" test "$ERR" = "bankctl: bank B is empty"
rm -f "$booted_file"
expect_exit 4 "mark-good booted with no boot recorded: exit 4" bc mark-good
check "no boot recorded: says how to tell" grep -qF 'cannot tell which bank is booted' <<<"$ERR"

# --- emergency and nothing --------------------------------------------------------------------
write_state bad:1:0:1 bad:2:0:1 0
expect_exit 0 "boot --simulate with both banks bad" bc boot --simulate
check "emergency: the newest bank boots as it is" grep -q '^booted bank B (reason emergency)' <<<"$OUT"
expect_state "emergency changes nothing" "A=bad:1:0:1 B=bad:2:0:1 floor=0 pin=none"
check "booted.json records the emergency" booted_is B emergency
write_state empty:0:0:0 empty:0:0:0 0
expect_exit 4 "boot --simulate with both banks empty: exit 4" bc boot --simulate
check "nothing to boot: one line" test "$ERR" = "bankctl: nothing to boot: both banks are empty"
check "nothing booted: booted.json removed" test ! -e "$booted_file"

# --- the lock ----------------------------------------------------------------------------------
# The test holds the lock itself, with flock(1) on an fd of this shell; LOCK_UN on that fd
# releases it (even while children still have the fd open).
write_state good:1:0:1 trying:2:2:1 0
mkdir -p "$root/run/bootbank"
lock=$root/run/bootbank/lock
exec 9>"$lock"
check "the test holds the lock" flock -n 9
before=$(cat "$state_file")
expect_exit 3 "mark-good while another holds the lock: exit 3" bc mark-good B
check "busy: one line naming the lock" grep -qE "^bankctl: busy: .*holds '$root/run/bootbank/lock'\$" <<<"$ERR"
expect_exit 3 "boot --simulate while locked: exit 3" bc boot --simulate
expect_exit 3 "rollback while locked: exit 3" bc rollback
expect_exit 3 "activate while locked: exit 3" bc activate B
check "nothing changed while locked" test "$before" = "$(cat "$state_file")"
expect_exit 0 "explain-next-boot (read-only) while locked" bc explain-next-boot
expect_exit 0 "status (read-only) while locked" bc status
(sleep 0.5 && flock -u 9) &
unlocker=$!
start=$(date +%s%N)
expect_exit 0 "mark-good --wait waits for the lock" bc --wait mark-good B
waited=$((($(date +%s%N) - start) / 1000000))
wait "$unlocker"
check "--wait waited for the holder (${waited} ms)" test "$waited" -ge 400
expect_state "mark-good --wait applied" "A=good:1:0:1 B=good:2:0:1 floor=1 pin=none"

# Two verbs at once while the lock is held: the one that waits gets it after the holder, the
# one that does not is refused.
write_state good:1:0:1 trying:2:2:1 0
check "the test holds the lock again" flock -n 9
bc --wait mark-good B >/dev/null 2>&1 9>&- &
waiter=$!
sleep 0.3
expect_exit 3 "a second verb while the first waits: exit 3" bc mark-bad B
flock -u 9
wait "$waiter"
check "the waiting verb completed" test $? -eq 0
expect_state "only the waiting verb took effect" "A=good:1:0:1 B=good:2:0:1 floor=1 pin=none"
exec 9>&-

# --- a corrupt boot state --------------------------------------------------------------------
printf '{"format": 1, "banks": {"A": {"state": "good", "generation": 1, ' >"$state_file"
cp "$state_file" "$(bk_tmp)/corrupt"
expect_exit 6 "mark-good with a corrupt bootstate.json: exit 6" bc mark-good A
check "corrupt: one line" test "$(wc -l <<<"$ERR")" -eq 1
check "corrupt: names the file" grep -qF "bankctl: corrupt boot state '$state_file': invalid JSON" <<<"$ERR"
expect_exit 6 "boot --simulate with a corrupt bootstate.json: exit 6" bc boot --simulate
expect_exit 6 "explain-next-boot with a corrupt bootstate.json: exit 6" bc explain-next-boot
expect_exit 6 "status with a corrupt bootstate.json: exit 6" bc status
check "status still shows the configuration" grep -qF 'compatible     acme-x86_64' <<<"$OUT"
check "status: one error line" test "$(wc -l <<<"$ERR")" -eq 1
check "the corrupt file was not rewritten" cmp -s "$state_file" "$(bk_tmp)/corrupt"
printf '{"format": 1, "banks": {"A": {"state": "good", "generation": 1, "tries_left": 0, "epoch": 1}, "B": {"state": "sleeping", "generation": 0, "tries_left": 0, "epoch": 0}}, "floor": 0, "pin": null}\n' >"$state_file"
expect_exit 6 "an unknown bank state: exit 6" bc explain-next-boot
check "unknown state: named" grep -qF "bank B: unknown state 'sleeping'" <<<"$ERR"

# An unconfigured sandbox still shows nothing and creates nothing.
empty=$(bk_tmp)/empty
mkdir -p "$empty"
expect_exit 0 "status on an empty sandbox" "$BANKCTL" --root "$empty" status
check "empty sandbox: untouched" test -z "$(ls -A "$empty")"

bk_done
