"""The example lab (examples/nanolab): deterministic data, and a tiny CPU run where torch is installed."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import ROOT, git, make_repo

LAB = ROOT / "examples" / "nanolab"


def _load_prepare(monkeypatch, tmp_path, tiny=True):
    monkeypatch.setenv("NANOLAB_CACHE", str(tmp_path / "cache"))
    if tiny:
        monkeypatch.setenv("NANOLAB_TINY", "1")
    spec = importlib.util.spec_from_file_location("nanolab_prepare", LAB / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_text_is_generated_identically_everywhere(monkeypatch, tmp_path):
    prepare = _load_prepare(monkeypatch, tmp_path)
    train, val = prepare.generate(200_000, 20_000)
    assert len(train) == 200_000 and len(val) == 20_000
    # A fixed digest: the generator uses its own xorshift, not a library RNG that may change.
    assert hashlib.sha256(train).hexdigest()[:16] == "7a234a2fff871843"
    assert train.decode("ascii") and val[:20] != train[:20]
    assert prepare.spell(342) == "three hundred and forty-two"


def test_the_data_cache_is_built_once(monkeypatch, tmp_path):
    prepare = _load_prepare(monkeypatch, tmp_path)
    train_path, val_path = prepare.ensure_data()
    mtime = train_path.stat().st_mtime_ns
    assert prepare.ensure_data() == (train_path, val_path) and train_path.stat().st_mtime_ns == mtime
    assert train_path.stat().st_size == prepare.TRAIN_BYTES and val_path.stat().st_size == prepare.VAL_BYTES


def _python_bin(tmp_path: Path) -> Path:
    bindir = tmp_path / "pybin"
    bindir.mkdir(exist_ok=True)
    (bindir / "python").symlink_to(sys.executable)
    return bindir


torch_missing = importlib.util.find_spec("torch") is None


@pytest.mark.slow
@pytest.mark.skipif(torch_missing, reason="torch is not installed (pip install 'agentdeck[lab]')")
def test_tiny_cpu_research_run_on_the_lab(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(LAB, repo, ignore=shutil.ignore_patterns("__pycache__"))
    config = (repo / ".agentdeck.toml").read_text()
    config = config.replace("confirm = true", "confirm = false").replace("repeats_baseline = 2", "repeats_baseline = 1")
    make_repo(repo, {"README.md": (LAB / "README.md").read_text(), ".agentdeck.toml": config})
    env = dict(os.environ, NANOLAB_TINY="1", NANOLAB_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # Through agentdeck: a baseline and one proposal (search, the lab's proposer), on the one CPU slot.
    proc = subprocess.run(
        [sys.executable, "-m", "agentdeck", "research", "run", "--tag", "lab", "--trials", "1", "--budget", "1",
         "--gpus", "auto"], cwd=repo, capture_output=True, text=True, timeout=300,
        # No nvidia-smi on PATH: one CPU slot. `python` (the lab's command) is this interpreter.
        env=dict(env, PATH=f"{_python_bin(tmp_path)}{os.pathsep}/usr/bin{os.pathsep}/bin"),
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    status = subprocess.run([sys.executable, "-m", "agentdeck", "research", "status", "--json"], cwd=repo,
                            capture_output=True, text=True, env=env)
    import json

    data = json.loads(status.stdout)
    assert data["baseline"]["runs"] == 1 and 0 < data["baseline"]["metric"] < 9
    assert {t["gpu"] for t in data["trials"] if t["gpu"]} == {"cpu"}
    assert sum(t["kind"] == "proposal" for t in data["trials"]) == 1
    # The metric is the protected evaluation's (held-out text, the saved weights), in the sandbox;
    # what train.py printed (on the public split) is only its claim.
    assert data["metric_source"] == "eval" and data["sandbox"] == "bwrap", data
    base = data["trials"][0]
    assert base["kind"] == "baseline" and base["claimed"] is not None and 0 < base["claimed"] < 9
    assert base["metric"] != base["claimed"]
    # The lab prints autoresearch's summary lines; peak memory feeds results.tsv's memory_gb.
    log = subprocess.run([sys.executable, "-m", "agentdeck", "research", "log", "1"], cwd=repo,
                         capture_output=True, text=True, env=env).stdout
    job_log, _, eval_log = log.partition("=== evaluation")
    assert f"val_bpb:          {base['metric']:.6f}" in eval_log, log
    summary = dict(line.split(":", 1) for line in job_log.split("---", 1)[1].strip().splitlines())
    assert {"val_bpb", "training_seconds", "peak_vram_mb", "mfu_percent", "num_steps", "num_params_M"} <= set(summary)
    assert git(repo, "status", "--porcelain") == ""
