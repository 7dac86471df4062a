"""One training run from a composed config: build data, model, trainer; fit; write metrics.json."""

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xlstm_exp.allocator import keep_freed_memory
from xlstm_exp.checkpoint import load_checkpoint
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models import LanguageModel
from xlstm_exp.models.language_model import width_multiple
from xlstm_exp.models.sizing import parse_count, solve_width
from xlstm_exp.preemption import PreemptionCheckpoint


def configure_wandb_mode() -> None:
    """W&B runs offline unless the user has credentials (an API key or `wandb login`) or chose a
    mode, so a machine without an account never prompts for a login."""
    netrc = Path.home() / ".netrc"
    logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    if not logged_in and "WANDB_API_KEY" not in os.environ and "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"


def build_model(cfg: DictConfig, vocab_size: int) -> nn.Module:
    """A LanguageModel from the `model` and `block` groups, its width solved for
    `model.target_params` when that is set; a `model` config with a `_target_` builds that
    module instead (e.g. `xlstm_exp.xLSTM`), ignoring `block`."""
    options = OmegaConf.to_container(cfg.model, resolve=True)
    options["vocab_size"] = options.get("vocab_size") or vocab_size
    target = options.pop("target_params", None)
    if "_target_" in options:
        return instantiate(options)
    block = OmegaConf.to_container(cfg.block, resolve=True)
    if target is not None:
        # Fair comparisons: the width that lands the total parameter count on the target.
        def make(width: int) -> LanguageModel:
            return LanguageModel(block=block, **{**options, "d_model": width})

        layout = {
            k: options[k]
            for k in ("num_layers", "num_heads", "slstm_at", "slstm_block")
            if k in options
        }
        multiple = width_multiple(mixer=options["mixer"], block=block, **layout)
        options["d_model"], count = solve_width(parse_count(target), make, multiple)
        print(f"target_params {target}: d_model {options['d_model']} gives {count:,} parameters")
    return LanguageModel(block=block, **options)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total and non-embedding parameters (the latter as the model defines it, if it does)."""
    total = sum(p.numel() for p in model.parameters())
    non_embedding = total
    if isinstance(model, LanguageModel):
        non_embedding = model.num_parameters(non_embedding=True)
    return {"params": total, "params_non_embedding": non_embedding}


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a config group such as `logger` or `callbacks` (None: none)."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def wandb_options(choices, output_dir: Path) -> dict:
    """Name and tag a W&B run after its model/block/data, and put all jobs of one multirun into
    one group (named after the sweep folder they share) so that a sweep reads as one dashboard."""
    picked = [choices[group] for group in ("model", "block", "data")]
    options = {"name": "-".join(picked), "tags": picked}
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        options["group"] = output_dir.parent.name
    return options


def build_loggers(cfg: DictConfig, choices, output_dir: Path) -> list:
    loggers = []
    for entry in (cfg.get("logger") or {}).values():
        is_wandb = entry.get("_target_", "").endswith("WandbLogger")
        loggers.append(
            instantiate(entry, **(wandb_options(choices, output_dir) if is_wandb else {}))
        )
    return loggers


def max_steps_for_tokens(cfg: DictConfig, num_processes: int) -> int | None:
    """Optimizer steps that consume `max_tokens` training tokens (None when no token budget) when
    `num_processes` processes each train on `data.batch_size` windows a batch."""
    if cfg.get("max_tokens") is None:
        return None
    tokens_per_step = (
        cfg.data.batch_size
        * cfg.data.context_length
        * cfg.trainer.get("accumulate_grad_batches", 1)
        * num_processes
    )
    return math.ceil(cfg.max_tokens / tokens_per_step)


class MultirunRelaunchError(RuntimeError):
    """A multirun whose jobs cannot start: it stops the sweep instead of failing job by job."""


def refuse_relaunch_in_multirun(trainer: L.Trainer) -> None:
    """Stop a multirun job whose strategy (`ddp`, `fsdp`) would start its other processes the way
    Lightning does under Hydra: by running this script's command line again. In a multirun that
    command is the whole sweep (`-m ...`), so each of them would start every job of the sweep
    (Lightning #11617). Processes started by a cluster (SLURM tasks) are not relaunched."""
    launcher = trainer.strategy.launcher
    relaunches = (
        isinstance(launcher, _SubprocessScriptLauncher)
        and launcher.num_processes > 1
        and not launcher.cluster_environment.creates_processes_externally
    )
    if relaunches and HydraConfig.get().mode == RunMode.MULTIRUN:
        devices = launcher.num_processes
        raise MultirunRelaunchError(
            f"a multirun (-m) cannot start {type(trainer.strategy).__name__} on {devices} devices "
            "itself: Lightning would start the other processes by running the command line "
            "again, which would run the whole sweep again in each of them. Either run each job "
            "as a single run (without -m), or sweep with a launcher that starts one process per "
            "device, e.g. on SLURM: -m hydra/launcher=submitit_slurm "
            f"hydra.launcher.tasks_per_node={devices} hydra.launcher.gpus_per_node={devices}. "
            "Sweeps of single-device jobs (trainer.devices=1) run as usual. See README, Training."
        )


def train(cfg: DictConfig) -> dict:
    """Train, validate (and test, unless `test=false`) one model; returns the metrics written to
    `<output_dir>/metrics.json`. With `ckpt_path`, resumes that checkpoint exactly."""
    started = time.time()
    keep_freed_memory()  # large CPU activations would otherwise be page-faulted in every step
    choices = HydraConfig.get().runtime.choices
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    configure_wandb_mode()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    resume_from = cfg.get("ckpt_path")
    if resume_from:
        resume_from = str(Path(resume_from).expanduser().resolve())
        load_checkpoint(resume_from)  # a clear error now, rather than deep inside Lightning

    datamodule = instantiate(cfg.data)
    model = build_model(cfg, datamodule.vocab_size)
    picked = {group: choices[group] for group in ("model", "block", "data")}
    run_config = {**OmegaConf.to_container(cfg, resolve=True), "choices": picked}
    module = LanguageModelingModule(model, run_config=run_config, **cfg.optimizer)
    loggers = build_loggers(cfg, choices, output_dir)
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not loggers:  # Lightning refuses a learning-rate monitor with nowhere to log
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    refuse_relaunch_in_multirun(trainer)
    # The number of processes is known once the trainer has resolved `devices` (e.g. "auto").
    token_budget = max_steps_for_tokens(cfg, trainer.num_devices * trainer.num_nodes)
    if token_budget is not None:
        trainer.fit_loop.epoch_loop.max_steps = token_budget
    for logger in loggers:
        logger.log_hyperparams(run_config)

    try:
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
        except SIGTERMException:
            pass  # the preemption callback has checkpointed; reported below
        preempted = [
            cb.path for cb in callbacks if isinstance(cb, PreemptionCheckpoint) and cb.saved
        ]
        if preempted:
            print(f"stopped early; resume with ckpt_path={preempted[0]}")
            return {"preempted_checkpoint": str(preempted[0])}
        # An empty list where trainer.limit_val_batches / limit_test_batches is 0.
        results = {}
        for evaluated in (
            trainer.validate(module, datamodule=datamodule, verbose=False),
            trainer.test(module, datamodule=datamodule, verbose=False) if cfg.get("test") else [],
        ):
            results.update(evaluated[0] if evaluated else {})
        # Under DDP each process counted the tokens of its own batches.
        tokens = torch.tensor(module.train_tokens)
        train_tokens = int(trainer.strategy.reduce(tokens, reduce_op="sum"))
        metrics = {
            **picked,
            **parameter_counts(model),
            **{k: float(v) for k, v in results.items()},
            "d_model": getattr(model, "d_model", None),
            "train/tokens": train_tokens,
            "train/tokens_per_s": train_tokens / max(module.train_seconds, 1e-9),
            "global_step": trainer.global_step,
            "wall_time_s": time.time() - started,
            "val/history": module.val_history,
        }
        for split in ("val", "test"):
            if f"{split}/loss" in metrics and hasattr(datamodule, "floor_ppl"):
                metrics[f"{split}/floor_ppl"] = datamodule.floor_ppl(split)
                metrics[f"{split}/unigram_ppl"] = datamodule.unigram_ppl(split)
        for logger in loggers:
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                logger.experiment.summary.update(metrics)
    finally:
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()  # one W&B run per sweep job
    # Under DDP every process gets here with the same results; one of them writes them.
    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(summary(metrics, output_dir))
    return metrics


def run_job(cfg: DictConfig) -> float | None:
    """train.py's job: train and return `val/loss` (what sweepers minimise). A failure is also
    written to `<output_dir>/error.txt`; inside a multirun the sweep then goes on with the next
    job (this one returns NaN and shows as FAILED in the sweep's results table)."""
    try:
        return train(cfg).get("val/loss")
    except MultirunRelaunchError:
        raise
    except Exception:
        output_dir = Path(cfg.paths.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "error.txt").write_text(traceback.format_exc())
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        print(f"job failed (see {output_dir / 'error.txt'}); the sweep goes on", file=sys.stderr)
        traceback.print_exc()
        return math.nan


def summary(metrics: dict, output_dir: Path) -> str:
    lines = [f"{metrics['model']} / {metrics['block']} block, {metrics['params']:,} parameters"]
    for split in ("val", "test"):
        if f"{split}/loss" not in metrics:
            continue
        line = f"{split}: loss {metrics[f'{split}/loss']:.4f}  ppl {metrics[f'{split}/ppl']:.2f}"
        if f"{split}/word_ppl" in metrics:
            line += (
                f"  word ppl {metrics[f'{split}/word_ppl']:.2f}  "
                f"bits/byte {metrics[f'{split}/bpb']:.4f}"
            )
        if f"{split}/floor_ppl" in metrics:
            line += (
                f"  (true-entropy floor {metrics[f'{split}/floor_ppl']:.2f}, "
                f"unigram {metrics[f'{split}/unigram_ppl']:.2f})"
            )
        lines.append(line)
        if f"{split}/stateful_ppl" in metrics:
            lines.append(
                f"{split} as one stream ({metrics[f'{split}/stateful_method']}): "
                f"loss {metrics[f'{split}/stateful_loss']:.4f}  "
                f"ppl {metrics[f'{split}/stateful_ppl']:.2f}"
            )
    if "train/tokens_per_s" in metrics:
        lines.append(
            f"{metrics['train/tokens_per_s']:.0f} train tokens/s, {metrics['wall_time_s']:.0f} s"
        )
    lines.append(f"metrics in {output_dir / 'metrics.json'}")
    return "\n".join(lines)
