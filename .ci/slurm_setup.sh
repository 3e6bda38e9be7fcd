#!/usr/bin/env bash
# A real two-node Slurm cluster on this machine, for the tests marked `slurm`.
#
#   bash .ci/slurm_setup.sh          # as root; safe to run again (idempotent)
#
# Installs Debian's slurm-wlm and munge, writes a slurm.conf with two nodes on this host,
# starts munged, slurmctld and one slurmd per node, and waits until `sinfo` shows both nodes
# idle. The two nodes are two slurmd daemons (`slurmd -N fp8n1`, `slurmd -N fp8n2`: Debian
# builds Slurm with --enable-multiple-slurmd), each with its own port, spool directory and a
# loopback address of its own, named in /etc/hosts (127.0.77.1 fp8n1, 127.0.77.2 fp8n2), so a
# job's first node name is a MASTER_ADDR that the other node reaches, as on a real cluster.
# There is no accounting storage (no slurmdbd), so `sacct` does not work here: the suite
# tracks jobs with squeue / scontrol show job, and finished jobs are also written to the
# jobcomp file below. Nothing GPU-related is configured: test matrices set
# `slurm: {request_gpus: false}`.
set -euo pipefail

CONF_DIR=/etc/slurm
SPOOL=/var/spool/fp8suite-slurm
LOGS=/var/log/slurm
WAIT_S=${SLURM_SETUP_WAIT_S:-60}
# Node name, loopback address and slurmd port of each node.
NODES=(fp8n1 fp8n2)
ADDRS=(127.0.77.1 127.0.77.2)
PORTS=(17001 17002)
HOSTS_MARK="# fp8suite slurm node (.ci/slurm_setup.sh)"

say() { echo "slurm_setup: $*"; }
die() { echo "slurm_setup: error: $*" >&2; exit 1; }

# "<node> <state>" per node of the cluster.
node_states() { sinfo -h -N -o '%N %t' 2>/dev/null | sort -u; }
# True when every node of NODES is up (idle, or busy with a job).
all_up() {
  local states node
  states=$(node_states || true)
  for node in "${NODES[@]}"; do
    grep -qxE "$node (idle|mix|alloc)" <<< "$states" || return 1   # "idle*": not responding
  done
}

if [[ $(id -u) != 0 ]]; then
  die "must run as root (it installs packages and starts munged, slurmctld and slurmd)"
fi

# --- packages -------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  # Package scripts try to start services through invoke-rc.d; in a container without an init
  # system that fails the install, so forbid it for the duration (policy-rc.d exit 101).
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  [[ -e $policy ]] && had_policy=1
  if (( ! had_policy )); then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; fi
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
    || { (( had_policy )) || rm -f "$policy"; die "apt-get install slurm-wlm munge failed"; }
  (( had_policy )) || rm -f "$policy"
fi

# --- munge ----------------------------------------------------------------------------------
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  say "creating /etc/munge/munge.key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null 2>&1 || die "munge does not work after starting munged"
fi

# --- node names -----------------------------------------------------------------------------
# Each node's name resolves to its own loopback address (Linux answers on all of 127/8).
hosts_ok=1
for i in "${!NODES[@]}"; do
  [[ "$(getent ahostsv4 "${NODES[$i]}" | awk 'NR == 1 {print $1}')" == "${ADDRS[$i]}" ]] || hosts_ok=0
done
if (( ! hosts_ok )); then
  say "naming the nodes in /etc/hosts"
  kept=$(grep -vF "$HOSTS_MARK" /etc/hosts || true)
  # Rewritten in place, not replaced: in a container /etc/hosts is often a bind mount.
  { printf '%s\n' "$kept"
    for i in "${!NODES[@]}"; do printf '%s %s %s\n' "${ADDRS[$i]}" "${NODES[$i]}" "$HOSTS_MARK"; done
  } > /etc/hosts.fp8suite.new
  cat /etc/hosts.fp8suite.new > /etc/hosts || die "cannot write /etc/hosts (two nodes need names)"
  rm -f /etc/hosts.fp8suite.new
  for i in "${!NODES[@]}"; do
    got=$(getent ahostsv4 "${NODES[$i]}" | awk 'NR == 1 {print $1}')
    [[ "$got" == "${ADDRS[$i]}" ]] \
      || die "${NODES[$i]} resolves to '${got:-nothing}', not ${ADDRS[$i]} (check /etc/nsswitch.conf)"
  done
