#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Fleet remediation with Ansible (docs/fleet.md): four managed hosts, each an sshd in a network
# namespace of its own with its own sandbox root, loop disk and running workloads; the control
# node runs ansible-playbook with the bootbank.fleet collection over SSH from a network
# namespace of its own too, a veth pair to each host (198.18.N.0/30, the benchmark range):
# nothing is added to the machine's network namespace. Scenarios: --check on the empty fleet
# and --check with node1 and node2 compliant, node3 non-compliant and node4 without a desired
# image both change nothing (sandbox roots and disks hashed) and say what would be done per
# host; a live-patch rollout (every host compliant, workloads keep their pids, the DRS order);
# a second run changes nothing; a rollout whose third host fails its pre-check stops there
# (hosts four and later untouched, the report names host and reason); the reboot path through
# Ansible's reboot module (each host's reboot command power-cycles its sandbox:
# docs/fleet.md): a rollout whose second host's new bank fails its boot assessment stops
# there, then a rollout that reboots every host into the other bank, assessed good; a
# live-patch rollout of all four hosts in batches of two (bootbank_serial=2). At exit, after
# the cleanup: no namespace, veth, process, cgroup, loop device or mount of the test is left.
. "$(dirname "$0")/lib.sh"
bk_need_root
# check DESC CMD...: as lib.sh's, but returns 1 on failure, so that "check ... || show RUN"
# prints the failing run's log
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc" && return 1; fi
}
B=${BK_BUILD:-build/cc}
READER=$(realpath "$B/tests/tools/live-reader" 2>/dev/null) || bk_skip "no live-reader (make tests)"
for t in ansible-playbook sshd ssh ssh-keygen ip nsenter openssl mksquashfs python3 losetup mkfs.ext4 findmnt; do
	command -v "$t" >/dev/null || bk_skip "needs $t"
done
[ -e /dev/loop-control ] || bk_skip "no /dev/loop-control"
CGROOT=$(findmnt -n -o TARGET -t cgroup2 | head -n1)
[ -n "$CGROOT" ] || bk_skip "no cgroup2 mount"
SSHD=$(command -v sshd)

T=$(bk_tmp)
chmod 755 "$T"
# The hosts share this mount namespace; each workload has one of its own, a slave of this one:
# when a host's reboot unmounts its banks and revisions here, the copies in the other hosts'
# workloads go too (on real machines they never see them), so nothing keeps its banks busy.
mount --bind "$T" "$T" && mount --make-rshared "$T" || bk_skip "cannot make '$T' a shared mount"
repo=$(cd "$(dirname "$0")/../.." && pwd)
# (short: the links are named ${tag}hN, at most 15 characters with a 7-digit pid)
tag=bkfl$$
cg=$CGROOT/$tag
NHOSTS=4
# 198.18.N.0/30 for host N (the benchmark range, RFC 2544, never a real network): the control
# node's end in the namespace $tag-ctl, the host's in $tag-nN; none in this one, so two runs at
# once do not collide either
net=198.18
ctl() { nsenter --net="/run/netns/$tag-ctl" "$@"; } # CMD...: run on the control node
pids=()
hosts=()
mkdir "$cg" || bk_skip "cannot create a cgroup under '$CGROOT'"
cleanup() {
	local p d n h
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	for d in "$cg"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
	rmdir "$cg" 2>/dev/null
	for n in $(seq 1 $NHOSTS); do
		h=$T/node$n
		for d in "$h"/root/run/bootbank/rev/* "$h"/root/run/bootbank/bank/*; do
			[ -d "$d" ] && umount "$d" 2>/dev/null
		done
		# the host's processes: its sshd (restarted by its reboots), sessions, a boot in progress
		for p in $(ip netns pids "$tag-n$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		ip netns del "$tag-n$n" 2>/dev/null
	done
	# the control node's: ssh's ControlPersist masters outlive ansible-playbook
	for p in $(ip netns pids "$tag-ctl" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	ip netns del "$tag-ctl" 2>/dev/null
	umount -l "$T" 2>/dev/null
	bk_cleanup
}
# leftovers: what the test made that is still there (after cleanup), one line each
leftovers() {
	local l
	# (the names exactly: the tag of a run whose pid starts as this one's is longer)
	ip netns list 2>/dev/null | grep -E "^$tag-(ctl|n[0-9]+)( |\$)" | sed 's/^/network namespace: /'
	ip -o link show 2>/dev/null | cut -d: -f2 | grep -E "^ *${tag}h[0-9]+(@|\$)" | sed 's/^ */link: /'
	# a process naming the temp dir (sshd, a workload, a boot, ssh): grep's own command line
	# does not (the pattern comes from stdin)
	for l in $(grep -lF -f - /proc/[0-9]*/cmdline 2>/dev/null <<<"$T" | cut -d/ -f3); do
		[ "$l" = $$ ] || [ "$l" = "$BASHPID" ] ||
			echo "process $l: $(tr '\0' ' ' <"/proc/$l/cmdline" 2>/dev/null)"
	done
	[ -e "$cg" ] && echo "cgroup: $cg"
	losetup -l -n -O NAME,BACK-FILE 2>/dev/null | grep -F "$T/" | sed 's/^/loop device: /'
	findmnt -rn -o TARGET 2>/dev/null | grep -F "$T" | sed 's/^/mount: /'
}
cleanup_and_check() {
	local rc=$? left
	cleanup
	# killed processes and detached loop devices may take a moment to go
	for _ in $(seq 1 30); do
		left=$(leftovers)
		[ -z "$left" ] && break
		sleep 0.1
	done
	if [ -n "$left" ]; then
		not_ok "after the cleanup, something the test made is left: $(tr '\n' ';' <<<"$left")"
		exit 1
	fi
	ok "after the cleanup no network namespace, link, process, cgroup, loop device or mount of the test is left"
	exit "$rc"
}
trap cleanup_and_check EXIT

