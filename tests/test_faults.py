"""Faults a long run meets: a disk that fills up while a checkpoint is written, a process killed
without warning, a SLURM job that is requeued."""

import errno
import io
import json
import logging
import os
import signal
from pathlib import Path

import pytest
import torch
from helpers import CONF, ENV, ROOT, TINY, compose_train, run_script
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from xlstm_exp import atomic_checkpoint_io
from xlstm_exp.atomic_checkpoint_io import AtomicCheckpointIO, CheckpointDiskFullError
from xlstm_exp.auto_resume import resolve_ckpt_path
from xlstm_exp.run import run_job, train


class DiskFillsUp:
    """`os.write` on a disk that holds `files` whole files written into `folder`, then `room`
    bytes of the next one before failing with `error` (ENOSPC: the disk is full)."""

    def __init__(self, folder: Path, files: int, room: int, error: int = errno.ENOSPC):
        self.folder, self.files, self.room, self.error = str(folder), files, room, error
        self.written: dict[str, int] = {}
        self.real_write = os.write

    def __call__(self, descriptor: int, data) -> int:
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        if not path.startswith(self.folder):
            return self.real_write(descriptor, data)
        self.written.setdefault(path, 0)
        if len(self.written) <= self.files:
            return self.real_write(descriptor, data)
        room = self.room - self.written[path]
        if room <= 0:
            raise OSError(self.error, os.strerror(self.error))
        count = self.real_write(descriptor, bytes(data[:room]))  # a short write, as the kernel's
        self.written[path] += count
        return count


# TINY with less to validate and no test split: what these tests check happens in training.
QUICK = [
    *(o for o in TINY if not o.startswith("data.val_tokens")),
    "data.val_tokens=1000",
    "test=false",
]


def weights(seed: int) -> dict:
    return {"state_dict": {"w": torch.randn(4000, generator=torch.Generator().manual_seed(seed))}}


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EIO])
def test_a_failed_checkpoint_write_leaves_the_earlier_file_intact(tmp_path, monkeypatch, failure):
    """Before, Lightning's writer left a truncated file under the final name on a full disk."""
    io_plugin, folder = AtomicCheckpointIO(), tmp_path / "checkpoints"
    io_plugin.save_checkpoint(weights(0), folder / "best-step1.ckpt")
    io_plugin.save_checkpoint(weights(1), folder / "last.ckpt")
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "last.ckpt").stat().st_mode & 0o777 == 0o666 & ~umask, "as any file"
    monkeypatch.setattr(atomic_checkpoint_io.os, "write", DiskFillsUp(folder, 0, 1000, failure))
    with pytest.raises(OSError) as raised:
        io_plugin.save_checkpoint(weights(2), folder / "last.ckpt")

    assert raised.value.errno == failure
    assert sorted(p.name for p in folder.iterdir()) == ["best-step1.ckpt", "last.ckpt"]
    for name, seed in [("best-step1.ckpt", 0), ("last.ckpt", 1)]:
        kept = torch.load(folder / name, weights_only=True)["state_dict"]["w"]
        assert torch.equal(kept, weights(seed)["state_dict"]["w"]), name
    if failure == errno.EIO:  # any other error is passed on as it was
        assert type(raised.value) is OSError
        return
    buffer = io.BytesIO()
    torch.save(weights(2), buffer)
    message = str(raised.value)
    assert isinstance(raised.value, CheckpointDiskFullError)
    assert f"no space left on the device of {folder}: checkpoint last.ckpt" in message
    assert f"needs {len(buffer.getvalue()):,} bytes" in message
    assert "the disk filled after 1,000 bytes" in message
    intact = message.split("intact (newest first): ")[1].split(". ")[0]
    assert sorted(intact.split(", ")) == ["best-step1.ckpt", "last.ckpt"]


@pytest.mark.slow
def test_a_run_that_fills_the_disk_stops_with_that_error_even_when_error_txt_fails(
    tmp_path, monkeypatch, capsys
):
    """Before, the third checkpoint was written in full (the injected disk never filled up),
    and an error.txt that cannot be written replaced the run's error with its own."""
    run_dir = tmp_path / "run"
    folder = run_dir / "checkpoints"
    (run_dir / "error.txt").mkdir(parents=True)  # error.txt cannot be written either
    # TINY validates at steps 2 and 4, each time writing the best checkpoint, then last.ckpt.
    monkeypatch.setattr(atomic_checkpoint_io.os, "write", DiskFillsUp(folder, 2, 1000))
    with pytest.raises(CheckpointDiskFullError) as raised:
        run_job(compose_train(QUICK, run_dir))

    assert f"no space left on the device of {folder}" in str(raised.value)
    assert sorted(p.name for p in folder.iterdir()) == ["best-step2.ckpt", "last.ckpt"]
    for path in folder.iterdir():
        assert torch.load(path, weights_only=True)["global_step"] == 2, path.name
    stderr = capsys.readouterr().err
    assert f"could not write {run_dir / 'error.txt'}" in stderr
    assert "the run's error follows" in stderr


