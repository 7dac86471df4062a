"""Sweeps through Hydra plugins: an Optuna search and submitit-launched jobs."""

import json
import math

import pytest
from helpers import TINY, compose_train, run_script
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf


@pytest.mark.slow
def test_optuna_search_minimises_the_val_loss_train_py_returns(tmp_path):
    # TINY fixes model.d_model on the command line, which takes it out of the search space.
    search = ["hparams_search=mlstm_optuna", "hydra.sweeper.n_trials=2"]
    result = run_script("train.py", "-m", *search, *TINY, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = sorted(tmp_path.glob("*/metrics.json"))
    assert [t.parent.name for t in trials] == ["0", "1"]
    losses = [json.loads(t.read_text())["val/loss"] for t in trials]
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert best["best_value"] == pytest.approx(min(losses), rel=1e-6)
    params = best["best_params"]
    assert set(params) == {"optimizer.lr", "optimizer.weight_decay", "model.num_layers"}
    assert 3e-4 <= params["optimizer.lr"] <= 1e-2
    sampled = [OmegaConf.load(t.parent / ".hydra" / "overrides.yaml") for t in trials]
    assert sampled[0] != sampled[1], "each trial gets its own parameters"
    assert all(math.isfinite(loss) for loss in losses)


def test_slurm_launcher_composes_with_ddp_options():
    """The README's cluster command: the plugin's config takes these keys (a misspelt key fails
    to compose) and resolves against the training config."""
    cfg = compose_train(
        [
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.nodes=2",
            "hydra.launcher.tasks_per_node=4",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.timeout_min=720",
            "trainer=ddp",
            "trainer.devices=4",
            "trainer.num_nodes=2",
        ]
    )
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.num_nodes == 2
    # compose_train hands the Hydra part of the config to HydraConfig, as a run does.
    launcher = HydraConfig.get().launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)


@pytest.mark.slow
def test_submitit_runs_the_sweep_jobs(tmp_path):
    """submitit's local executor runs each job in a process of its own, the code path of
    submitit_slurm short of sbatch."""
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"]
    result = run_script(
        "train.py", "-m", *launcher, "model=lstm", *TINY, f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = tmp_path.glob("*/metrics.json")
    assert json.loads(metrics.read_text())["global_step"] == 4
    assert list(tmp_path.glob(".submitit/*/*_result.pkl")), "submitit ran the job"
