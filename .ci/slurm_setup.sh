#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the tests marked `slurm`.
#
#   bash .ci/slurm_setup.sh          # as root; safe to run again (idempotent)
#
# Installs Debian's slurm-wlm and munge, writes a one-node slurm.conf for this host, starts
# munged, slurmctld and slurmd, and waits until `sinfo` shows the node idle. There is no
# accounting storage (no slurmdbd), so `sacct` does not work here: the suite tracks jobs with
# squeue / scontrol show job, and finished jobs are also written to the jobcomp file below.
# Nothing GPU-related is configured: test matrices set `slurm: {request_gpus: false}`.
set -euo pipefail

CONF_DIR=/etc/slurm
SPOOL=/var/spool/fp8suite-slurm
LOGS=/var/log/slurm
WAIT_S=${SLURM_SETUP_WAIT_S:-60}

say() { echo "slurm_setup: $*"; }
die() { echo "slurm_setup: error: $*" >&2; exit 1; }

node_state() { sinfo -h -N -o '%t' 2>/dev/null | head -n 1; }

if [[ $(id -u) != 0 ]]; then
  die "must run as root (it installs packages and starts munged, slurmctld and slurmd)"
fi

# Already up and idle (or busy with a job): nothing to do.
case "$(node_state || true)" in
  idle|mix|alloc) say "Slurm is already up: $(sinfo -h -N -o '%N %t' | head -n 1)"; exit 0 ;;
esac

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

# --- slurm.conf -----------------------------------------------------------------------------
host=$(hostname -s)
# slurmd -C reports what it sees (CPUs, sockets, cores, threads, memory); a node configured
# with more than that is drained, so take its numbers as they are.
hw=$(slurmd -C 2>/dev/null | head -n 1 | tr ' ' '\n' \
     | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
[[ -n "$hw" ]] || die "slurmd -C did not report this machine's CPUs and memory"

mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOGS"
conf=$(cat <<EOF
# Written by .ci/slurm_setup.sh: one node, no accounting, no cgroups, no GPUs.
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
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
# Finished jobs stay visible to scontrol show job for 10 minutes.
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=10
NodeName=$host NodeAddr=127.0.0.1 ${hw}State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
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

if running /run/slurmctld.pid; then
  if (( changed )); then scontrol reconfigure || die "scontrol reconfigure failed"; fi
else
  say "starting slurmctld"
  slurmctld || die "slurmctld did not start (see $LOGS/slurmctld.log)"
fi
for _ in $(seq "$WAIT_S"); do scontrol ping >/dev/null 2>&1 && break; sleep 1; done
scontrol ping >/dev/null 2>&1 || die "slurmctld does not answer scontrol ping (see $LOGS/slurmctld.log)"

if ! running /run/slurmd.pid; then
  say "starting slurmd"
  slurmd || die "slurmd did not start (see $LOGS/slurmd.log)"
fi

# Wait for the node to register; bring it back if an earlier run left it down or drained.
state=""
for _ in $(seq "$WAIT_S"); do
  state=$(node_state || true)
  case "$state" in
    idle|mix|alloc) break ;;
    down*|drain*|drng*|fail*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
case "$state" in
  idle|mix|alloc) say "Slurm is up: $(sinfo -h -N -o '%N %t %c CPUs %m MB' | head -n 1)" ;;
  *) die "node $host is '${state:-unknown}' after ${WAIT_S}s, not idle" \
         "(sinfo -R: $(sinfo -h -R 2>/dev/null | head -n 1); logs in $LOGS)" ;;
esac