bash "$repo/tests/pki/make-pki.sh" "$T/pki" >/dev/null 2>&1 || bk_skip "cannot make the test PKI"
# bundle NAME VERSION FROM: a signed bundle with a live payload, live-patchable from FROM
bundle() {
	local d=$T/src-$1 i
	mkdir -p "$d/tree" "$T/bundles"
	for i in 0 1 2 3; do echo "rev=$2" >"$d/tree/f00$i"; done
	mksquashfs "$d/tree" "$d/app.squashfs" -quiet -noappend -all-root >/dev/null
	head -c 100000 /dev/urandom >"$d/vmlinuz"
	cat >"$d/spec.json" <<EOF2
{ "name": "acme-os", "version": "$2", "build": "b$2", "compatible": "acme-x86_64",
  "security_epoch": 1, "live_patch": { "from": [ $3 ] },
  "payloads": [
    { "name": "vmlinuz", "type": "kernel", "source": "vmlinuz" },
    { "name": "app.squashfs", "type": "component", "source": "app.squashfs",
      "live": true, "mountpoint": "/opt/acme" } ] }
EOF2
	"$BANKCTL" image build "$d/spec.json" -o "$T/bundles/$1.bbi" --key "$T/pki/signer.key" \
		--cert "$T/pki/signer.crt" --intermediate "$T/pki/intermediate.crt" >/dev/null
}
bundle v10 1.0 '"0.9"' || bk_skip "cannot build bundles"
bundle v11 1.1 '"1.0"'
bundle v12 1.2 '"1.1"'
bundle v20 2.0 '"0.1"' # not live-patchable from 1.x
bundle v21 2.1 '"2.0"'

