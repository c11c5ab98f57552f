#!/usr/bin/env bash
# One-node SLURM "cluster" on localhost, for the cluster test (tests/test_slurm.py).
#
#   sudo bash ci/slurm/start.sh      # Debian/Ubuntu, as root, no systemd needed
#   bash ci/slurm/stop.sh            # stops what this script started, by pid file
#
# Starts munged, MariaDB (private data dir), slurmdbd (so `sacct` works), slurmctld and
# slurmd, with one partition `debug` holding this machine's CPUs and 90 % of its memory.
# Idempotent: packages already installed are not reinstalled, daemons already running are
# left alone. Scratch (configs, state, logs, pid files): $SLURM_CI_DIR, default
# ${TMPDIR:-/tmp}/rnngrad-slurm. Pitfalls this avoids are in comments below.
set -euo pipefail

D="${SLURM_CI_DIR:-${TMPDIR:-/tmp}/rnngrad-slurm}"
PART="${SLURM_CI_PARTITION:-debug}"
DB_PORT="${SLURM_CI_DB_PORT:-3306}"
export DEBIAN_FRONTEND=noninteractive
t0=$SECONDS
say() { echo "[slurm-ci $((SECONDS - t0))s] $*"; }

[ "$(id -u)" = 0 ] || { echo "ci/slurm/start.sh must run as root (it starts system daemons)" >&2; exit 1; }
STARTED="$D/run/started"   # pid files of daemons this script started; stop.sh stops only these

# A daemon is running when its pid file names a live process.
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
mark_started() { touch "$STARTED"; grep -qxF "$1" "$STARTED" || echo "$1" >> "$STARTED"; }

# A cluster that this scratch dir did not start (another $SLURM_CI_DIR, a real install)
# already answers: use it as it is, and leave it to whoever started it.
# (timeout: without a controller, sinfo retries for ~10 s before failing)
if [ ! -s "$STARTED" ] && timeout 5 sinfo -h >/dev/null 2>&1 && timeout 5 sacct -n -X -S now >/dev/null 2>&1; then
  say "a SLURM cluster is already running (not started from $D): using it, stop.sh will leave it"
  exit 0
fi

mkdir -p "$D"/etc "$D"/state/ctld "$D"/state/d "$D"/log "$D"/run

# ------------------------------------------------------------------ 1. packages (~20 s)
PKGS="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing$missing"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# ------------------------------------------------------------------ 2. munge
# Debian's postinst creates the key but (without systemd) starts nothing.
if [ ! -s /etc/munge/munge.key ]; then
  mungekey -c -k /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
fi
MUNGE_PID=/run/munge/munged.pid
if ! running "$MUNGE_PID"; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --force   # daemonises; --force: stale socket ok
  mark_started "$MUNGE_PID"
fi
munge -n | unmunge >/dev/null

# ------------------------------------------------------------------ 3. MariaDB for slurmdbd
# A private data dir and pid file under $D, so we never touch a system database.
DB_PID="$D/run/mysqld/mariadb.pid"   # in a dir mysql may write
if ! running "$DB_PID"; then
  if [ ! -d "$D/mysql/mysql" ]; then
    mkdir -p "$D/mysql"
    chown mysql:mysql "$D/mysql"
    mariadb-install-db --user=mysql --datadir="$D/mysql" --skip-test-db \
      --auth-root-authentication-method=socket >"$D/log/mariadb-install.log" 2>&1
  fi
  mkdir -p "$D/run/mysqld" && touch "$D/log/mariadb.log"
  chown mysql:mysql "$D/run/mysqld" "$D/log/mariadb.log"   # mariadbd runs as mysql
  # mariadbd does not daemonise: run it in the background, detached from this shell.
  setsid /usr/sbin/mariadbd --user=mysql --datadir="$D/mysql" --pid-file="$DB_PID" \
    --socket="$D/run/mysqld/mysqld.sock" --bind-address=127.0.0.1 --port="$DB_PORT" \
    --log-error="$D/log/mariadb.log" </dev/null >/dev/null 2>&1 &
  mark_started "$DB_PID"
  for _ in $(seq 60); do
    mariadb-admin --socket="$D/run/mysqld/mysqld.sock" ping >/dev/null 2>&1 && break; sleep 0.5
  done
fi
mariadb --socket="$D/run/mysqld/mysqld.sock" -u root <<'EOF'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

# ------------------------------------------------------------------ 4. configs
CPUS=$(nproc)
MEM=$(( $(awk '/^MemTotal:/{print $2}' /proc/meminfo) / 1024 * 9 / 10 ))   # must not exceed what slurmd detects
write_if_changed() {  # $1 = target; new content on stdin; prints "changed" when it changed
  local tmp; tmp=$(mktemp "$1.XXXX"); cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; echo changed; fi
}
# MinJobAge keeps finished jobs visible to squeue for 5 min (plugin fallback);
# DefMemPerCPU: without it a job with no --mem takes the whole node (CR_Core_Memory);
# AccountingStoreFlags=job_comment: sacct shows the plugin's comment `rule_<name>...`.
conf_changed=$(write_if_changed "$D/etc/slurm.conf" <<EOF
ClusterName=rnngradci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge=300
MailProg=/bin/true
StateSaveLocation=$D/state/ctld
SlurmdSpoolDir=$D/state/d
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
NodeName=localhost CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PART Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
write_if_changed "$D/etc/slurmdbd.conf" >/dev/null <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
chmod 600 "$D/etc/slurmdbd.conf"   # slurmdbd refuses a world-readable config
# The configs MUST be at the compiled-in default path: the snakemake slurm-jobstep plugin
# strips SLURM_* variables (SLURM_CONF too) before its inner `srun`, which then fails with
# "DNS SRV lookup failed". A symlink is enough.
mkdir -p /etc/slurm
ln -sfn "$D/etc/slurm.conf" /etc/slurm/slurm.conf
ln -sfn "$D/etc/slurmdbd.conf" /etc/slurm/slurmdbd.conf

# ------------------------------------------------------------------ 5. slurmdbd, slurmctld, slurmd
if ! running "$D/run/slurmdbd.pid"; then
  /usr/sbin/slurmdbd                                   # daemonises
  mark_started "$D/run/slurmdbd.pid"
fi
for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
if ! running "$D/run/slurmctld.pid"; then
  /usr/sbin/slurmctld                                  # registers the cluster with slurmdbd
  mark_started "$D/run/slurmctld.pid"
elif [ -n "$conf_changed" ]; then
  scontrol reconfigure
fi
if ! running "$D/run/slurmd.pid"; then
  /usr/sbin/slurmd -N localhost                        # -N: the hostname is not "localhost"
  mark_started "$D/run/slurmd.pid"
fi
for _ in $(seq 60); do
  state=$(sinfo -h -p "$PART" -o %T 2>/dev/null || true)
  [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ] && break
  sleep 0.5
done
state=$(sinfo -h -p "$PART" -o %T 2>/dev/null || true)
case "$state" in
  idle|mixed|allocated) ;;
  *) echo "SLURM node not up (state '$state'); logs in $D/log:" >&2; tail -n 20 "$D"/log/*.log >&2; exit 1 ;;
esac
# sacct must answer (the test and the plugin's default status command use it).
for _ in $(seq 60); do sacct -n -X >/dev/null 2>&1 && break; sleep 0.5; done
sacct -n -X >/dev/null
say "SLURM ready: partition $PART, $CPUS CPUs, ${MEM} MB; account root; scratch $D"