fi

# --- slurm.conf -----------------------------------------------------------------------------
host=$(hostname -s)
# slurmd -C reports what it sees (CPUs, sockets, cores, threads, memory); a node configured
# with more than that is drained, so take its numbers as they are.
hw=$(slurmd -C 2>/dev/null | head -n 1 | tr ' ' '\n' \
     | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
[[ -n "$hw" ]] || die "slurmd -C did not report this machine's CPUs and memory"

mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$LOGS"
for node in "${NODES[@]}"; do mkdir -p "$SPOOL/d/$node"; done
node_lines=$(for i in "${!NODES[@]}"; do
  echo "NodeName=${NODES[$i]} NodeHostname=$host NodeAddr=${ADDRS[$i]} Port=${PORTS[$i]} ${hw}State=UNKNOWN"
done)
conf=$(cat <<EOF
# Written by .ci/slurm_setup.sh: two nodes (two slurmd on this host), no accounting, no
# cgroups, no GPUs. %n is the node's name (slurmd -N <node>).
ClusterName=fp8suite
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.%n.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.%n.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
# Finished jobs stay visible to scontrol show job for 10 minutes.
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=10
$node_lines
PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP
EOF
)
if [[ ! -f $CONF_DIR/slurm.conf ]] || [[ "$(cat "$CONF_DIR/slurm.conf")" != "$conf" ]]; then
  say "writing $CONF_DIR/slurm.conf for node $host ($hw)"
  printf '%s\n' "$conf" > "$CONF_DIR/slurm.conf"
  changed=1
else
  changed=0
fi

# --- daemons --------------------------------------------------------------------------------
running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {  # stop the daemon of pid file $1 (one this script started), waiting for it to go
  local pid
  running "$1" || return 0
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  rm -f "$1"
}

if (( changed )); then
  # Nodes were added, removed or moved: slurmctld reads them only when it starts. The
  # one-node layout of earlier versions of this script kept its slurmd in /run/slurmd.pid.
  stop /run/slurmd.pid
  for node in "${NODES[@]}"; do stop "/run/slurmd.$node.pid"; done
  stop /run/slurmctld.pid
fi
if ! running /run/slurmctld.pid; then
  say "starting slurmctld"
  slurmctld || die "slurmctld did not start (see $LOGS/slurmctld.log)"
fi
for _ in $(seq "$WAIT_S"); do scontrol ping >/dev/null 2>&1 && break; sleep 1; done
scontrol ping >/dev/null 2>&1 || die "slurmctld does not answer scontrol ping (see $LOGS/slurmctld.log)"

for node in "${NODES[@]}"; do
  if ! running "/run/slurmd.$node.pid"; then
    say "starting slurmd for node $node"
    slurmd -N "$node" || die "slurmd -N $node did not start (see $LOGS/slurmd.$node.log)"
  fi
done

# Wait for both nodes to register; bring one back if an earlier run left it down or drained.
for _ in $(seq "$WAIT_S"); do
  all_up && break
  while read -r node state; do
    case "$state" in
      down*|drain*|drng*|fail*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
    esac
  done < <(node_states || true)
  sleep 1
done
if all_up; then
  say "Slurm is up: $(sinfo -h -N -o '%N %t %c CPUs %m MB' | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
else
  # A second slurmd on one host needs Slurm built with --enable-multiple-slurmd (Debian's is).
  die "nodes not idle after ${WAIT_S}s: $(node_states | tr '\n' ' ')" \
      "(sinfo -R: $(sinfo -h -R 2>/dev/null | head -n 2 | tr '\n' ' '); logs in $LOGS;" \
      "two slurmd on one host need Slurm built with --enable-multiple-slurmd)"
fi