# --- the managed hosts: a sandbox, a loop disk, workloads, an sshd in a netns ---------------
ssh-keygen -q -t ed25519 -N '' -f "$T/id_control" || bk_skip "ssh-keygen failed"
mkdir -p /run/sshd
# start_reader NODE NAME: a workload reading its view of the node's current revision
start_reader() {
	local h=$T/node$1 r
	mkdir -p "$cg/n$1-$2" "$h/view-$2"
	rm -f "$h/stats-$2"
	(
		echo "$BASHPID" >"$cg/n$1-$2/cgroup.procs"
		exec unshare -m --propagation slave sh -c 'mount --bind "$1" "$2" && exec "$3" "$2" 4 "$4" 200' \
			_ "$h/root/run/bootbank/current" "$h/view-$2" "$READER" "$h/stats-$2"
	) &
	r=$!
	pids+=("$r")
	for _ in $(seq 1 100); do [ -s "$h/stats-$2" ] && break; sleep 0.05; done
	"$BANKCTL" --root "$h/root" workload add "$2" --cgroup "$tag/n$1-$2" --view "$h/view-$2" >/dev/null
}
node() { # N WORKLOADS
	local n=$1 h=$T/node$1 root=$T/node$1/root w l
	mkdir -p "$root/etc/bootbank" "$h/ssh"
	cp "$T/pki/keyring.pem" "$root/etc/bootbank/keyring.pem"
	printf '[system]\ncompatible = acme-x86_64\n[keyring]\npath = /etc/bootbank/keyring.pem\n[livepatch]\nfreeze-timeout-ms = 1000\n' \
		>"$root/etc/bootbank/system.conf"
	truncate -s 48M "$h/disk.img"
	"$BANKCTL" --root "$root" disk init "$h/disk.img" --boot-size 8M --bank-size 16M >/dev/null || return 1
	for l in $(losetup -j "$h/disk.img" | cut -d: -f1); do bk_track_loop "$l"; done
	"$BANKCTL" --root "$root" stage "$T/bundles/v10.bbi" --activate >/dev/null &&
		"$BANKCTL" --root "$root" boot --simulate >/dev/null &&
		"$BANKCTL" --root "$root" mark-good >/dev/null &&
		"$BANKCTL" --root "$root" rev restore >/dev/null || return 1
	for w in $(seq 1 "$2"); do start_reader "$n" "app$w" || return 1; done
	# the boot assessment's required check: the application takes a second to come up
	mkdir -p "$root/etc/bootbank/health.d/required.d"
	printf '#!/bin/sh\nsleep 1\necho app is up\n' >"$root/etc/bootbank/health.d/required.d/10-app"
	chmod 755 "$root/etc/bootbank/health.d/required.d/10-app"
	cat /proc/sys/kernel/random/uuid >"$h/boot_id"
	# The host's reboot (the reboot module's reboot_command here): its power cycle, detached,
	# so that the command returns as shutdown -r does. The power cycle (boot [DELAY]): every
	# process of the host killed (its network namespace: sshd, the sessions; its workloads'
	# cgroups), the sandbox's mounts gone and run/bootbank emptied (a tmpfs at boot); then the
	# loader (boot --simulate), bootbank-rev-restore.service (rev restore), a new boot id (the
	# reboot module's boot_time_command reads it), sshd; then bootbank-assess.service on a
	# trial boot, and when that marks the bank bad, the reboot into the other bank it makes
	# on a real host (never under --root).
	cat >"$h/boot" <<EOF2
#!/bin/bash
set -u
ns=$tag-n$n h=$h root=$root bankctl=$BANKCTL sshd=$SSHD cgs=$cg/n$n-
EOF2
	cat >>"$h/boot" <<'EOF2'
bc() { "$bankctl" --root "$root" "$@"; }
down() {
	local p c d
	# as at a shutdown: SIGTERM (exit traps run: a shell's lock files go), then SIGKILL
	for p in $(ip netns pids "$ns"); do [ "$p" = $$ ] || kill "$p" 2>/dev/null; done
	for _ in $(seq 1 20); do [ "$(ip netns pids "$ns" | grep -vxc "$$")" = 0 ] && break; sleep 0.1; done
	for p in $(ip netns pids "$ns"); do [ "$p" = $$ ] || kill -9 "$p" 2>/dev/null; done
	for c in "$cgs"*/; do [ -e "$c/cgroup.kill" ] && echo 1 >"$c/cgroup.kill"; done
	for _ in $(seq 1 50); do [ -z "$(cat "$cgs"*/cgroup.procs 2>/dev/null)" ] && break; sleep 0.1; done
	# (a workload's mount namespace, gone with it, releases its mounts a moment later)
	for d in "$root"/run/bootbank/rev/* "$root"/run/bootbank/bank/*; do
		for _ in $(seq 1 100); do mountpoint -q "$d" && ! umount "$d" 2>/dev/null || break; sleep 0.1; done
		if mountpoint -q "$d"; then
			echo "still mounted after 10 s: $d"
			losetup -l -O NAME,BACK-FILE,AUTOCLEAR | grep -F "$root"
			for p in $(grep -l -F " $d " /proc/[0-9]*/mountinfo 2>/dev/null | cut -d/ -f3); do
				echo "  in the mount namespace of $p: $(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null)"
			done | sort -u | head
			return 1
		fi
	done
	find "$root/run/bootbank" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
}
up() {
	bc boot --simulate && bc rev restore || return 1
	cat /proc/sys/kernel/random/uuid >"$h/boot_id"
	"$sshd" -D -e -f "$h/ssh/sshd_config" </dev/null 2>>"$h/ssh/sshd.log" &
}
next_is_other() {
	bc --json status | python3 -c 'import json, sys; b = json.load(sys.stdin)["boot"]; sys.exit(b["booted"]["bank"] == b["next_boot"]["bank"])'
}
echo "boot $(date +%T.%N)"
sleep "${1:-0}"
down && up || exit 1
if bc assess --is-trial >/dev/null; then
	if ! bc assess && next_is_other; then
		echo "boot $(date +%T.%N) (the assessment failed: back to the other bank)"
		# a shutdown takes a while: whoever polls sees the bad bank before the host goes down
		sleep 3
		down && up || exit 1
	fi
fi
EOF2
	printf '#!/bin/sh\nsetsid -f bash %s 1 </dev/null >>%s 2>&1\n' "$h/boot" "$h/boot.log" >"$h/reboot"
	chmod 755 "$h/boot" "$h/reboot"
	# the network: a veth pair, $net.N.1 on the control node, $net.N.2 in the host's namespace
	ip netns add "$tag-n$n" || return 1
	ip -n "$tag-ctl" link add "${tag}h$n" type veth peer name eth0 netns "$tag-n$n" || return 1
	ip -n "$tag-ctl" addr add "$net.$n.1/30" dev "${tag}h$n" && ip -n "$tag-ctl" link set "${tag}h$n" up || return 1
	ip -n "$tag-n$n" addr add "$net.$n.2/30" dev eth0 && ip -n "$tag-n$n" link set eth0 up &&
		ip -n "$tag-n$n" link set lo up || return 1
	ssh-keygen -q -t ed25519 -N '' -f "$h/ssh/host_key" || return 1
	cp "$T/id_control.pub" "$h/ssh/authorized_keys"
	cat >"$h/ssh/sshd_config" <<EOF2
