#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bankctl assess on a sandbox (--root, file backend, no root needed): the health checks of
# etc/bootbank/health.d run in order, never through a shell, with a timeout; on a trial boot
# (boot --simulate of an activated bank) all required pass -> marked good, a required one fails
# or hangs -> marked bad with its name and a reboot asked for only when the other bank can
# boot; wanted failures are reported only; on a good bank nothing is ever marked bad.
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || bk_skip "needs python3"

root=$(bk_tmp)/root
state_file=$root/var/lib/bootbank/bootstate.json
hd=$root/etc/bootbank/health.d
mkdir -p "$root/etc/bootbank" "$root/var/lib/bootbank" "$hd/required.d" "$hd/wanted.d"
printf '[system]\ncompatible = acme-x86_64\nbootloader = file\n\n[boot]\ntries = 3\n' \
	>"$root/etc/bootbank/system.conf"
order=$(bk_tmp)/order

bc() { "$BANKCTL" --root "$root" "$@"; }

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
state() { bc --json status | sed -n 's/^ *"text": "\(.*\)",\{0,1\}$/\1/p'; }
expect_state() {
	local got
	got=$(state)
	if [ "$got" = "$2" ]; then ok "$1"; else not_ok "$1 (state '$got', expected '$2')"; fi
}
# check_file DIR NAME BODY: an executable check (a script with its interpreter line)
check_file() {
	printf '#!/bin/sh\necho "%s" >>%s\n%s\n' "$2" "$order" "$3" >"$1/$2"
	chmod 0755 "$1/$2"
}
# trial: A good and booted before, B activated and booted once by the "loader"
trial() {
	write_state good:1:0:1 staged:0:0:1 0
	bc activate B >/dev/null && bc boot --simulate >/dev/null
}
json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# --- a trial boot whose checks pass ------------------------------------------------------
check_file "$hd/required.d" 20-second 'echo second-out; exit 0'
check_file "$hd/required.d" 10-first 'echo "args: $*" ; echo "phase=$BOOTBANK_PHASE hook=$BOOTBANK_HOOK"; exit 0'
check_file "$hd/wanted.d" 10-nice 'echo nice; exit 0'
printf 'not executable\n' >"$hd/required.d/05-skipped"
trial
expect_state "trial: B trying" "A=good:1:0:1 B=trying:2:2:1 floor=0 pin=none"
: >"$order"
expect_exit 0 "assess on a trial boot, every check passes" bc assess
check "assess says B marked good" grep -q '^bank B (trying, trial boot): marked good' <<<"$OUT"
check "checks ran in name order, required first" \
	diff <(printf '10-first\n20-second\n10-nice\n') "$order"
check "a non-executable file is not a check" bash -c "! grep -q 05-skipped '$order'"
expect_state "assess marked B good" "A=good:1:0:1 B=good:2:0:1 floor=1 pin=none"
check "run/bootbank/assess.json: marked-good" \
	test "$(json_field "$root/run/bootbank/assess.json" 'd["action"]')" = marked-good
check "a check gets argv PATH health and BOOTBANK_HOOK (no shell between)" \
	grep -q 'phase=health hook=10-first' "$root/run/bootbank/assess.json"
expect_exit 0 "events" bc events -n 20
check "events: each check is a step of the assess task" \
	grep -q "required check '10-first'.*ok" <<<"$OUT"

# --- a required check fails: marked bad with its name, reboot asked for ----------------------
check_file "$hd/required.d" 15-broken 'echo "service foo is not running" >&2; exit 3'
trial
expect_exit 1 "assess with a failing required check" bc assess --json
check "JSON: action marked-bad" test "$(json_field /dev/stdin 'd["action"]' <<<"$OUT")" = marked-bad
check "JSON: failed names the check" test "$(json_field /dev/stdin 'd["failed"]' <<<"$OUT")" = 15-broken
check "JSON: reboot asked for (A can boot)" test "$(json_field /dev/stdin 'd["reboot"]' <<<"$OUT")" = True
check "JSON: next boot A" test "$(json_field /dev/stdin 'd["next"]' <<<"$OUT")" = A
check "the later checks still ran" grep -q '20-second' <<<"$OUT"
expect_state "B is bad" "A=good:1:0:1 B=bad:2:0:1 floor=0 pin=none"
expect_exit 0 "status" bc --json status
check "the bad reason names the check" \
	grep -qF "\"bad_reason\": \"health check '15-broken' failed: exit status 3\"" <<<"$OUT"
