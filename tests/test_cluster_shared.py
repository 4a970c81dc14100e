"""What the Ray and Slurm executors share (agentdeck.research.executors.cluster): lanes sized from
the nodes, the probe's cache, the controller's silence and agentdeck's notes in a job's log.  Run
against the real Slurm executor with Slurm's commands absent (no cluster needed)."""

from __future__ import annotations

import shutil

import pytest

from agentdeck.config import ResearchSettings
from agentdeck.errors import UsageError
from agentdeck.research.executors.base import JobHandle
from agentdeck.research.executors.cluster import Silence, note_in_log
from agentdeck.research.executors.slurm import SlurmExecutor


@pytest.fixture
def no_slurm(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"  # tmux and git (the fixtures need them), none of Slurm's commands
    bin_dir.mkdir()
    for tool in ("tmux", "git"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    return SlurmExecutor(ResearchSettings())


def test_auto_lanes_names_the_fix_when_the_cluster_does_not_answer(no_slurm):
    with pytest.raises(UsageError, match=r"cannot size the Slurm lanes: `sinfo` failed .*; give --gpus"):
        no_slurm.slots("auto")
    assert no_slurm.slots([3, 5]) == ["slurm:0", "slurm:1"]


def test_lanes_count_gpus_per_job_or_nodes(no_slurm):
    nodes = [{"gpus": 4}, {"gpus": 3}, {"gpus": 0}]
    no_slurm.slurm.gres = "gpu:2"
    assert no_slurm.lanes_on(nodes) == 3 and not no_slurm.lacks_gpus(nodes)
    no_slurm.slurm.gres = "gpu:8"
    assert no_slurm.lanes_on(nodes) == 0 and no_slurm.lacks_gpus(nodes)
    no_slurm.slurm.gres = ""
    assert no_slurm.lanes_on(nodes) == 3 and not no_slurm.lacks_gpus(nodes)


def test_an_unverified_probe_is_asked_again(no_slurm, tmp_path):
    ok, detail = no_slurm.probe_shared(tmp_path / "research", timeout_s=1)
    assert ok is None and "could not be submitted" in detail
    assert no_slurm.probed == {}  # unknown is not cached: the next check asks again


def test_a_note_is_written_once_per_flag(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("output\n")
    handle = JobHandle("slurm", "7", {"log_path": str(log)})
    note_in_log(handle, "first", flag="explained")
    note_in_log(handle, "again", flag="explained")
    note_in_log(handle, "other")
    assert log.read_text() == "output\n\n[agentdeck] first\n\n[agentdeck] other\n"
    assert handle.data["explained"] is True and handle.data["noted"] is True


def test_silence_counts_from_the_first_miss_until_heard():
    silence = Silence()
    assert silence.unheard() == 0.0
    assert silence.unheard() >= 0.0 and silence.since is not None
    silence.heard()
    assert silence.since is None
