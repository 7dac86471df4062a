"""Scale-out: rank-disjoint data, DDP on two CPU processes (gloo) against one process with the same
global batch, the DDP-in-a-multirun guard, and the FSDP wrap unit."""

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers import TINY, compose_train, run_script
from hydra.utils import instantiate
from torch.distributed.fsdp import FullyShardedDataParallel

from xlstm_exp.data.windows import (
    EMPTY_WINDOW,
    IGNORE_INDEX,
    EvalShardSampler,
    PaddedWindows,
    RandomShiftSampler,
    TokenWindows,
)
from xlstm_exp.models import LanguageModel
from xlstm_exp.models.blocks import PostUpProjectionBlock, PreUpProjectionBlock
from xlstm_exp.multirun_guard import refuse_relaunch_in_multirun

# TINY with the batch size and logger chosen per test.
SMALL = [o for o in TINY if not o.startswith(("data.batch_size=", "logger="))]
DDP_ON_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=32-true"]


def test_training_windows_split_by_rank_into_the_single_process_batches():
    windows = TokenWindows(torch.arange(1001), context_length=16)  # 62 windows
    alone = list(RandomShiftSampler(windows, seed=3))
    ranks = [RandomShiftSampler(windows, seed=3, num_replicas=2, rank=r) for r in range(2)]
    shares = [list(sampler) for sampler in ranks]
    assert len(shares[0]) == len(shares[1]) == len(ranks[0]) == 31  # the same number of steps
    assert not set(shares[0]) & set(shares[1])
    # Two ranks at batch 4 train step by step on the very windows of one process at batch 8.
    for k in range(0, 31, 4):
        together = shares[0][k : k + 4] + shares[1][k : k + 4]
        assert sorted(together) == sorted(alone[2 * k : 2 * k + 8])

    three = [list(RandomShiftSampler(windows, seed=3, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in three] == [20, 20, 20]  # 62 // 3: two windows sit the epoch out
    assert len(set().union(*three)) == 60 and set().union(*three) <= set(alone)

    resumed = RandomShiftSampler(windows, seed=3, num_replicas=2, rank=1)
    resumed.resume(epoch=0, windows_done=8)  # this rank's own windows
    assert list(resumed) == shares[1][8:]
    with pytest.raises(ValueError, match="cannot be shared"):
        RandomShiftSampler(TokenWindows(torch.arange(33), 16), seed=0, num_replicas=3, rank=0)


def test_eval_windows_split_by_rank_count_every_target_once():
    windows = TokenWindows(torch.arange(100, 123), context_length=5)  # 5 windows, 22 targets
    shares = [list(EvalShardSampler(windows, num_replicas=2, rank=r)) for r in range(2)]
    assert shares == [[0, 2, 4], [1, 3, EMPTY_WINDOW]]  # equal lengths, no repeated window
    assert list(EvalShardSampler(windows)) == [0, 1, 2, 3, 4]
    padded = PaddedWindows(windows)
    targets = torch.cat([padded[i][1] for share in shares for i in share])
    assert sorted(targets[targets != IGNORE_INDEX].tolist()) == list(range(101, 123))


def logged(run_dir: Path, key: str) -> dict[int, float]:
    """Step -> value of one metric in the run's csv log."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return {int(row["step"]): float(row[key]) for row in csv.DictReader(f) if row.get(key)}


@pytest.mark.slow
def test_ddp_on_two_processes_follows_one_process_with_the_same_global_batch(tmp_path):
    """Two gloo processes at batch 4 against one process at batch 8. Each step's global batch is
    the same 8 windows (the samplers deal them out by rank), so the gradients differ only by
    float32 rounding (one mean over 8 windows against DDP's mean of two means over 4), measured
    at ~1e-7 relative, and so do the validation losses after four steps (~2e-7). The tolerances
    (1e-4 on the gradient norm, 1e-5 on the losses) are 100x and 50x that, yet far below what a
    wrong split costs: ranks reading the same windows (a global batch of 4 distinct windows) move
    the gradient norm by ~30% and the val loss by 3e-4."""
    common = [*SMALL, "logger=csv", "trainer.log_every_n_steps=1"]
    one, two = tmp_path / "one", tmp_path / "two"
    single = run_script(
        "train.py", "trainer=cpu", "data.batch_size=8", *common, f"hydra.run.dir={one}"
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run_script(
        "train.py",
        *DDP_ON_CPU,
        "trainer.devices=2",
        "data.batch_size=4",
        *common,
        f"hydra.run.dir={two}",
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert (two / "train_ddp_process_1.log").exists(), "a second process trained"

    expected, got = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert got["global_step"] == expected["global_step"] == 4
    assert got["train/tokens"] == expected["train/tokens"] == 4 * 8 * 32  # summed over ranks
    # What the loggers (W&B, csv) show counts every process's tokens too.
    tokens_one, tokens_two = logged(one, "train/tokens"), logged(two, "train/tokens")
    assert list(tokens_two.values()) == list(tokens_one.values()) == [256, 512, 768, 1024]
    assert ddp.stdout.count("\nsummary:\n") == 1, "one process prints the summary"
    for key in ["val/loss", "test/loss"]:
        assert got[key] == pytest.approx(expected[key], rel=1e-5), key
    val_one, val_two = logged(one, "val/loss"), logged(two, "val/loss")
    # Steps 2 and 4; the final scoring reuses step 4's validation of the same weights.
    assert len(val_one) == 2 and val_one.keys() == val_two.keys()
    assert list(val_two.values()) == pytest.approx(list(val_one.values()), rel=1e-5)
    norms_one, norms_two = logged(one, "grad_norm"), logged(two, "grad_norm")
    assert len(norms_one) == 4 and norms_one.keys() == norms_two.keys()
    assert list(norms_two.values()) == pytest.approx(list(norms_one.values()), rel=1e-4)


@pytest.mark.slow
def test_multirun_with_ddp_stops_before_relaunching_the_sweep(tmp_path):
    result = run_script(
        "train.py",
        "-m",
        *DDP_ON_CPU,
        "trainer.devices=2",
        "model=lstm,transformer",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        "hydra.sweep.subdir=${hydra.job.num}",  # the overrides would make too long a name
    )
    assert result.returncode != 0
    assert "cannot start DDPStrategy on 2 devices" in result.stderr
    assert "hydra/launcher=submitit_slurm" in result.stderr
    assert not list(tmp_path.rglob("metrics.json"))
    assert not list(tmp_path.rglob("train_ddp_process_*")), "no process was started"


def test_relaunch_guard_lets_cluster_processes_and_single_devices_through(tmp_path, monkeypatch):
    cfg = compose_train([*TINY, *DDP_ON_CPU, "hydra.mode=MULTIRUN"], tmp_path)

    def guard(devices: int) -> None:
        refuse_relaunch_in_multirun(instantiate(cfg.trainer, logger=False, devices=devices))

    with pytest.raises(RuntimeError, match="cannot start DDPStrategy on 2 devices"):
        guard(2)
    guard(1)
    # A SLURM job with one task per device (hydra/launcher=submitit_slurm): SLURM started them all.
    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_JOB_NAME": "train",
        "SLURM_NODELIST": "node1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    guard(2)


def test_fsdp_config_shards_one_unit_per_block(tmp_path):
    """Lightning's FSDP needs GPUs, so the configured wrap policy is checked with torch's FSDP on
    one CPU process: each block is an FSDP unit, and a training step runs."""
    cfg = compose_train([*TINY, "trainer=fsdp"], tmp_path)
    policy = instantiate(cfg.trainer.strategy).kwargs["auto_wrap_policy"]
    model = LanguageModel(vocab_size=50, d_model=32, num_layers=3, slstm_at=[1], slstm_block="post")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        sharded = FullyShardedDataParallel(
            model, auto_wrap_policy=policy, device_id=torch.device("cpu"), use_orig_params=True
        )
        units = [
            type(m.module) for m in sharded.modules() if isinstance(m, FullyShardedDataParallel)
        ]
        assert units == [
            LanguageModel,
            PreUpProjectionBlock,
            PostUpProjectionBlock,
            PreUpProjectionBlock,
        ]
        sharded(torch.randint(0, 50, (2, 8))).logsumexp(-1).mean().backward()
        assert torch.isfinite(sharded.clip_grad_norm_(1.0))
    finally:
        dist.destroy_process_group()