expect_exit 0 "events after the failure" bc events -n 30
check "the check's stderr is in the events" grep -qF 'service foo is not running' <<<"$OUT"
rm "$hd/required.d/15-broken"

# --- a failing check's output is kept in its event: after the mark-bad reboot /run and a ------
# volatile journal are gone, the events (on the data partition) are what tells why
check_file "$hd/required.d" 15-chatty 'echo "out one"; echo "out two"; echo "err one" >&2
echo "err two: disk /dev/sdz missing" >&2; exit 2'
# more than the cap (1536 bytes) on both streams
check_file "$hd/required.d" 16-loud 'i=1; while [ $i -le 100 ]; do
printf "loud out %03d ....................................\n" $i
printf "loud err %03d ....................................\n" $i >&2; i=$((i + 1)); done; exit 1'
# more than the runner captures (64 KiB), one line
check_file "$hd/required.d" 17-huge "head -c 70000 /dev/zero | tr '\\0' x; exit 1"
# a wanted check, with control bytes (colours, CRLF)
check_file "$hd/wanted.d" 30-wobbly "echo 'wobbly one'; printf 'red \\033[31mRED\\033[0m\\r\\n'; echo 'wobbly two'; exit 1"
trial
expect_exit 1 "assess: checks that print several lines, then fail" bc assess
expect_exit 0 "events --json after the failures" bc events --json -n 200
events_json=$OUT
# ev_msg STEP: the message of the newest event of STEP
ev_msg() {
	python3 -c 'import json,sys; e=[e for e in json.loads(sys.argv[2]) if e["step"]==sys.argv[1]]; print(e[-1]["message"] if e else "")' \
		"$1" "$events_json"
}
msg=$(ev_msg "required check '15-chatty'")
check "event of a failing check: its first line is the verdict and the last line" \
	test "$(head -n 1 <<<"$msg")" = "exit status 2: err two: disk /dev/sdz missing"
check "event of a failing check: a line before the last (stderr)" grep -qx 'err one' <<<"$msg"
check "event of a failing check: a line before the last (stdout)" grep -qx 'out one' <<<"$msg"
check "event of a failing check: the last line" grep -qx 'err two: disk /dev/sdz missing' <<<"$msg"
check "event of a failing check: all of a short output, stdout then stderr, each named" \
	diff <(printf '%s\n' "exit status 2: err two: disk /dev/sdz missing" stdout: "out one" "out two" \
		stderr: "err one" "err two: disk /dev/sdz missing") <(printf '%s\n' "$msg")
msg=$(ev_msg "wanted check '30-wobbly'")
check "a failing wanted check (a warning) keeps its output too, control bytes as '?', no CR" \
	diff <(printf '%s\n' "exit status 1: wobbly two" stdout: "wobbly one" "red ?[31mRED?[0m" "wobbly two") \
		<(printf '%s\n' "$msg")
msg=$(ev_msg "required check '10-first'")
check "a passing check's event: its verdict and last line, as before" \
	test "$msg" = "ok: phase=health hook=10-first"
# the cap: the end of each stream, whole lines, what was cut said and counted
check "a check printing more than the cap: its event is capped, the cut counted, lines whole" \
	python3 - "$(ev_msg "required check '16-loud'")" <<'EOF'
