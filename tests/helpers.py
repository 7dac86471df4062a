"""Shared helpers for tests that compose the Hydra configs."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Subprocesses never reach W&B; Hydra prints short errors, as users see them.
ENV = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}

# Small enough that a whole run takes seconds on two cores.
TINY = [
    "data.train_tokens=20000",
    "data.val_tokens=4000",
    "data.test_tokens=4000",
    "data.context_length=32",
    "data.batch_size=8",
    "model.d_model=32",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "logger=none",
]


# The config groups of conf/train.yaml a user picks options from.
GROUPS = [
    "model",
    "block",
    "data",
    "tokenizer",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "hydra",
    "experiment",
    "debug",
    "hparams_search",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The config `python train.py <overrides>` would get, with `${hydra:...}` interpolations
    usable (the run's output dir set to `output_dir`)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as in train.py's main, which gets the job config only
    return cfg


class SignalAtStep(Callback):
    """Sends this process a signal after the given training step (a pre-empted cluster job)."""

    def __init__(self, step: int, signum: int = signal.SIGTERM):
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class SpoilWeightsAfterStep(Callback):
    """Adds large noise to every weight after the given training step, so that the validations
    after it are worse than the ones before (a run that gets worse while training)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.add_(torch.randn_like(p))


def run_script(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run an entry point of the repository (train.py, eval.py, ...) as a user would."""
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=ROOT,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
