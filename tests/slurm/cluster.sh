#!/usr/bin/env bash
# A real one-node Slurm cluster for the tests, from Debian's packages, started by hand
# (no systemd) and stopped by PID. Its configuration goes to /etc/slurm, everything
# else (databases, spool, logs, PID files) to one state folder.
#
#   tests/slurm/cluster.sh install   apt-get the daemons (root; once per machine)
#   tests/slurm/cluster.sh start     write the configuration, start munged, MariaDB,
#                                    slurmdbd, slurmctld and slurmd
#   tests/slurm/cluster.sh stop      stop those daemons by the PIDs they recorded and remove
#                                    the configuration (no Slurm client then waits on it)
#   tests/slurm/cluster.sh status    sinfo of the running cluster
#
# The node declares two GPU gres backed by dummy files, so `--gpus`/`--gres=gpu:N`
# requests are scheduled on a machine without GPUs, and 8 CPUs whatever the machine
# has (config_overrides), so a Dask scheduler job and its worker jobs fit beside
# each other. Accounting goes through slurmdbd to MariaDB, so `sacct` answers as on
# a production cluster. Ports are unusual ones so a real installation is left alone.
#
# The configuration goes where every Slurm command looks, /etc/slurm (the Snakemake
# plugins drop SLURM_* variables, SLURM_CONF included, before nested sbatch/srun);
# the script refuses to overwrite a slurm.conf it did not write.
# Environment: PATCHINTERACT_SLURM_DIR (state folder, default /tmp/patchinteract-slurm).
set -euo pipefail

STATE=${PATCHINTERACT_SLURM_DIR:-/tmp/patchinteract-slurm}
NODE=$(hostname -s)
CLUSTER=patchinteract
ACCOUNT=patchinteract
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
DB_PORT=13306
NODE_CPUS=8
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
DAEMONS=(slurmd slurmctld slurmdbd mariadb munged) # stop order

CONF_DIR=/etc/slurm
MARKER="# written by patchinteract tests/slurm/cluster.sh"

say() { echo "[slurm-cluster] $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

install() {
    [[ $(id -u) == 0 ]] || die "installing Debian packages needs root"
    if command -v slurmctld slurmd slurmdbd sbatch munged mariadbd >/dev/null 2>&1; then
        say "packages already installed"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The packages' own start scripts are refused without an init system; harmless.
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

write_config() {
    if [[ -f $CONF_DIR/slurm.conf ]] && ! grep -qxF "$MARKER" "$CONF_DIR/slurm.conf"; then
        die "$CONF_DIR/slurm.conf belongs to another Slurm installation; not overwriting it"
    fi
    mkdir -p "$STATE"/{log,slurmctld,slurmd,gpu} "$CONF_DIR"
    touch "$STATE/gpu/0" "$STATE/gpu/1" # gres needs one File per GPU; no device behind them
    local memory_mb
    memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$CONF_DIR/slurm.conf" <<EOF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
GresTypes=gpu
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
# Short enough for a time-out test: SIGTERM at the limit, SIGKILL KillWait seconds later.
KillWait=10
OverTimeLimit=0
MinJobAge=600
InactiveLimit=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$memory_mb Gres=gpu:2 State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$CONF_DIR/gres.conf" <<EOF
$MARKER
AutoDetect=off
Name=gpu File=$STATE/gpu/0
Name=gpu File=$STATE/gpu/1
EOF
    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$CONF_DIR/slurmdbd.conf" # slurmdbd refuses a readable password file
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    while ((SECONDS < deadline)); do
        timeout 5 "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "$what did not come up in time; logs: $STATE/log"
}

MARIADB=(mariadb --socket="$STATE/mysql.sock" -uroot)

start() {
    [[ $(id -u) == 0 ]] || die "the test cluster runs its daemons as root"
    command -v slurmctld >/dev/null || die "Slurm is not installed (run: $0 install)"
    if [[ -f $STATE/slurmctld.pid ]] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
        say "already running"
        return
    fi
    write_config

    # Slurm's clients reach munged on its default socket (sacctmgr ignores AuthInfo):
    # reuse a running munged, else start one with the machine's key.
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        [[ -f /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
        mkdir -p /run/munge
        munged --force --pid-file="$STATE/munged.pid" --log-file="$STATE/log/munged.log"
        wait_for 10 munged bash -c "munge -n | unmunge"
    fi

    if [[ ! -d $STATE/mysql ]]; then
        mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
            >"$STATE/log/mariadb-install.log" 2>&1
    fi
    # Detached, with no inherited stdout: callers capturing output must not wait on it.
    setsid mariadbd --user=root --datadir="$STATE/mysql" --socket="$STATE/mysql.sock" --port=$DB_PORT \
        --bind-address=127.0.0.1 --pid-file="$STATE/mariadb.pid" --log-error="$STATE/log/mariadb.log" \
        --innodb-buffer-pool-size=64M </dev/null >>"$STATE/log/mariadb.log" 2>&1 &
    wait_for 60 MariaDB "${MARIADB[@]}" -e "select 1"
    "${MARIADB[@]}" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="test account" >/dev/null 2>&1 || true
    sacctmgr -i add user "$(id -un)" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null 2>&1 || true

    slurmctld
    wait_for 30 slurmctld scontrol ping
    slurmd
    # A node left drained or down by an earlier start is put back into service.
    wait_for 30 "node $NODE" bash -c "sinfo -h -n $NODE -o %T | grep -qv -e unknown -e '^$'"
    if sinfo -h -n "$NODE" -o %T | grep -q -e drain -e down; then
        scontrol update nodename="$NODE" state=resume
    fi
    wait_for 30 "node $NODE (idle)" bash -c "sinfo -h -n $NODE -o %T | grep -q -e idle -e mix -e alloc"
    say "up: $(sinfo -h -o '%P %D %T %G')"
}

stop() {
    local name pid
    for name in "${DAEMONS[@]}"; do
        [[ -f $STATE/$name.pid ]] || continue
        pid=$(cat "$STATE/$name.pid")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 60); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.25
            done
            kill -9 "$pid" 2>/dev/null && say "$name ($pid) killed" || say "$name ($pid) stopped"
        fi
        rm -f "$STATE/$name.pid"
    done
    remove_config
}

# Where Slurm's clients are installed, a slurm.conf whose controller does not answer makes every
# `scontrol` wait for its message timeout (9 s), and Snakemake's Slurm executor plugin runs
# `scontrol show config` when it is imported, at every `snakemake` start. Without a slurm.conf
# the same call fails at once, so the configuration exists only while the cluster runs.
remove_config() {
    local file
    for file in slurm.conf gres.conf slurmdbd.conf; do
        if [[ -f $CONF_DIR/$file ]] && grep -qxF "$MARKER" "$CONF_DIR/$file"; then
            rm -f "$CONF_DIR/$file"
        fi
    done
}

case ${1:-} in
install) install ;;
start) start ;;
stop) stop ;;
status) sinfo ;;
*) die "usage: $0 install|start|stop|status" ;;
esac
