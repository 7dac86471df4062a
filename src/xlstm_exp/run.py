"""One training run from a composed config: build data, model, trainer; fit; score the best
weights; write metrics.json."""

import math
import sys
import time
import traceback
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from xlstm_exp import console
from xlstm_exp.allocator import keep_freed_memory
from xlstm_exp.checkpoint import check_same_model, load_checkpoint
from xlstm_exp.evaluation import (
    check_optimized_metric,
    optimized_value,
    score_best,
    write_metrics,
)
from xlstm_exp.from_config import build_data, build_model
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models import LanguageModel
from xlstm_exp.models.factory import parameter_counts
from xlstm_exp.multirun_guard import MultirunRelaunchError, refuse_relaunch_in_multirun
from xlstm_exp.preemption import PreemptionCheckpoint
from xlstm_exp.wandb_setup import (
    build_loggers,
    configure_wandb_mode,
    finish_wandb,
    publish_summary,
)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a config group such as `logger` or `callbacks` (None: none)."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


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


def keep_early_stopping(cfg: DictConfig) -> bool:
    """`stop_early` true/false forces it; null (the default) stops early unless `max_tokens`
    fixes the budget, so every model of a fixed-budget comparison trains for the same tokens."""
    choice = cfg.get("stop_early")
    return cfg.get("max_tokens") is None if choice is None else bool(choice)


def build_trainer(cfg: DictConfig, loggers: list) -> tuple[L.Trainer, list]:
    """The trainer and its callbacks, with the step budget that `max_tokens` asks for."""
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not loggers:  # Lightning refuses a learning-rate monitor with nowhere to log
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    if not keep_early_stopping(cfg):
        callbacks = [cb for cb in callbacks if not isinstance(cb, EarlyStopping)]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    refuse_relaunch_in_multirun(trainer)
    # The number of processes is known once the trainer has resolved `devices` (e.g. "auto").
    token_budget = max_steps_for_tokens(cfg, trainer.num_devices * trainer.num_nodes)
    if token_budget is not None:
        trainer.fit_loop.epoch_loop.max_steps = token_budget
    return trainer, callbacks


def train(cfg: DictConfig) -> dict:
    """Train, validate (and test, unless `test=false`) one model; returns the metrics written to
    `<output_dir>/metrics.json`. With `ckpt_path`, resumes that checkpoint exactly."""
    started = time.time()
    check_optimized_metric(cfg)
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
        resumed = load_checkpoint(resume_from)  # a clear error now, not deep inside Lightning

    datamodule = build_data(cfg.data)
    model, size = build_model(cfg, datamodule.vocab_size)
    if resume_from:
        check_same_model(resumed, model, OmegaConf.to_container(cfg, resolve=True), resume_from)
        del resumed
    block = model.block_label if isinstance(model, LanguageModel) else "own"
    picked = {"model": choices["model"], "block": block, "data": choices["data"]}
    run_config = {**OmegaConf.to_container(cfg, resolve=True), "choices": picked}
    module = LanguageModelingModule(model, run_config=run_config, **cfg.optimizer)
    loggers = build_loggers(cfg, list(picked.values()), output_dir)
    trainer, callbacks = build_trainer(cfg, loggers)
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
            console.info(f"stopped early; resume with ckpt_path={preempted[0]}")
            return {"preempted_checkpoint": str(preempted[0])}
        # Read before evaluating: loading the best checkpoint restores its own counts.
        tokens, seconds, history = module.train_tokens, module.train_seconds, module.val_history
        results, best_step = score_best(trainer, module, datamodule, bool(cfg.get("test")))
        metrics = {
            **picked,
            "seed": cfg.get("seed"),
            "lr": cfg.optimizer.lr,
            **parameter_counts(model),
            "target_params": cfg.model.get("target_params"),
            "d_model": model.d_model if isinstance(model, LanguageModel) else None,
            "up_width": size.up_width if size else None,
            **results,
            "best_step": best_step,
            "train/tokens": tokens,
            "train/tokens_per_s": tokens / max(seconds, 1e-9),
            "global_step": trainer.global_step,
            "wall_time_s": time.time() - started,
            "val/history": history,
        }
        publish_summary(loggers, metrics, trainer.is_global_zero)
    finally:
        finish_wandb(loggers)
    write_metrics(trainer, metrics, output_dir)
    return metrics


def run_job(cfg: DictConfig) -> float | None:
    """train.py's job: train and return `optimized_metric` (what sweepers minimise). A failure
    is also written to `<output_dir>/error.txt`; inside a multirun the sweep then goes on with
    the next job (this one returns NaN and shows as FAILED in the sweep's results table)."""
    try:
        return optimized_value(train(cfg), cfg)
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
