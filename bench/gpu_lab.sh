#!/usr/bin/env bash
# The example lab (examples/nanolab) on a real GPU through `agentdeck research run`:
# a baseline run twice (its noise), then about six mutate trials at budget_s = 60, with the GPU's
# utilisation sampled every second. Everything it produces goes to $OUT:
#   summary.json / summary.md   baseline, noise, best, trials/hour vs ideal, GPU utilisation
#   status.json, results.tsv    the run as agentdeck records it; logs/<trial>.log each job's output
#   nvidia_smi.csv              epoch,util_gpu_%,mem_used_MiB,power_W  (one line a second)
#   run.txt, gpu_lab.log        the run's own output and this script's steps
#
# Needs: Python 3.12 (python3) with torch + CUDA, git, nvidia-smi. agentdeck's dependencies may come
# as wheels in ./.whl (installed into /tmp/site, no index); the research engine itself needs none.
# Runs from the repository root:  OUT=/some/dir bash bench/gpu_lab.sh
# Finishes in under 9 minutes: the research run is stopped (cleanly, every trial recorded) at
# GPU_LAB_DEADLINE_S seconds after the script started (default 515; 2 baselines + 6 trials of 60 s
# need about 8 x 65 s of the 515).
# Knobs for a dry run on a CPU box: GPU_LAB_BUDGET=3 NANOLAB_TINY=1 GPU_LAB_DEADLINE_S=120.
set -uo pipefail

START=$(date +%s)
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu_lab_out}
BUDGET=${GPU_LAB_BUDGET:-60}
TRIALS=${GPU_LAB_TRIALS:-6}
DEADLINE=${GPU_LAB_DEADLINE_S:-515}
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/gpu-lab.XXXXXX)
LAB="$WORK/nanolab"
mkdir -p "$OUT"
: > "$OUT/gpu_lab.log"

log() { echo "[gpu_lab +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/gpu_lab.log" >&2; }

