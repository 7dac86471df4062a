"""One training run from a composed config: build data, model, trainer; fit; write metrics.json."""

import json
import math
import sys
import time
import traceback
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xlstm_exp.allocator import keep_freed_memory
from xlstm_exp.checkpoint import check_same_model, load_checkpoint
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models import LanguageModel
from xlstm_exp.models.factory import build_language_model
from xlstm_exp.models.sizing import SolvedSize
from xlstm_exp.multirun_guard import MultirunRelaunchError, refuse_relaunch_in_multirun
from xlstm_exp.preemption import PreemptionCheckpoint
from xlstm_exp.wandb_setup import build_loggers, configure_wandb_mode


def build_model(cfg: DictConfig, vocab_size: int) -> tuple[nn.Module, SolvedSize | None]:
    """The model of the `model` and `block` groups, and its solved size when
    `model.target_params` asked for one; a `model` config with a `_target_` builds that module
    instead (e.g. `xlstm_exp.xLSTM`), which builds its own blocks."""
    options = OmegaConf.to_container(cfg.model, resolve=True)
    options["vocab_size"] = options.get("vocab_size") or vocab_size
    block = OmegaConf.to_container(cfg.block, resolve=True)
    if "_target_" in options:
        if block.get("kind") != "auto":
            raise ValueError(
                f"block={block.get('kind')} does not apply to model._target_="
                f"{options['_target_']}, which builds its own blocks; leave block at auto"
            )
        options.pop("target_params", None)
        return instantiate(options), None
    model, size = build_language_model(block=block, **options)
    if size is not None:
        up = f", up-projection width {size.up_width}" if size.up_width else ""
        print(
            f"target_params {options['target_params']}: d_model {size.width}{up} gives "
            f"{size.params:,} parameters"
        )
    return model, size


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


def evaluate_best(trainer: L.Trainer, module, datamodule, test: bool) -> tuple[dict, int]:
    """Validation (and test) metrics of the weights with the lowest `val/loss`: the best
    checkpoint when one was written, else the final weights; and the step they come from.
    Weights that the last validation of training already scored are not validated again."""
    checkpoint = trainer.checkpoint_callback
    best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
    best = best if best and getattr(checkpoint, "monitor", None) == "val/loss" else None
    step = load_checkpoint(best)["global_step"] if best else trainer.global_step
    results = {}
    evaluations = [trainer.validate, trainer.test] if test else [trainer.validate]
    if module.validated_step == step == trainer.global_step:
        best = None  # the final weights are the best ones, and they were just validated
        results = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        evaluations.remove(trainer.validate)
    for evaluate in evaluations:
        # An empty list where trainer.limit_val_batches / limit_test_batches is 0.
        evaluated = evaluate(
            module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True
        )
        results.update(evaluated[0] if evaluated else {})
    return {k: float(v) for k, v in results.items()}, step


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
        resumed = load_checkpoint(resume_from)  # a clear error now, not deep inside Lightning

    datamodule = instantiate(cfg.data)
    model, size = build_model(cfg, datamodule.vocab_size)
    if resume_from:
        requested = OmegaConf.to_container(cfg, resolve=True)
        check_same_model(resumed, model, requested, resume_from)
        del resumed
    block = model.block_label if isinstance(model, LanguageModel) else "own"
    picked = {"model": choices["model"], "block": block, "data": choices["data"]}
    run_config = {**OmegaConf.to_container(cfg, resolve=True), "choices": picked}
    module = LanguageModelingModule(model, run_config=run_config, **cfg.optimizer)
    loggers = build_loggers(cfg, list(picked.values()), output_dir)
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
        # Read before evaluating: loading the best checkpoint restores its own counts.
        tokens, seconds, history = module.train_tokens, module.train_seconds, module.val_history
        # Under DDP each process counted the tokens of its own batches.
        train_tokens = int(trainer.strategy.reduce(torch.tensor(tokens), reduce_op="sum"))
        results, best_step = evaluate_best(trainer, module, datamodule, bool(cfg.get("test")))
        metrics = {
            **picked,
            "seed": cfg.get("seed"),
            "lr": cfg.optimizer.lr,
            **parameter_counts(model),
            "target_params": cfg.model.get("target_params"),
            "d_model": getattr(model, "d_model", None),
            "up_width": size.up_width if size else None,
            **results,
            "best_step": best_step,
            "train/tokens": train_tokens,
            "train/tokens_per_s": train_tokens / max(seconds, 1e-9),
            "global_step": trainer.global_step,
            "wall_time_s": time.time() - started,
            "val/history": history,
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
