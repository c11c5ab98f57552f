#!/usr/bin/env bash
# Stop the daemons ci/slurm/start.sh started, by their pid files (never by name).
# Daemons that were already running before start.sh are left alone.
set -uo pipefail
D="${SLURM_CI_DIR:-${TMPDIR:-/tmp}/rnngrad-slurm}"
STARTED="$D/run/started"
[ -s "$STARTED" ] || { echo "[slurm-ci] nothing to stop ($STARTED is empty or missing)"; exit 0; }

stop() {  # $1 = pid file
  [ -s "$1" ] || return 0
  local p; p=$(cat "$1")
  if kill "$p" 2>/dev/null; then
    for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
    echo "[slurm-ci] stopped $(basename "$1" .pid) (pid $p)"
  fi
  return 0
}
# Reverse dependency order: compute node, controller, accounting, database, munge.
for name in slurmd.pid slurmctld.pid slurmdbd.pid mariadb.pid munged.pid; do
  grep "/$name\$" "$STARTED" | while read -r pidfile; do stop "$pidfile"; done
done
rm -f "$STARTED"
