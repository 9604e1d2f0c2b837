#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# scripts/deps.sh while another apt or dpkg holds its locks (issue 16, item 10): each apt-get
# step waits for the locks, bounded by BK_APT_LOCK_TIMEOUT, says so, and passes apt the time
# left as DPkg::Lock::Timeout. The host's apt is never touched: apt-get and dpkg-query are
# fakes on PATH, and the locks are private files (BK_APT_LOCKS) that a helper holds with
# fcntl F_SETLK as apt and dpkg do. The fake apt-get behaves like apt 2.6: it takes every lock
# for its run, waits for the dpkg locks for the time DPkg::Lock::Timeout gives, and fails at
# once with "E: Could not get lock" for the lists and archives locks (no timeout there) and
# when no timeout was given.
. "$(dirname "$0")/lib.sh"

DEPS=$(realpath "$(dirname "$0")/../../scripts/deps.sh")
command -v perl >/dev/null || bk_skip "perl is not installed"
[ "$(id -u)" -eq 0 ] || bk_skip "needs root (deps.sh ensure installs only as root)"

T=$(bk_tmp)
mkdir -p "$T/bin" "$T/locks"
LOCKS="$T/locks/lock-frontend $T/locks/lock $T/locks/lists-lock $T/locks/archives-lock"
for l in $LOCKS; do : >"$l"; done
export BK_APT_LOCKS=$LOCKS
export FAKE_APT_LOG=$T/apt.log

cat >"$T/bin/apt-get" <<'EOF'
#!/usr/bin/python3
# A fake apt-get: records its arguments and when it ran, takes the locks as apt does.
# When the file $FAKE_APT_RACE exists, it plays the race an apt-get update can lose: another
# apt takes the lists lock (for 2 s) just as this one starts, so it fails as apt would.
import fcntl, os, subprocess, sys, time
args = sys.argv[1:]
race = os.environ.get("FAKE_APT_RACE")
if race and os.path.exists(race):
    os.unlink(race)
    lists = [l for l in os.environ["BK_APT_LOCKS"].split() if l.endswith("lists-lock")][0]
    subprocess.Popen(["python3", "-c", "import fcntl, sys, time\n"
                      "f = open(sys.argv[1], 'r+'); fcntl.lockf(f, fcntl.LOCK_EX)\n"
                      "open(sys.argv[2], 'w').close(); time.sleep(2)", lists, race + ".held"],
                     start_new_session=True, stdout=subprocess.DEVNULL)
    while not os.path.exists(race + ".held"):
        time.sleep(0.02)
    print("E: Could not get lock %s. It is held by another process" % lists, file=sys.stderr)
    sys.exit(100)
timeout = 0
for i, a in enumerate(args):
    if a == "-o" and i + 1 < len(args) and args[i + 1].startswith("DPkg::Lock::Timeout="):
        timeout = int(args[i + 1].split("=", 1)[1])
held = []
for path in os.environ["BK_APT_LOCKS"].split():
    f = open(path, "r+")
    dpkg_lock = os.path.basename(path) in ("lock-frontend", "lock")
    end = time.monotonic() + (timeout if dpkg_lock else 0)
    while True:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() >= end:
                print("E: Could not get lock %s. It is held by another process" % path, file=sys.stderr)
                sys.exit(100)
            time.sleep(0.1)
    held.append(f)
with open(os.environ["FAKE_APT_LOG"], "a") as log:
    log.write("%.2f %s\n" % (time.time(), " ".join(args)))
time.sleep(0.2)
EOF
# Every package is missing, so `ensure` and `ensure-boot` install.
cat >"$T/bin/dpkg-query" <<'EOF'
#!/bin/sh
exit 1
EOF
chmod +x "$T/bin/apt-get" "$T/bin/dpkg-query"
export PATH=$T/bin:$PATH

# hold LOCK SECONDS: a process holds LOCK (fcntl F_SETLK, as apt) for SECONDS; its pid in
# $HOLDER once it holds it; the time it lets go in $T/released.
hold() {
	rm -f "$T/held" "$T/released"
	python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "r+")
fcntl.lockf(f, fcntl.LOCK_EX)
open(sys.argv[3], "w").close()
time.sleep(float(sys.argv[2]))
open(sys.argv[4], "w").write("%.2f" % time.time())' "$1" "$2" "$T/held" "$T/released" &
	HOLDER=$!
	for _ in $(seq 100); do
		[ -e "$T/held" ] && return 0
		sleep 0.05
	done
	return 1
}

# run NAME DEPS-ARG...: deps.sh with output in $T/NAME.out/.err, exit status in $RC and
# the seconds it took in $SECS.
run() {
	local name=$1 t0
	shift
	: >"$FAKE_APT_LOG"
	t0=$(date +%s.%N)
	RC=0
	sh "$DEPS" "$@" >"$T/$name.out" 2>"$T/$name.err" || RC=$?
	SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}

# at_least SECONDS MIN / below SECONDS MAX
at_least() { awk -v s="$1" -v m="$2" 'BEGIN { exit !(s >= m) }'; }
below() { awk -v s="$1" -v m="$2" 'BEGIN { exit !(s < m) }'; }

# calls: the apt-get commands the fake ran, without the time
calls() { cut -d' ' -f2- "$FAKE_APT_LOG"; }
# ran_after TIME: every apt-get call began after TIME (seconds since the epoch)
ran_after() { awk -v t="$1" '$1 < t { bad = 1 } END { exit bad || NR == 0 }' "$FAKE_APT_LOG"; }