ListenAddress $net.$n.2
Port 22
HostKey $h/ssh/host_key
PidFile $h/ssh/sshd.pid
AuthorizedKeysFile $h/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF2
	# Only the network namespace: the host shares this mount namespace (the sandbox's mounts).
	nsenter --net="/run/netns/$tag-n$n" "$SSHD" -D -e -f "$h/ssh/sshd_config" 2>"$h/ssh/sshd.log" &
	pids+=("$!")
	hosts+=("node$n")
}
# workloads: node1 1, node2 1, node3 2, node4 3; the inventory lists them 4, 3, 1, 2.
t0=$(date +%s.%N)
ip netns add "$tag-ctl" && ip -n "$tag-ctl" link set lo up || bk_skip "cannot make a network namespace"
node 1 1 && node 2 1 && node 3 2 && node 4 3 || bk_skip "cannot set up the managed hosts"
for n in $(seq 1 $NHOSTS); do
	for _ in $(seq 1 50); do
		ctl ssh -q -i "$T/id_control" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
			-o BatchMode=yes -o ConnectTimeout=2 "root@$net.$n.2" true && break
		sleep 0.2
	done
done
ok "4 managed hosts set up in $(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$(date +%s.%N)") s"
check "  ... the network only in the test's namespaces: here no link of the test, no address or route in $net.0.0/16" \
	bash -c "! ip -o link show | cut -d: -f2 | grep -qE '^ *${tag}h[0-9]+(@|\$)' && ! ip -o addr show | grep -qF ' $net.' && ! ip route show | grep -qF '$net.'"

mkdir -p "$T/ctl"
cat >"$T/ctl/inventory.ini" <<EOF2
[bootbank]
$(for n in 4 3 1 2; do echo "node$n ansible_host=$net.$n.2 bootbank_root=$T/node$n/root bootbank_reboot_command=$T/node$n/reboot bootbank_boot_time_command='cat $T/node$n/boot_id'"; done)

[bootbank:vars]
ansible_user=root
ansible_python_interpreter=/usr/bin/python3
ansible_ssh_private_key_file=$T/id_control
ansible_ssh_common_args=-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
bootbank_bankctl=$BANKCTL
bootbank_controller_bankctl=$BANKCTL
bootbank_image_name=acme-os

[local]
localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3
EOF2
export ANSIBLE_COLLECTIONS_PATH=$repo/fleet/ansible ANSIBLE_HOME=$T/ctl/home
export ANSIBLE_LOCAL_TEMP=$T/ctl/tmp ANSIBLE_REMOTE_TEMP=$T/ctl/rtmp ANSIBLE_PIPELINING=1
export ANSIBLE_SSH_CONTROL_PATH_DIR=$T/ctl/cp ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
export ANSIBLE_HOST_KEY_CHECKING=0 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_DEPRECATION_WARNINGS=0
export ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0
for m in facts depot desired remediate assess; do
	check "ansible-doc renders bootbank.fleet.bootbank_$m" bash -c "ansible-doc bootbank.fleet.bootbank_$m 2>&1 | grep -q '^> BOOTBANK.FLEET.BOOTBANK_${m^^}'"