import re, sys
msg = sys.argv[1]
assert len(msg.encode()) <= 2048, len(msg.encode())  # BK_EVENTS_MESSAGE_MAX: nothing cut by the log
lines = msg.split("\n")
assert lines[0] == "exit status 1: loud err 100 " + "." * 36, lines[0]
for name in ("out", "err"):
    full = "".join("loud %s %03d %s\n" % (name, i, "." * 36) for i in range(1, 101)).rstrip("\n")
    i = lines.index("std%s:" % name)
    m = re.fullmatch(r"\[\.\.\. (\d+) bytes cut\]", lines[i + 1])
    assert m, lines[i + 1]
    kept = []
    for l in lines[i + 2:]:
        if l == "stderr:":
            break
        kept.append(l)
    kept = "\n".join(kept)
    assert kept.startswith("loud %s " % name) and kept.endswith("loud %s 100 " % name + "." * 36), kept
    assert int(m.group(1)) + len(kept) == len(full), (m.group(1), len(kept), len(full))
    assert 600 < len(kept) <= 768, len(kept)  # its half of the 1536 bytes
EOF
msg=$(ev_msg "required check '17-huge'")
check "more than the runner captured: said so" \
	grep -qxF '[... the rest was not captured (64 KiB per stream)]' <<<"$msg"
check "a last line longer than 200 bytes is cut on the first line" \
	grep -qx "exit status 1: x\{200\}\.\.\." <<<"$(head -n 1 <<<"$msg")"
check "its message fits the events' 2 KiB (the log cut none of its end)" \
	test "$(printf %s "$msg" | wc -c)" -le 2048
check "the events file's lines stay bounded (2 KiB messages, at most 4.5 KiB a line)" \
	env LC_ALL=C awk 'length($0) > 4608 { exit 1 }' "$root/var/lib/bootbank/events.jsonl"
check "no escaped control byte in the events file" \
	bash -c "! grep -qF '\\u001b' '$root/var/lib/bootbank/events.jsonl'"
expect_exit 0 "events (text) after the failures" bc events -n 200
check "events text: the lines after a message's first are indented under the event" \
	grep -qxE ' {25}err one' <<<"$OUT"
expect_exit 0 "status --json after the failures" bc --json status
check "the bad reason stays one line: the check's name and verdict" \
	grep -qF "\"bad_reason\": \"health check '15-chatty' failed: exit status 2\"" <<<"$OUT"
# on a good bank the failing check's event is the newest failure (the verdict only warns)
write_state good:1:0:1 empty:0:0:0 1
bc boot --simulate >/dev/null
expect_exit 1 "assess on a good bank with the same failing checks" bc assess
expect_exit 0 "status after them" bc status
check "status: the last error is the failing check's event, one line (its first)" \
	grep -qxE "  last error     .*, assess: exit status 1: x{200}\.\.\." <<<"$OUT"
check "status: none of the output lines" bash -c '! grep -qE "^(stdout:|stderr:|\[\.\.\.|red )" <<<"$1"' _ "$OUT"
rm "$hd/required.d/15-chatty" "$hd/required.d/16-loud" "$hd/required.d/17-huge" "$hd/wanted.d/30-wobbly"

# --- a required check hangs: killed at the timeout, marked bad -------------------------------
check_file "$hd/required.d" 15-hangs 'sleep 30 & sleep 30'
trial
start=$(date +%s)
expect_exit 1 "assess --timeout 1 with a hanging check" bc assess --timeout 1
end=$(date +%s)
check "the hang ended at its timeout (not 30 s)" test $((end - start)) -lt 15
check "text: timed out" grep -q 'required 15-hangs: timed out' <<<"$OUT"
check "text: reason names the check" grep -qF "reason: health check '15-hangs' failed: timed out after 1000 ms" <<<"$OUT"
check "a sandbox never reboots itself: it says to" grep -q 'reboot to fall back to the other bank' <<<"$OUT"
expect_state "B is bad after the hang" "A=good:1:0:1 B=bad:2:0:1 floor=0 pin=none"

# --- the last good bank: a failure never loops ---------------------------------------------
# A is bad already; B is on its trial boot and fails: no other bank can boot, no reboot.
write_state bad:1:0:1 staged:0:0:1 0
bc activate B >/dev/null && bc boot --simulate >/dev/null
expect_exit 1 "assess on the only bootable bank" bc assess --json --timeout 1
check "no reboot when no other bank can boot" \
	test "$(json_field /dev/stdin 'd["reboot"]' <<<"$OUT")" = False