# 1. No lock held: both steps run at once, each with apt's own lock timeout.
export BK_APT_LOCK_TIMEOUT=30
run free install
check "no lock held: deps.sh install succeeds (exit $RC)" [ "$RC" -eq 0 ]
check "no lock held: apt-get update gets -o DPkg::Lock::Timeout (got: $(calls | head -1))" \
	grep -q '^[0-9.]* -o DPkg::Lock::Timeout=\(30\|29\) update -qq$' "$FAKE_APT_LOG"
check "no lock held: apt-get install gets -o DPkg::Lock::Timeout" \
	grep -q '^[0-9.]* -o DPkg::Lock::Timeout=\(30\|29\) install -y -qq --no-install-recommends build-essential ' "$FAKE_APT_LOG"
check "no lock held: nothing about waiting" [ ! -s "$T/free.err" ]

# 2. The dpkg frontend lock held for 3 s (another apt-get install running): deps.sh waits,
# says who holds what, and runs apt-get once the lock is free.
hold "$T/locks/lock-frontend" 3 || not_ok "the helper could not take the lock"
run frontend install
wait "$HOLDER"
check "frontend lock held 3 s: deps.sh install succeeds (exit $RC)" [ "$RC" -eq 0 ]
check "frontend lock held 3 s: deps.sh waited for it ($SECS s)" at_least "$SECS" 2.5
check "frontend lock held: the wait is announced with the lock file and the holder" \
	grep -q "deps.sh: another apt or dpkg is running: $T/locks/lock-frontend is held by process $HOLDER (python3); waiting for it, up to 30 s (BK_APT_LOCK_TIMEOUT)" "$T/frontend.err"
check "frontend lock held: the end of the wait is announced" \
	grep -q "deps.sh: the apt and dpkg locks are free after [0-9]* s, going on" "$T/frontend.err"
check "frontend lock held: apt-get ran only after the lock was released ($(calls | wc -l) calls)" \
	ran_after "$(cat "$T/released")"
check "frontend lock held: apt-get update got the time left as DPkg::Lock::Timeout" \
	grep -q "^[0-9.]* -o DPkg::Lock::Timeout=2[0-9] update -qq$" "$FAKE_APT_LOG"
sed 's/^/# /' "$T/frontend.err"

# 3. The lists lock (another apt-get update): apt has no timeout there; deps.sh waits.
hold "$T/locks/lists-lock" 2 || not_ok "the helper could not take the lock"
run lists install
wait "$HOLDER"
check "lists lock held 2 s: deps.sh install waits and succeeds (exit $RC, $SECS s)" [ "$RC" -eq 0 ]
check "lists lock held: the wait names the lists lock" grep -q "$T/locks/lists-lock is held by process" "$T/lists.err"
check "lists lock held: update and install both ran" [ "$(calls | grep -c -e ' update ' -e ' install ')" -eq 2 ]

# 3b. apt-get update loses the race for the lists lock (taken between the wait and its
# start): deps.sh waits again within the bound and tries again.
: >"$T/race"
FAKE_APT_RACE=$T/race run race install
check "lists lock taken as apt-get update starts: deps.sh install succeeds (exit $RC, $SECS s)" [ "$RC" -eq 0 ]
check "the lost race is announced" grep -q "deps.sh: apt-get update failed (exit 100) while another apt or dpkg holds a lock: waiting to try again" "$T/race.err"
check "it waited for the lists lock, then update and install ran once each" \
	[ "$(grep -c "$T/locks/lists-lock is held by process" "$T/race.err") $(calls | grep -c ' update ') $(calls | grep -c ' install ')" = "1 1 1" ]
sed 's/^/# /' "$T/race.err"

# 4. ensure-boot (make check-boot) with the dpkg lock held: the same wait.
hold "$T/locks/lock" 2 || not_ok "the helper could not take the lock"
run ensure-boot ensure-boot
wait "$HOLDER"
check "dpkg lock held 2 s: deps.sh ensure-boot waits and succeeds (exit $RC, $SECS s)" [ "$RC" -eq 0 ]
check "dpkg lock held: ensure-boot announces the wait" grep -q "$T/locks/lock is held by process" "$T/ensure-boot.err"
check "dpkg lock held: ensure-boot installs the check-boot packages with the lock timeout" \
	grep -q '^[0-9.]* -o DPkg::Lock::Timeout=[0-9]* install -y -qq --no-install-recommends qemu-system-x86 ' "$FAKE_APT_LOG"

# 5. A lock held longer than BK_APT_LOCK_TIMEOUT: deps.sh gives up at the bound, says why,
# and runs no apt-get.
export BK_APT_LOCK_TIMEOUT=2
hold "$T/locks/lock-frontend" 30 || not_ok "the helper could not take the lock"
run bound ensure
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
check "lock held past BK_APT_LOCK_TIMEOUT=2: deps.sh ensure fails (exit $RC)" [ "$RC" -ne 0 ]
check "lock held past the bound: it gave up at the bound ($SECS s)" at_least "$SECS" 1.5
check "lock held past the bound: it did not wait much longer ($SECS s)" below "$SECS" 10
check "lock held past the bound: the message says so and how to wait longer" \
	grep -q "deps.sh: gave up after [0-9]* s: $T/locks/lock-frontend is still held by process $HOLDER (python3)" "$T/bound.err"
check "lock held past the bound: apt-get never ran" [ ! -s "$FAKE_APT_LOG" ]
sed 's/^/# /' "$T/bound.err"

# 6. A bad bound is refused.
BK_APT_LOCK_TIMEOUT=5m run badbound install
check "BK_APT_LOCK_TIMEOUT=5m is refused (exit $RC)" [ "$RC" -eq 2 ]

bk_done