done
PB=$repo/fleet/ansible/ansible_collections/bootbank/fleet/playbooks/remediate-cluster.yml
# play RUN VERSION [ARGS...]: ansible-playbook, its output in $T/ctl/RUN.log, the report in
# $T/ctl/RUN.report; $RC its exit code, $SECS its time
play() {
	local run=$1 v=$2 s
	shift 2
	rm -f "$T/ctl/$run.report"
	s=$(date +%s.%N)
	ctl ansible-playbook -i "$T/ctl/inventory.ini" "$PB" -e "bootbank_image_version=$v" \
		-e "bootbank_bundle=$T/bundles/v${v/./}.bbi" -e "bootbank_report=$T/ctl/$run.report" "$@" \
		>"$T/ctl/$run.log" 2>&1
	RC=$?
	SECS=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$s" "$(date +%s.%N)")
	[ -n "${BK_FLEET_VERBOSE:-}" ] && cp "$T/ctl/$run.log" "$BK_FLEET_VERBOSE.$run"
	return 0
}
recap() { # RUN HOST FIELD: a number from the PLAY RECAP
	sed -n '/PLAY RECAP/,$p' "$T/ctl/$1.log" | grep "^$2 " | grep -o "$3=[0-9]*" | cut -d= -f2
}
order() { # RUN: the hosts in the order the rollout took them
	grep -o '^TASK \[Facts\]\|^ok: \[node[0-9]\]\|^changed: \[node[0-9]\]\|^fatal: \[node[0-9]\]' "$T/ctl/$1.log" |
		awk '/TASK \[Facts\]/{t=1; next} t && /node/{gsub(/.*\[|\]/, ""); print; t=0}' | tr '\n' ' ' | sed 's/ $//'
}
show() { # RUN: the end of its log, and the hosts' boot logs
	local n
	sed 's/^/#   /' "$T/ctl/$1.log" | tail -n 60
	for n in $(seq 1 $NHOSTS); do [ -s "$T/node$n/boot.log" ] && sed "s/^/#   node$n boot: /" "$T/node$n/boot.log" | tail -n 20; done
}
hash_all() { # the sandbox roots (files, links) and the disks of every host
	local n
	for n in $(seq 1 $NHOSTS); do
		(cd "$T/node$n/root" && find . \( -type f -o -type l \) ! -path './run/bootbank/lock' -printf '%p %l\n' | sort &&
			find . -type f ! -path './run/bootbank/lock' -print0 | sort -z | xargs -0 sha256sum)
		sha256sum <"$T/node$n/disk.img"
	done | sha256sum | cut -d' ' -f1
}
bc() { "$BANKCTL" --root "$T/node$1/root" "${@:2}"; }
scan_state() { bc "$1" scan --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
procs() { cat "$cg"/n"$1"-*/cgroup.procs | sort | tr '\n' ' '; }

# --- --check changes nothing ---------------------------------------------------------------
sync
h0=$(hash_all)
play check 1.1 --check
check "--check: ansible-playbook exits 0 (${SECS} s)" test "$RC" = 0 || show check
check "  ... predicts a change on every host" bash -c 'for h in node1 node2 node3 node4; do [ "$(sed -n "/PLAY RECAP/,\$p" "$0" | grep "^$h " | grep -o "changed=[0-9]*" | cut -d= -f2)" -gt 0 ] || exit 1; done' "$T/ctl/check.log"
check "  ... the summary says 'would set the desired image, then remediate' for each" test "$(grep -c 'would set the desired image, then remediate' "$T/ctl/check.report" 2>/dev/null)" = 4
sync
check "  ... the sandbox roots and disks of every host are unchanged" test "$(hash_all)" = "$h0"
check "  ... no depot got the bundle, no desired image was set" bash -c "! ls '$T'/node*/root/var/lib/bootbank/depot/acme-os_1.1.bbi 2>/dev/null && ! ls '$T'/node*/root/var/lib/bootbank/desired.json 2>/dev/null"

for n in 1 2 3 4; do pid0[n]=$(procs $n); done
# --- the third host's pre-check fails: the rollout stops there --------------------------------
# node3 (third in the order): a workload that cannot be suspended (--no-fsr, no hook) instead of
# its second reader, same count; the mode enforce.
bc 3 workload remove app2 >/dev/null
mkdir -p "$cg/n3-nofsr"
sleep 600 &
nofsr=$!
pids+=("$nofsr")
echo "$nofsr" >"$cg/n3-nofsr/cgroup.procs"
bc 3 workload add nofsr --cgroup "$tag/n3-nofsr" --view /opt/acme --no-fsr >/dev/null
sync
h4=$( (cd "$T/node4/root" && find . -type f ! -path ./run/bootbank/lock -print0 | sort -z | xargs -0 sha256sum; sha256sum <"$T/node4/disk.img") | sha256sum)
play stop 1.1 -e bootbank_live_patch_mode=enforce
check "pre-check failure: ansible-playbook fails (exit $RC, ${SECS} s)" test "$RC" != 0 || show stop
check "  ... in the DRS order (all live-patchable, fewest workloads first; inventory 4 3 1 2): node1 node2 node3, then stopped" test "$(order stop)" = "node1 node2 node3"
check "  ... node1 and node2 live-patched to 1.1" bash -c "test '$(scan_state 1)' = compliant && test '$(scan_state 2)' = compliant && test \"\$(readlink '$T/node2/root/run/bootbank/current')\" = rev/acme-os-1.1"
check "  ... node3 not remediated: 1.0 in service, non-compliant" bash -c "test '$(scan_state 3)' = non-compliant && test \"\$(readlink '$T/node3/root/run/bootbank/current')\" = rev/acme-os-1.0"
sync
check "  ... node4 untouched (its root and disk hashed before and after)" test "$( (cd "$T/node4/root" && find . -type f ! -path ./run/bootbank/lock -print0 | sort -z | xargs -0 sha256sum; sha256sum <"$T/node4/disk.img") | sha256sum)" = "$h4"
check "  ... the report names node3 and the reason" grep -q "^node3 .*FAILED at 'Pre-check': pre-check failed: .*workloads: .*cannot be suspended" "$T/ctl/stop.report"
check "  ... and node4 'not taken'" grep -q "^node4 .*not taken" "$T/ctl/stop.report"
# node3 as before: its second reader instead of the --no-fsr workload
out=$(bc 3 workload remove nofsr 2>&1) || not_ok "node3: workload remove nofsr: $out"
kill "$nofsr"; wait "$nofsr" 2>/dev/null
out=$(bc 3 workload add app2 --cgroup "$tag/n3-app2" --view "$T/node3/view-app2" 2>&1) || not_ok "node3: workload add app2: $out"

# --- --check in a realistic state: node1 and node2 compliant with 1.1, node3 non-compliant (its
# desired image 1.1 set by the stopped rollout, 1.0 in service), node4 with no desired image --
sync
h0=$(hash_all)
play check2 1.1 --check
check "--check, node1 and node2 compliant, node3 non-compliant, node4 no desired image: exits 0 (${SECS} s)" test "$RC" = 0 || show check2
check "  ... in the DRS order, as the rollout would: node3 node4 node1 node2" test "$(order check2)" = "node3 node4 node1 node2"
check "  ... a change predicted on node3 and node4 (changed > 0), none on node1 and node2 (changed=0), failed=0 on each" \
	bash -c "test '$(recap check2 node3 changed)' -gt 0 && test '$(recap check2 node4 changed)' -gt 0 && test '$(recap check2 node1 changed)' = 0 && test '$(recap check2 node2 changed)' = 0 && test '$(recap check2 node1 failed)$(recap check2 node2 failed)$(recap check2 node3 failed)$(recap check2 node4 failed)' = 0000"
check "  ... the summary: node3 'non-compliant', 'would remediate (live path)' (its pre-check ran); node4 'would set the desired image, then remediate'; node1, node2 'compliant', 'unchanged'" \
	bash -c "grep -q '^node3 *non-compliant .* would remediate (live path)$' '$T/ctl/check2.report' && grep -q '^node4 .* would set the desired image, then remediate$' '$T/ctl/check2.report' && test \$(grep -c '^node[12] *compliant .* unchanged$' '$T/ctl/check2.report') = 2 && grep -q '^2 of 4 hosts compliant' '$T/ctl/check2.report'" || sed 's/^/#   /' "$T/ctl/check2.report"
sync
check "  ... the sandbox roots and disks of every host are unchanged" test "$(hash_all)" = "$h0"
check "  ... node3 still non-compliant on 1.0, node4 without the bundle in its depot, the workloads' pids unchanged" \
	bash -c "test '$(scan_state 3)' = non-compliant && test \"\$(readlink '$T/node3/root/run/bootbank/current')\" = rev/acme-os-1.0 && ! test -e '$T/node4/root/var/lib/bootbank/depot/acme-os_1.1.bbi' && test '$(procs 1)|$(procs 2)|$(procs 3)|$(procs 4)' = '${pid0[1]}|${pid0[2]}|${pid0[3]}|${pid0[4]}'"
cp "$T/ctl/check2.report" "$T/check2.report.keep"

# --- a live-patch rollout across the fleet ---------------------------------------------------
play live 1.1
check "live rollout (node1, node2 live-patched already): ansible-playbook exits 0 (${SECS} s)" test "$RC" = 0 || show live
check "  ... in the DRS order: live-patchable (fewest workloads first), the compliant last: node3 node4 node1 node2" test "$(order live)" = "node3 node4 node1 node2"
for n in 1 2 3 4; do
	check "  ... node$n compliant, live-patched, its workloads kept their pids" bash -c "test '$(scan_state $n)' = compliant && test '$(procs $n)' = '${pid0[n]}' && test \"\$(readlink '$T/node$n/root/run/bootbank/current')\" = rev/acme-os-1.1"
done
check "  ... the summary: 4 of 4 compliant; node3, node4 'remediated (live path)', node1, node2 'unchanged'" bash -c "grep -q '^4 of 4 hosts compliant' '$T/ctl/live.report' && test \$(grep -c '^node[34] .*remediated (live path)' '$T/ctl/live.report') = 2 && test \$(grep -c '^node[12] .* unchanged$' '$T/ctl/live.report') = 2"
cp "$T/ctl/live.report" "$T/live.report.keep"
# The hosts' mounts are shared here, as systemd makes them: a view must still be its workload's
# own, no peer of the host's revision mount nor of the other views (a peer once showed the
# old revision in a view switched beside another, and failed this rollout now and then).
props=
for n in 1 2 3 4; do
	for c in "$cg"/n$n-*/; do
		p=$(head -n 1 "$c/cgroup.procs") && [ -n "$p" ] &&
			props+=" $(nsenter -t "$p" -m findmnt -n -o PROPAGATION "$T/node$n/view-$(basename "$c" | cut -d- -f2)")"
	done
done
check "  ... every workload's view is a private mount in its namespace:$props" bash -c '[ -n "$0" ] && ! grep -qv "^private$" <<<"$(tr " " "\n" <<<"$0" | sed "/^$/d")"' "$props"

# --- a second run changes nothing ----------------------------------------------------------
sync
h0=$(hash_all)
play again 1.1
check "second run: exits 0 (${SECS} s)" test "$RC" = 0 || show again
for n in 1 2 3 4; do
	check "  ... node$n: changed=0, failed=0" bash -c "test '$(recap again node$n changed)' = 0 && test '$(recap again node$n failed)' = 0"
done
check "  ... the summary says 'unchanged' for each" test "$(grep -c ' unchanged$' "$T/ctl/again.report")" = 4

# --- the reboot path --------------------------------------------------------------------
bootst() { # N: "BOOTED-BANK STATE BANK-A-STATE BANK-B-STATE IN-SERVICE-VERSION" of node N
	bc "$1" --json status | python3 -c 'import json, sys; b = json.load(sys.stdin)["boot"]; k = b["booted"]["bank"]; print(k, b["banks"][k]["state"], b["banks"]["A"]["state"], b["banks"]["B"]["state"])'
}
inservice() { bc "$1" scan --json | python3 -c 'import json, sys; print((json.load(sys.stdin)["in_service"] or "? ?").split(" ")[1])'; }
hash_node() { (cd "$T/node$1/root" && find . -type f ! -path ./run/bootbank/lock -print0 | sort -z | xargs -0 sha256sum; sha256sum <"$T/node$1/disk.img") | sha256sum; }
wait_ssh() { # N: until node N's sshd answers (10 s at most)
	for _ in $(seq 1 50); do
		ctl ssh -q -i "$T/id_control" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
			-o BatchMode=yes -o ConnectTimeout=2 "root@$net.$1.2" true && return 0
		sleep 0.2
	done
	return 1
}
steps() { # RUN: the hosts on which the reboot and the assessment ran, in order ("R:node1 A:node1 ...")
	awk '/^TASK \[Reboot \(the reboot path\)\]/{t="R"; next} /^TASK \[Wait until the booted bank is assessed good\]/{t="A"; next}
		/^TASK /{t=""} t && /^(ok|changed|fatal): \[node[0-9]\]/{h=$2; gsub(/[\[\]:]/, "", h); printf "%s:%s ", t, h}' "$T/ctl/$1.log" | sed 's/ $//'
}
# Every host rebooted since its live patch (its power cycle run by hand): bank B, which the live
# patch activated, boots, is assessed good, serves 1.1; the workloads stopped, as at a reboot.
for n in 1 2 3 4; do
	id0=$(cat "$T/node$n/boot_id")
	nsenter --net="/run/netns/$tag-n$n" bash "$T/node$n/boot" 0 >>"$T/node$n/boot.log" 2>&1
	check "node$n power-cycled: bank B booted and assessed good, 1.1 in service, a new boot id, sshd back" \
		bash -c "test '$(bootst $n)' = 'B good good good' && test '$(inservice $n)' = 1.1 && test '$(cat "$T/node$n/boot_id")' != '$id0' && test -z '$(cat "$cg"/n$n-*/cgroup.procs)'" || sed 's/^/#   /' "$T/node$n/boot.log"
	wait_ssh "$n" || not_ok "node$n: sshd did not come back"
done
# node2's application does not come up on the new bank: its boot assessment fails.
printf '#!/bin/sh\necho "app did not come up"\nexit 1\n' >"$T/node2/root/etc/bootbank/health.d/required.d/50-app"
chmod 755 "$T/node2/root/etc/bootbank/health.d/required.d/50-app"
sync
h3=$(hash_node 3) h4=$(hash_node 4)
for n in 1 2; do id0[n]=$(cat "$T/node$n/boot_id"); done
play rbstop 1.2 -e bootbank_live_patch_mode=disable
check "reboot path, node2's new bank fails its assessment: ansible-playbook fails (exit $RC, ${SECS} s)" test "$RC" != 0 || show rbstop
check "  ... the order node1 node2 (reboot path for all, fewest workloads, the name), then stopped" test "$(order rbstop)" = "node1 node2"
check "  ... node1 rebooted by the reboot module and assessed good before node2 was taken, node2 rebooted, not assessed good" \
	test "$(steps rbstop)" = "R:node1 A:node1 R:node2 A:node2"
check "  ... node1: 1.2 in service from bank A (the other bank), assessed good, compliant, a new boot id" \
	bash -c "test '$(bootst 1)' = 'A good good good' && test '$(inservice 1)' = 1.2 && test '$(scan_state 1)' = compliant && test '$(cat "$T/node1/boot_id")' != '${id0[1]}'"
check "  ... node2: bank A marked bad by the assessment, fell back to bank B (1.1), non-compliant" \
	bash -c "test '$(bootst 2)' = 'B good bad good' && test '$(inservice 2)' = 1.1 && test '$(scan_state 2)' = non-compliant && test \$(grep -c '^boot ' '$T/node2/boot.log') = 3" || show rbstop
sync
check "  ... node3 and node4 untouched (roots and disks hashed before and after)" \
	test "$(hash_node 3) $(hash_node 4)" = "$h3 $h4"
check "  ... the report names node2 and the failed assessment" \
	grep -q "^node2 .*FAILED at '[^']*': booted bank B, not A (A is bad: health check '50-app' failed" "$T/ctl/rbstop.report"
check "  ... node3 and node4 'not taken'" test "$(grep -c '^node[34] .*not taken' "$T/ctl/rbstop.report")" = 2
cp "$T/ctl/rbstop.report" "$T/rbstop.report.keep"

# node2's application fixed; 2.0 cannot be live-patched from 1.x: auto takes the reboot path.
rm "$T/node2/root/etc/bootbank/health.d/required.d/50-app"
for n in 1 2 3 4; do b0[n]=$(bootst $n | cut -d' ' -f1) id0[n]=$(cat "$T/node$n/boot_id"); done
play reboot 2.0
check "reboot-path rollout of 2.0 (live-patch mode auto, no live-patch base): exits 0 (${SECS} s)" test "$RC" = 0 || show reboot
check "  ... each host rebooted by the reboot module, then assessed good, before the next" \
	test "$(steps reboot)" = "R:node1 A:node1 R:node2 A:node2 R:node3 A:node3 R:node4 A:node4"
for n in 1 2 3 4; do
	other=A && [ "${b0[n]}" = A ] && other=B
	check "  ... node$n: 2.0 in service from bank $other (the other bank), assessed good, compliant, a new boot id" \
		bash -c "test '$(bootst $n | cut -d' ' -f1,2)' = '$other good' && test '$(inservice $n)' = 2.0 && test '$(scan_state $n)' = compliant && test '$(cat "$T/node$n/boot_id")' != '${id0[n]}'"
done
check "  ... the summary: 4 of 4 compliant, each 'remediated (reboot path)'" bash -c "grep -q '^4 of 4 hosts compliant' '$T/ctl/reboot.report' && test \$(grep -c '^node[1-4] .*remediated (reboot path)' '$T/ctl/reboot.report') = 4"

# --- batches of two: a live-patch rollout of every host, bootbank_serial=2 ---------------------
batches() { # RUN: the hosts of each batch the rollout took (its 'Facts' task), "node1,node2 node3,node4"
	awk '/^TASK \[Facts\]/{t=1; if (b != "") print b; b=""; next} /^TASK |^PLAY /{t=0}
		t && /^(ok|changed|fatal): \[node[0-9]\]/{h=$2; gsub(/[\[\]:]/, "", h); b = b " " h}
		END{if (b != "") print b}' "$T/ctl/$1.log" |
		while read -r l; do tr ' ' '\n' <<<"$l" | sort | paste -sd, -; done | paste -sd' ' -
}
# The workloads stopped at the reboots; started again on node1 (one) and node3 (two), none on
# node2 and node4 (theirs stay registered, not running): the DRS order is node2 node4 (no
# workload, the name), node1, node3, in batches node2,node4 then node1,node3.
for w in app1; do bc 1 workload remove $w >/dev/null && start_reader 1 $w || not_ok "node1: reader $w not started"; done
for w in app1 app2; do bc 3 workload remove $w >/dev/null && start_reader 3 $w || not_ok "node3: reader $w not started"; done
for n in 1 2 3 4; do pid0[n]=$(procs $n) id0[n]=$(cat "$T/node$n/boot_id"); done
play serial 2.1 -e bootbank_serial=2
check "live-patch rollout of 2.1 in batches of two (bootbank_serial=2): exits 0 (${SECS} s)" test "$RC" = 0 || show serial
check "  ... the batches node2,node4 then node1,node3 (the DRS order: the fewest running workloads, then the name): $(batches serial)" test "$(batches serial)" = "node2,node4 node1,node3"
for n in 1 2 3 4; do
	check "  ... node$n: compliant, live-patched to 2.1 (revision acme-os-2.1, no reboot: the same boot id), its workloads kept their pids" \
		bash -c "test '$(scan_state $n)' = compliant && test \"\$(readlink '$T/node$n/root/run/bootbank/current')\" = rev/acme-os-2.1 && test '$(cat "$T/node$n/boot_id")' = '${id0[n]}' && test '$(procs $n)' = '${pid0[n]}'"
done
check "  ... the summary: 4 of 4 compliant, each 'remediated (live path)'" bash -c "grep -q '^4 of 4 hosts compliant' '$T/ctl/serial.report' && test \$(grep -c '^node[1-4] .*remediated (live path)' '$T/ctl/serial.report') = 4" || sed 's/^/#   /' "$T/ctl/serial.report"

echo "# rollout in batches of two report:"
sed 's/^/#   /' "$T/ctl/serial.report"
echo "# reboot-path rollout report:"
sed 's/^/#   /' "$T/ctl/reboot.report"
echo "# stopped reboot-path rollout report:"
sed 's/^/#   /' "$T/rbstop.report.keep"
echo "# live rollout report:"
sed 's/^/#   /' "$T/live.report.keep"
echo "# stopped rollout report:"
sed 's/^/#   /' "$T/ctl/stop.report"
echo "# --check report (node1, node2 compliant, node3 non-compliant, node4 no desired image):"
sed 's/^/#   /' "$T/check2.report.keep"
bk_done
