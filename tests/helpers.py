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
    """The choices of a config group; files starting with `_` are shared defaults, not choices."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


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


def model_from_checkpoint(path: str | Path) -> tuple[torch.nn.Module, object]:
    """A checkpoint's weights in a model rebuilt from the run config it carries, with the data
    module of that config: built with the public factory rather than the framework's own
    loaders, so that tests can check the numbers those loaders report independently."""
    from hydra.utils import instantiate

    from xlstm_exp.models.factory import build_language_model

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = checkpoint["xlstm_exp_config"]
    datamodule = instantiate(config["data"])
    options = dict(config["model"])
    vocab_size = options.pop("vocab_size") or datamodule.vocab_size
    model, _ = build_language_model(vocab_size, block=config["block"], **options)
    state = checkpoint["state_dict"]
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    model.load_state_dict(weights)
    return model.eval(), datamodule


@torch.no_grad()
def windowed_loss(model: torch.nn.Module, tokens: torch.Tensor, context_length: int) -> float:
    """Mean NLL of tokens[1:] in float32, each run of `context_length` targets predicted from
    the tokens of its own window only (a shorter window at the end), in plain torch."""
    inputs, targets = tokens[:-1], tokens[1:]
    full = inputs.numel() // context_length * context_length
    logits = [model(inputs[:full].view(-1, context_length)).flatten(0, 1)]
    if full < inputs.numel():
        logits.append(model(inputs[full:][None])[0])
    nll = torch.nn.functional.cross_entropy(torch.cat(logits).float(), targets, reduction="sum")
    return nll.item() / targets.numel()


# Small task data for tests that run every data option or experiment (TINY's data keys are the
# built-in corpus's).
TASK_DATA = {
    "formal": [
        "data.train_examples=64",
        "data.eval_examples=16",
        "data.batch_size=8",
        "data.eval_lengths=[40,80]",
    ],
    "mqar": [
        "data.train_examples=64",
        "data.eval_examples=16",
        "data.batch_size=8",
        "data.vocab_size=64",
    ],
}


def task_data(yaml_text: str) -> str | None:
    """The task data a config file chooses (`override /data: formal`, `_target_: ...mqar...`)."""
    return next((name for name in TASK_DATA if f"data: {name}" in yaml_text), None)


def tiny_task(name: str) -> list[str]:
    """TINY with the task data `name` instead of the built-in corpus's keys."""
    return [*(o for o in TINY if not o.startswith("data.")), *TASK_DATA[name]]
