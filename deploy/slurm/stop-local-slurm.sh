#!/usr/bin/env bash
# Stop the one-node SLURM started by start-local-slurm.sh (by pid file, never by name).
SLURM_HOME=${SLURM_HOME:-/tmp/stemscale-slurm}
for pidfile in "$SLURM_HOME/slurmd.pid" "$SLURM_HOME/slurmctld.pid"; do
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
done