# ------------------------------------------------------------------ environment
if ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
  log "installing wheels from .whl into /tmp/site"
  $PY -m pip install -q --no-index --no-deps --target /tmp/site "$REPO"/.whl/*.whl >>"$OUT/gpu_lab.log" 2>&1 \
    || log "warning: some wheels did not install (the research engine needs none of them)"
fi
# The working tree's agentdeck first, then the wheels.
export PYTHONPATH="$REPO:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export AGENTDECK_HOME="$WORK/home"
export NANOLAB_CACHE="$WORK/cache"
export GIT_AUTHOR_NAME=gpu-lab GIT_AUTHOR_EMAIL=gpu-lab@example.com
export GIT_COMMITTER_NAME=gpu-lab GIT_COMMITTER_EMAIL=gpu-lab@example.com
command -v git >/dev/null || { log "error: git is missing"; exit 2; }

{
  echo "date: $(date -u +%FT%TZ)"
  echo "python: $($PY -c 'import sys; print(sys.version.split()[0])')"
  $PY -c 'import torch; print("torch:", torch.__version__, "cuda:", torch.version.cuda, "available:", torch.cuda.is_available())' 2>&1
  echo "git: $(git --version)"
  if command -v nvidia-smi >/dev/null; then nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
} > "$OUT/env.txt" 2>&1
log "$(tr '\n' ' ' < "$OUT/env.txt")"

# `python3 -m agentdeck` when the whole CLI loads here; else the research commands alone.
if $PY -m agentdeck research --help >/dev/null 2>&1; then
  AD=("$PY" -m agentdeck)
else
  log "the full CLI does not load here (missing dependencies); using agentdeck.research.cli"
  AD=("$PY" -m agentdeck.research.cli)
fi

# ------------------------------------------------------------------ the lab as its own repository
cp -r "$REPO/examples/nanolab" "$LAB"
rm -rf "$LAB/__pycache__"
TIMEOUT=$(( ${BUDGET%.*} * 2 + 60 ))
cat > "$LAB/.agentdeck.toml" <<EOF
[research]
workdir = "."
program = "program.md"
command = "$PY train.py"
editable = ["train.py"]
protected = ["prepare.py"]
metric = "val_bpb"
direction = "min"
budget_s = $BUDGET
timeout_s = $TIMEOUT
gpus = "auto"
proposer = "mutate"
confirm = false
repeats_baseline = 2
EOF
git -C "$LAB" init -q -b main && git -C "$LAB" add -A && git -C "$LAB" commit -qm "nanolab" \
  || { log "error: could not create the lab repository"; exit 2; }

log "preparing data (cached for every trial)"
(cd "$LAB" && $PY prepare.py) > "$OUT/prepare.txt" 2>&1 || { log "error: prepare.py failed"; cat "$OUT/prepare.txt" >&2; exit 2; }
# Warm the import cache so the first trial does not pay for it.
$PY -c "import torch; torch.zeros(1).cuda() if torch.cuda.is_available() else None" >/dev/null 2>&1

# ------------------------------------------------------------------ GPU sampler
SAMPLER_PID=""
if command -v nvidia-smi >/dev/null; then
  (
    while :; do
      line=$(nvidia-smi --query-gpu=utilization.gpu,memory.used,power.draw --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -d ' ')
      echo "$(date +%s.%N),$line"
      sleep 1
    done
  ) > "$OUT/nvidia_smi.csv" &
  SAMPLER_PID=$!
else
  log "no nvidia-smi: no utilisation samples"
  : > "$OUT/nvidia_smi.csv"
fi

# ------------------------------------------------------------------ the research run
NOW=$(date +%s)
REMAIN=$(( DEADLINE - (NOW - START) ))
(( REMAIN < 30 )) && REMAIN=30
log "research run: baseline x2 + $TRIALS trials at budget ${BUDGET}s; stopped after ${REMAIN}s at the latest"
RUN_START=$(date +%s.%N)
# SIGINT at the deadline: the loop stops cleanly (the running job is cancelled and recorded).
(cd "$LAB" && timeout --signal=INT --kill-after=15 "$REMAIN" "${AD[@]}" research run --tag gpu \
  --trials "$TRIALS" --gpus auto) > "$OUT/run.txt" 2>&1
RC=$?
RUN_END=$(date +%s.%N)
log "research run exited $RC"
# Had the loop to be killed, its job would still hold the GPU: stop cancels and records it.
(cd "$LAB" && "${AD[@]}" research stop --tag gpu) >>"$OUT/gpu_lab.log" 2>&1

[[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null

# ------------------------------------------------------------------ collect
(cd "$LAB" && "${AD[@]}" research status --tag gpu --json) > "$OUT/status.json" 2>>"$OUT/gpu_lab.log"
RESEARCH_DIR="$LAB/.git/agentdeck/research/gpu"
cp "$RESEARCH_DIR/results.tsv" "$OUT/results.tsv" 2>/dev/null
mkdir -p "$OUT/logs" && cp "$RESEARCH_DIR"/logs/*.log "$OUT/logs/" 2>/dev/null

$PY - "$OUT" "$RUN_START" "$RUN_END" "$BUDGET" <<'EOF' >>"$OUT/gpu_lab.log" 2>&1
import json, statistics, sys
from pathlib import Path

out, t0, t1, budget = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
status = json.loads((out / "status.json").read_text())
trials = status["trials"]
ran = [t for t in trials if t["seconds"] is not None]
samples = []
for line in (out / "nvidia_smi.csv").read_text().splitlines():
    parts = line.split(",")
    try:
        ts, util, mem = float(parts[0]), float(parts[1]), float(parts[2])
    except (ValueError, IndexError):
        continue
    if t0 <= ts <= t1:
        samples.append((ts, util, mem))
util = [u for _, u, _ in samples]
wall = t1 - t0
extras = {}
for t in ran:
    log = out / "logs" / f"{t['id']}.log"
    if log.exists() and "---" in log.read_text():
        tail = log.read_text().rsplit("---", 1)[1]
        extras[t["id"]] = {k.strip(): v.strip() for k, v in
                           (line.split(":", 1) for line in tail.strip().splitlines() if ":" in line)}
summary = {
    "device": (out / "env.txt").read_text(),
    "budget_s": budget,
    "baseline": status["baseline"],
    "best": status["best"],
    "state": status.get("state"),
    "trials": [dict(t, summary=extras.get(t["id"], {})) for t in trials],
    "job_runs": len(ran),
    "proposals": status.get("proposals"),
    "wall_s": round(wall, 1),
    "trials_per_hour": round(len(ran) / wall * 3600, 2) if wall > 0 else None,
    "ideal_trials_per_hour": round(3600 / budget * len(status.get("slots") or [1]), 2),
    "gpu_util_mean_pct": round(statistics.fmean(util), 1) if util else None,
    "gpu_util_median_pct": statistics.median(util) if util else None,
    "gpu_util_samples": len(util),
    "gpu_mem_max_mib": max((m for _, _, m in samples), default=None),
}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
lines = [
    f"- device: {summary['device'].splitlines()[-1] if summary['device'].strip() else '?'}",
    f"- baseline val_bpb {status['baseline']['metric']} over {status['baseline']['runs']} runs, "
    f"noise (std) {status['baseline']['noise']}",
    f"- best val_bpb {(status['best'] or {}).get('metric')} (trial {(status['best'] or {}).get('id')})",
    f"- {len(ran)} job runs in {wall:.0f} s: {summary['trials_per_hour']} trials/hour vs ideal "
    f"{summary['ideal_trials_per_hour']} (3600 / {budget:g} s x {len(status.get('slots') or [1])} slot)",
    f"- GPU utilisation during the run: mean {summary['gpu_util_mean_pct']} %, median "
    f"{summary['gpu_util_median_pct']} % ({len(util)} samples), peak memory {summary['gpu_mem_max_mib']} MiB",
    "",
    "| trial | kind | status | val_bpb | steps | MFU % | peak MB | description |",
    "|---|---|---|---|---|---|---|---|",
]
for t in trials:
    s = extras.get(t["id"], {})
    lines.append(f"| {t['id']} | {t['kind']} | {t['status']} | {t['metric']} | {s.get('num_steps', '')} | "
                 f"{s.get('mfu_percent', '')} | {s.get('peak_vram_mb', '')} | {t['description']} |")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
log "done in $(( $(date +%s) - START ))s; results in $OUT"
cat "$OUT/summary.md" 2>/dev/null
rm -rf "$WORK"
exit 0