def checkpoint_at(folder: Path, name: str, step: int, seconds: int) -> None:
    torch.save({"global_step": step}, folder / name)
    os.utime(folder / name, ns=(seconds * 10**9, seconds * 10**9))


def test_ckpt_path_auto_takes_the_newest_checkpoint_that_loads(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="xlstm_exp")
    folder = tmp_path / "checkpoints"
    assert resolve_ckpt_path("auto", tmp_path) is None, "no folder: train from the start"
    assert "no checkpoint to resume" in caplog.text
    folder.mkdir()
    checkpoint_at(folder, "last.ckpt", 8, seconds=200)
    checkpoint_at(folder, "preempted.ckpt", 4, seconds=100)
    checkpoint_at(folder, "best-step9.ckpt", 9, seconds=300)  # not a resumable state
    assert resolve_ckpt_path("auto", tmp_path) == str(folder / "last.ckpt")
    checkpoint_at(folder, "preempted.ckpt", 10, seconds=300)
    assert resolve_ckpt_path("auto", tmp_path) == str(folder / "preempted.ckpt")

    caplog.clear()
    (folder / "preempted.ckpt").write_bytes(b"truncated")
    os.utime(folder / "preempted.ckpt", ns=(400 * 10**9, 400 * 10**9))
    assert resolve_ckpt_path("auto", tmp_path) == str(folder / "last.ckpt")
    assert f"skipping {folder / 'preempted.ckpt'}, which cannot be read" in caplog.text

    (folder / "last.ckpt").write_bytes(b"")
    assert resolve_ckpt_path("auto", tmp_path) is None
    # Any other value is a path (or nothing), as before.
    assert resolve_ckpt_path("x/last.ckpt", tmp_path) == "x/last.ckpt"
    assert resolve_ckpt_path(None, tmp_path) is None


KILLABLE = [
    *[o for o in QUICK if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))],
    "trainer.max_steps=12",
    "trainer.val_check_interval=6",
    "model.dropout=0.1",  # exercises the restored random state
    "data.train_tokens=60000",  # one epoch is longer than the run: the resume is mid-epoch
    "callbacks.periodic_checkpoint.train_time_interval=null",
    "callbacks.periodic_checkpoint.every_n_train_steps=4",
]


@pytest.mark.slow
def test_a_killed_run_resumes_with_ckpt_path_auto_as_if_never_stopped(tmp_path):
    """Before, a restarted command trained from the start (ckpt_path=auto was no checkpoint),
    and last.ckpt was written only at validations (steps 6 and 12 here)."""
    run_dir = tmp_path / "run"
    command = [*KILLABLE, f"hydra.run.dir={run_dir}"]
    # SIGKILL at step 10: after the periodic last.ckpt of step 8, before the validation of 12.
    kill = ["+callbacks.kill._target_=helpers.SignalAtStep", "+callbacks.kill.step=10"]
    env = {**ENV, "PYTHONPATH": str(ROOT / "tests")}
    kill.append(f"+callbacks.kill.signum={int(signal.SIGKILL)}")
    killed = run_script("train.py", *command, *kill, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 8

    resumed = run_script("train.py", *command, "ckpt_path=auto", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"ckpt_path=auto: resuming {run_dir / 'checkpoints' / 'last.ckpt'}" in (
        resumed.stdout + resumed.stderr
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    straight = train(compose_train(KILLABLE, tmp_path / "straight"))
    assert metrics["global_step"] == straight["global_step"] == 12
    assert metrics["val/loss"] == pytest.approx(straight["val/loss"], rel=1e-6)
    assert metrics["best_step"] == straight["best_step"]


def test_the_requeue_launcher_resumes_every_job_from_its_own_folder(monkeypatch):
    """Submitit requeues a timed-out job by calling the launcher's `checkpoint`, which resubmits
    the job's own arguments (SLURM reruns a pre-empted one as it was): its overrides must carry
    ckpt_path=auto from the start. Before, there was no such launcher."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from xlstm_exp.slurm_requeue import RequeueingSlurmLauncher, SlurmLauncher

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm_requeue"], return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert isinstance(launcher, RequeueingSlurmLauncher)
    assert launcher.params["max_num_timeout"] > 0
    launched = []
    monkeypatch.setattr(SlurmLauncher, "launch", lambda self, jobs, first: launched.extend(jobs))
    explicit = ["model=lstm", "ckpt_path=/runs/x/last.ckpt"]
    launcher.launch([["model=slstm"], explicit], 0)
    assert launched == [["model=slstm", "ckpt_path=auto"], explicit]
    requeued = launcher.checkpoint(launched[0], "hydra.sweep.dir", 0, "job_id_for_0", {})
    assert requeued.function is launcher and requeued.args[0] == ["model=slstm", "ckpt_path=auto"]