rm "$hd/required.d/15-hangs"

# --- a good bank: failures are reported, never acted on --------------------------------------
write_state good:1:0:1 empty:0:0:0 1
bc boot --simulate >/dev/null
check_file "$hd/required.d" 30-fails 'exit 1'
check_file "$hd/wanted.d" 20-meh 'echo meh >&2; exit 1'
expect_exit 1 "assess on a good bank with a failing required check" bc assess
check "reported only" grep -q 'required check failed (not a trial boot: reported only)' <<<"$OUT"
check "the wanted failure is counted" grep -q '1 wanted check(s) failed' <<<"$OUT"
expect_state "the good bank stays good" "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none"
rm "$hd/required.d/30-fails"

# --- wanted failures on a trial boot: still marked good --------------------------------------
trial
expect_exit 0 "assess: only a wanted check fails" bc assess
check "marked good despite the wanted failure" grep -q 'marked good' <<<"$OUT"
check "wanted failure shown" grep -q 'wanted 20-meh: FAILED' <<<"$OUT"

# --- --is-trial (the unit's condition) and --fail-reason (its deadline) ---------------------
trial
expect_exit 0 "--is-trial on a trial boot" bc assess --is-trial
: >"$order"
expect_exit 1 "--fail-reason: the deadline expired" bc assess --fail-reason "boot did not complete in 600 s" --json
check "--fail-reason runs no check" test ! -s "$order"
check "--fail-reason marks the trial bank bad with that reason" \
	test "$(json_field /dev/stdin 'd["reason"]' <<<"$OUT")" = "boot did not complete in 600 s"
expect_state "B is bad after the deadline" "A=good:1:0:1 B=bad:2:0:1 floor=0 pin=none"
expect_exit 1 "--is-trial on a bad bank: not a trial" bc assess --is-trial

# --- the /etc carry-forward's conflicts (written by the initramfs) become events ---------------
trial
printf '/etc/foo.conf\n/etc/bar/baz\n' >"$root/run/bootbank/etc-conflicts"
expect_exit 0 "assess with /etc conflicts reported" bc assess
expect_exit 0 "events after the conflicts" bc events -n 40
check "each conflict is an event" \
	grep -qF '/etc/foo.conf: changed locally and by the new image; the local version is kept' <<<"$OUT"
check "the second conflict too" grep -qF '/etc/bar/baz: changed locally' <<<"$OUT"
check "the conflicts are recorded once (the file is consumed)" test ! -e "$root/run/bootbank/etc-conflicts"

# --- status shows the assessment and where /etc and /var live --------------------------------
check_file "$hd/wanted.d" 20-meh 'echo meh >&2; exit 1'
trial
expect_exit 0 "assess (a wanted check fails)" bc assess
printf 'BANK=B\nDATA=ram\n' >"$root/run/bootbank/root.env"
expect_exit 0 "status after the assessment" bc status
check "status: the assessment and the failing wanted check" \
	grep -qE '^  assessment     marked-good; 1 wanted check\(s\) failed: 20-meh$' <<<"$OUT"
check "status: no data partition: RAM, and says so" \
	grep -qF '  data           RAM: no data partition, /etc changes and /var are lost at shutdown' <<<"$OUT"
expect_exit 0 "status --json" bc --json status
check "status --json: data ram" grep -q '"data": "ram"' <<<"$OUT"
check "status --json: assessment" grep -q '"wanted": "20-meh"' <<<"$OUT"
rm "$root/run/bootbank/root.env"

# --- no booted bank known --------------------------------------------------------------------
rm -f "$root/run/bootbank/booted.json"
expect_exit 4 "assess with no booted bank" bc assess

# --- a check writable by others refuses the run (the runner's rule) --------------------------
trial
chmod 0777 "$hd/required.d/10-first"
expect_exit 1 "assess with a world-writable required check" bc assess --json
check "refused checks fail the trial boot" \
	test "$(json_field /dev/stdin 'd["action"]' <<<"$OUT")" = marked-bad
chmod 0755 "$hd/required.d/10-first"

bk_done
