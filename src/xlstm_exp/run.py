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
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from xlstm_exp import console
from xlstm_exp.allocator import keep_freed_memory
from xlstm_exp.atomic_checkpoint_io import AtomicCheckpointIO
from xlstm_exp.auto_resume import resolve_ckpt_path
from xlstm_exp.checkpoint import check_same_model, load_checkpoint
from xlstm_exp.cli import full_errors, user_error_line
from xlstm_exp.config_checks import check_config
from xlstm_exp.console_noise import route_dependency_output
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
    wandb_run,
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
    # Every checkpoint, whichever callback writes it, is written whole or not at all.
    trainer = instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
    refuse_relaunch_in_multirun(trainer)
    # The number of processes is known once the trainer has resolved `devices` (e.g. "auto").
    token_budget = max_steps_for_tokens(cfg, trainer.num_devices * trainer.num_nodes)
    if token_budget is not None:
        trainer.fit_loop.epoch_loop.max_steps = token_budget
    return trainer, callbacks


def best_checkpoint(callbacks: list) -> str | None:
    """The file of the best weights (what the final scores come from), if one was written."""
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
            return callback.best_model_path
    return None


def train(cfg: DictConfig) -> dict:
    """Train, validate (and test, unless `test=false`) one model; returns the metrics written to
    `<output_dir>/metrics.json`. With `ckpt_path`, resumes that checkpoint exactly; with
    `ckpt_path=auto`, the newest one in `<output_dir>/checkpoints/`, if any (see auto_resume)."""
    started = time.time()
    route_dependency_output()
    check_config(cfg)
    check_optimized_metric(cfg)
    keep_freed_memory()  # large CPU activations would otherwise be page-faulted in every step
    choices = HydraConfig.get().runtime.choices
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    configure_wandb_mode()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    resume_from = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
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
            console.info(
                f"stopped early; resume with ckpt_path={preempted[0]} (or ckpt_path=auto "
                f"hydra.run.dir={output_dir})"
            )
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
            "best_checkpoint": best_checkpoint(callbacks),
            "wandb_run": wandb_run(loggers) if trainer.is_global_zero else None,
        }
        publish_summary(loggers, metrics, trainer.is_global_zero)
    finally:
        finish_wandb(loggers)
    write_metrics(trainer, metrics, output_dir)
    return metrics


# 128 + SIGTERM, as a shell reports a process ended by the signal.
PREEMPTED_EXIT_STATUS = 143
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def record_error(error_file: Path, text: str) -> bool:
    """Write `text` to `error_file` if the disk allows: the error that ended the run (a full
    disk, say) may refuse it too, and must not be masked by that second error."""
    try:
        error_file.parent.mkdir(parents=True, exist_ok=True)
        error_file.write_text(text)
    except OSError as failure:
        print(f"could not write {error_file} ({failure}); the run's error follows", file=sys.stderr)
        return False
    return True


def run_job(cfg: DictConfig) -> float | None:
    """train.py's job: train and return `optimized_metric` (what sweepers minimise). A failure
    is also written to `<output_dir>/error.txt`; inside a multirun the sweep then goes on with
    the next job (this one returns NaN and shows as FAILED in the sweep's results table)."""
    try:
        metrics = train(cfg)
    except MultirunRelaunchError:
        raise
    except Exception as error:
        # A user error is reported by its one line (the last line of error.txt is what the
        # sweep's FAILED row shows); a bug by its traceback.
        line = None if full_errors() else user_error_line(error)
        error_file = Path(cfg.paths.output_dir) / "error.txt"
        recorded = record_error(error_file, f"{line}\n" if line else traceback.format_exc())
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        where = f"see {error_file}" if recorded else "not recorded"
        print(f"job failed ({where}); the sweep goes on", file=sys.stderr)
        if line:
            print(line, file=sys.stderr)
        else:
            traceback.print_exc()
        return math.nan
    if "preempted_checkpoint" in metrics and sweep_runs_in_this_process():
        # The signal (a cluster's SIGTERM, a Ctrl-C) was meant for the whole sweep, not for
        # this job only: the next job would start only to be killed.
        console.info("the sweep stops here: the jobs before this one finished")
        sys.exit(PREEMPTED_EXIT_STATUS)
    return optimized_value(metrics, cfg)


def sweep_runs_in_this_process() -> bool:
    """Whether this job is one of a multirun whose jobs run one after another in this process
    (Hydra's basic launcher), where a signal reaches the sweep, not one job of it (as it does
    under the submitit launchers, one process per job)."""
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN and hydra.launcher._target_ == BASIC_LAUNCHER
