#!/usr/bin/env bash
# Start a real one-node SLURM cluster (slurmctld + slurmd + munge) on this machine.
#
# Used by CI and by developers to test the SLURM path for real. Needs root and
# Debian's slurm-wlm packages (installed here if missing). State, spool, pid and
# log files live under $SLURM_HOME (default /tmp/stemscale-slurm). Stop it with
# stop-local-slurm.sh. Idempotent: a running cluster is left alone.
set -euo pipefail

SLURM_HOME=${SLURM_HOME:-/tmp/stemscale-slurm}
mkdir -p "$SLURM_HOME"/{state,spool,log}

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

if [ -f "$SLURM_HOME/slurmctld.pid" ] && kill -0 "$(cat "$SLURM_HOME/slurmctld.pid")" 2>/dev/null \
   && scontrol ping 2>/dev/null | grep -q UP; then
    echo "slurm already running"
    exit 0
fi

# munge: no systemd here, so prepare its run directory and key by hand.
mkdir -p /run/munge /etc/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /run/munge /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! pgrep -u munge munged >/dev/null; then
    su -s /bin/sh munge -c "/usr/sbin/munged"
fi

host=$(hostname -s)
if ! getent hosts "$host" >/dev/null; then
    echo "127.0.0.1 $host" >> /etc/hosts
fi
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)

mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=stemscale
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$SLURM_HOME/state
SlurmdSpoolDir=$SLURM_HOME/spool
SlurmctldPidFile=$SLURM_HOME/slurmctld.pid
SlurmdPidFile=$SLURM_HOME/slurmd.pid
SlurmctldLogFile=$SLURM_HOME/log/slurmctld.log
SlurmdLogFile=$SLURM_HOME/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF

/usr/sbin/slurmctld
/usr/sbin/slurmd

# Wait until the node really takes jobs (sinfo alone can show a stale 'idle').
for _ in $(seq 1 30); do
    if timeout 20 srun -N1 -t 1 true 2>/dev/null; then
        echo "slurm up: $(sinfo -h -o '%P %a %D %t' | head -1)"
        exit 0
    fi
    sleep 1
done
echo "slurm did not come up; logs in $SLURM_HOME/log" >&2
tail -n 20 "$SLURM_HOME"/log/*.log >&2 || true
exit 1
