#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Fleet remediation with Ansible (docs/fleet.md): four managed hosts, each an sshd in a network
# namespace of its own (veth to the root namespace, 10.X.N.0/30) with its own sandbox root,
# loop disk and running workloads; the control node (this namespace) runs ansible-playbook
# with the bootbank.fleet collection over SSH. Scenarios: --check changes nothing (sandbox
# roots and disks hashed); a live-patch rollout (every host compliant, workloads keep their
# pids, the DRS order); a second run changes nothing; a rollout whose third host fails its
# pre-check stops there (hosts four and later untouched, the report names host and reason).
. "$(dirname "$0")/lib.sh"
bk_need_root
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
repo=$(cd "$(dirname "$0")/../.." && pwd)
tag=bkfleet$$
cg=$CGROOT/$tag
NHOSTS=4
net=10.$((20 + $$ % 200)) # 10.X.N.0/30 for host N: two runs at once do not collide
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
		ip netns del "$tag-n$n" 2>/dev/null
		ip link del "${tag}h$n" 2>/dev/null
	done
	bk_cleanup
}
trap cleanup EXIT

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
		exec unshare -m --propagation private sh -c 'mount --bind "$1" "$2" && exec "$3" "$2" 4 "$4" 200' \
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
	# the network: a veth pair, $net.N.1 here, $net.N.2 in the host's namespace
	ip netns add "$tag-n$n" || return 1
	ip link add "${tag}h$n" type veth peer name eth0 netns "$tag-n$n" || return 1
	ip addr add "$net.$n.1/30" dev "${tag}h$n" && ip link set "${tag}h$n" up || return 1
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
node 1 1 && node 2 1 && node 3 2 && node 4 3 || bk_skip "cannot set up the managed hosts"
for n in $(seq 1 $NHOSTS); do
	for _ in $(seq 1 50); do
		ssh -q -i "$T/id_control" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
			-o BatchMode=yes -o ConnectTimeout=2 "root@$net.$n.2" true && break
		sleep 0.2
	done
done
ok "4 managed hosts set up in $(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$(date +%s.%N)") s"

mkdir -p "$T/ctl"
cat >"$T/ctl/inventory.ini" <<EOF2
[bootbank]
$(for n in 4 3 1 2; do echo "node$n ansible_host=$net.$n.2 bootbank_root=$T/node$n/root"; done)

[bootbank:vars]
ansible_user=root
ansible_python_interpreter=/usr/bin/python3
ansible_ssh_private_key_file=$T/id_control
ansible_ssh_common_args=-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
bootbank_bankctl=$BANKCTL
bootbank_controller_bankctl=$BANKCTL
bootbank_sandbox_reboot=true
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
	ansible-playbook -i "$T/ctl/inventory.ini" "$PB" -e "bootbank_image_version=$v" \
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
show() { sed 's/^/#   /' "$T/ctl/$1.log" | tail -n 60; }
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
bc 3 workload remove nofsr >/dev/null
kill "$nofsr"; wait "$nofsr" 2>/dev/null
bc 3 workload add app2 --cgroup "$tag/n3-app2" --view "$T/node3/view-app2" >/dev/null

# --- a live-patch rollout across the fleet ---------------------------------------------------
play live 1.1
check "live rollout (node1, node2 live-patched already): ansible-playbook exits 0 (${SECS} s)" test "$RC" = 0 || show live
check "  ... in the DRS order: live-patchable (fewest workloads first), the compliant last: node3 node4 node1 node2" test "$(order live)" = "node3 node4 node1 node2"
for n in 1 2 3 4; do
	check "  ... node$n compliant, live-patched, its workloads kept their pids" bash -c "test '$(scan_state $n)' = compliant && test '$(procs $n)' = '${pid0[n]}' && test \"\$(readlink '$T/node$n/root/run/bootbank/current')\" = rev/acme-os-1.1"
done
check "  ... the summary: 4 of 4 compliant; node3, node4 'remediated (live path)', node1, node2 'unchanged'" bash -c "grep -q '^4 of 4 hosts compliant' '$T/ctl/live.report' && test \$(grep -c '^node[34] .*remediated (live path)' '$T/ctl/live.report') = 2 && test \$(grep -c '^node[12] .* unchanged$' '$T/ctl/live.report') = 2"
cp "$T/ctl/live.report" "$T/live.report.keep"

# --- a second run changes nothing ----------------------------------------------------------
sync
h0=$(hash_all)
play again 1.1
check "second run: exits 0 (${SECS} s)" test "$RC" = 0 || show again
for n in 1 2 3 4; do
	check "  ... node$n: changed=0, failed=0" bash -c "test '$(recap again node$n changed)' = 0 && test '$(recap again node$n failed)' = 0"
done
check "  ... the summary says 'unchanged' for each" test "$(grep -c ' unchanged$' "$T/ctl/again.report")" = 4

echo "# live rollout report:"
sed 's/^/#   /' "$T/live.report.keep"
echo "# stopped rollout report:"
sed 's/^/#   /' "$T/ctl/stop.report"
bk_done
