#!/usr/bin/env bash
# A real single-node Slurm for the cluster tests (CI runs as root on Debian/Ubuntu).
#
# Installs Debian's slurmctld, slurmd, slurm-client and munge, writes a small slurm.conf with two
# GPUs backed by placeholder device files (gres.conf File=...), so that Slurm sets
# CUDA_VISIBLE_DEVICES for `--gres=gpu:1` jobs, and starts munged, slurmctld and slurmd.
#
# Idempotent: a second call with the same configuration on a machine where the test cluster
# answers returns at once; a changed configuration restarts the two Slurm daemons.
# Bounded: every step has a timeout.  It never touches a Slurm configuration it did not write
# (the marker line below).  On success it prints `slurm: ready (<node>, gpu:2)` and exits 0;
# otherwise it exits non-zero and the real-Slurm tests skip (or fail under
# AGENTDECK_REQUIRE_CLUSTER=1).
set -euo pipefail

MARKER="# agentdeck test cluster (tests/setup_slurm.sh)"
CONF_DIR=/etc/slurm
STATE=/var/lib/agentdeck-slurm
GPUS=2
say() { printf 'slurm: %s\n' "$*"; }
die() { printf 'slurm: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it installs packages and starts daemons)"
node=$(hostname -s)
[ -n "$node" ] || die "this machine has no host name"
if [ -f "$CONF_DIR/slurm.conf" ] && ! grep -qF "$MARKER" "$CONF_DIR/slurm.conf"; then
  die "$CONF_DIR/slurm.conf exists and was not written by this script; refusing to replace a real configuration"
fi

# ---------------------------------------------------------------- packages
missing=()
for exe in slurmctld slurmd sbatch munged; do
  command -v "$exe" >/dev/null 2>&1 || missing+=("$exe")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "needs apt-get (Debian or Ubuntu) to install Slurm"
  say "installing slurmctld slurmd slurm-client munge (apt)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 180 apt-get update -qq || die "apt-get update failed or timed out"
  timeout 300 apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
    || die "apt-get install slurmctld slurmd slurm-client munge failed or timed out"
fi

# ---------------------------------------------------------------- munge
munge_ok() { timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }
if ! munge_ok; then
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  chmod 0400 /etc/munge/munge.key
  if ! { [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; }; then
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    timeout 20 runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  fi
  for _ in $(seq 1 50); do munge_ok && break; sleep 0.2; done
  munge_ok || die "munge does not answer"
fi

# ---------------------------------------------------------------- configuration
mkdir -p "$CONF_DIR" "$STATE/dev" "$STATE/ctld" "$STATE/slurmd" /var/log/slurm /run/slurm
# Placeholder "GPU" device files: Slurm only needs paths to list in gres.conf; their index becomes
# CUDA_VISIBLE_DEVICES.  Character devices (/dev/null's numbers) where mknod works, files otherwise.
for i in $(seq 0 $((GPUS - 1))); do
  dev="$STATE/dev/gpu$i"
  [ -e "$dev" ] || mknod -m 0666 "$dev" c 1 3 2>/dev/null || touch "$dev"
done
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
slurm_conf="$MARKER
ClusterName=agentdeck
SlurmctldHost=$node
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SchedulerType=sched/backfill
# Start batch jobs as soon as they are submitted or GPUs free up (the defaults batch them for seconds).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=300
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
SlurmdParameters=config_overrides
NodeName=$node CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
gres_conf="$MARKER
AutoDetect=off
NodeName=$node Name=gpu File=$STATE/dev/gpu[0-$((GPUS - 1))]"
changed=0
if [ "$(cat "$CONF_DIR/slurm.conf" 2>/dev/null)" != "$slurm_conf" ] \
   || [ "$(cat "$CONF_DIR/gres.conf" 2>/dev/null)" != "$gres_conf" ]; then
  printf '%s\n' "$slurm_conf" > "$CONF_DIR/slurm.conf"
  printf '%s\n' "$gres_conf" > "$CONF_DIR/gres.conf"
  changed=1
fi
[ -f "$CONF_DIR/cgroup.conf" ] || printf '%s\nCgroupPlugin=autodetect\n' "$MARKER" > "$CONF_DIR/cgroup.conf"

# ---------------------------------------------------------------- daemons
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_daemon() {  # one of our daemons, by its pid file
  local pidfile=$1 pid
  pid_alive "$pidfile" || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
if [ "$changed" = 1 ]; then
  stop_daemon /run/slurm/slurmd.pid
  stop_daemon /run/slurm/slurmctld.pid
fi
if ! pid_alive /run/slurm/slurmctld.pid; then
  timeout 30 /usr/sbin/slurmctld -i || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
fi
if ! pid_alive /run/slurm/slurmd.pid; then
  timeout 30 /usr/sbin/slurmd || die "slurmd did not start (see /var/log/slurm/slurmd.log)"
fi

ready() {
  timeout 10 scontrol ping 2>/dev/null | grep -q "is UP" || return 1
  timeout 10 sinfo -h -N -n "$node" -o '%T %G' 2>/dev/null | grep -Eq '^(idle|mixed|allocated|completing)[*~#]? .*gpu:'"$GPUS"
}
deadline=$((SECONDS + 60))
while ! ready; do
  if [ $SECONDS -ge $deadline ]; then
    timeout 10 sinfo -N -l 2>&1 | tail -3 >&2 || true
    tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 2>/dev/null || true
    die "the node did not become idle within 60 s"
  fi
  state=$(timeout 10 sinfo -h -N -n "$node" -o '%T' 2>/dev/null || true)
  case "$state" in
    down*|drain*|fail*|unknown*) timeout 10 scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
if [ "$changed" = 1 ]; then say "ready ($node, gpu:$GPUS)"; else say "ready ($node, gpu:$GPUS), already running"; fi
