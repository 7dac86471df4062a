"""One evaluation path for train.py and eval.py: validation and test scores of chosen weights,
per-word and per-byte numbers, the data's reference perplexities, whole-stream scores, and the
metrics.json and summary every run ends with."""

import json
import math
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from xlstm_exp import console
from xlstm_exp.checkpoint import load_checkpoint
from xlstm_exp.data.contract import EVAL_SPLITS, LanguageDataModule
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.perplexity import per_word_and_byte
from xlstm_exp.stream_eval import is_recurrent, sliding_window_nll, stateful_nll
from xlstm_exp.summary import summary
from xlstm_exp.user_error import UserError

# What a sweep may minimise (`optimized_metric`): the scores every evaluated run reports.
OPTIMIZABLE = tuple(
    f"{split}/{name}" for split in EVAL_SPLITS for name in ("loss", "ppl", "word_ppl", "bpb")
)


def score(
    trainer: L.Trainer,
    module: LanguageModelingModule,
    datamodule: LanguageDataModule,
    test: bool,
    ckpt_path: str | None = None,
    validated: dict | None = None,
) -> dict:
    """Validation (and test) metrics of the module's weights, or of `ckpt_path`'s, with the
    data's reference perplexities; `validated` (metrics the weights already got) skips their
    validation."""
    results = dict(validated or {})
    evaluations = [trainer.test] if test else []
    if validated is None:
        evaluations.insert(0, trainer.validate)
    for evaluate in evaluations:
        # An empty list where trainer.limit_val_batches / limit_test_batches is 0.
        evaluated = evaluate(
            module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
        )
        results.update(evaluated[0] if evaluated else {})
    metrics = {k: float(v) for k, v in results.items()}
    for split in EVAL_SPLITS:
        if f"{split}/loss" in metrics:
            references = datamodule.reference_ppl(split)
            metrics.update({f"{split}/{name}": value for name, value in references.items()})
    return metrics


def score_best(
    trainer: L.Trainer, module: LanguageModelingModule, datamodule: LanguageDataModule, test: bool
) -> tuple[dict, int]:
    """`score` of the weights with the lowest `val/loss` after fitting: the best checkpoint
    when one was written, else the final weights; and the step they come from. Weights that
    the last validation of training already scored are not validated again."""
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    best = best if best and checkpoint.monitor == "val/loss" else None
    step = load_checkpoint(best)["global_step"] if best else trainer.global_step
    validated = None
    if module.validated_step == step == trainer.global_step:
        best = None  # the final weights are the best ones, and they were just validated
        validated = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return score(trainer, module, datamodule, test, best, validated), step


@torch.no_grad()
def stream_metrics(
    trainer: L.Trainer,
    model: torch.nn.Module,
    datamodule: LanguageDataModule,
    window: int | None = None,
    stride: int | None = None,
) -> dict:
    """Each split scored as one stream, on the trainer's device and in its precision: recurrent
    models carry their state across windows of `window` tokens (default: the context length),
    attention slides such a window by `stride` (default: half of it)."""
    window = window or datamodule.context_length
    stride = stride or max(1, window // 2)
    precision = trainer.precision_plugin
    model = precision.convert_module(model.to(trainer.strategy.root_device))
    metrics = {}
    for split in EVAL_SPLITS:
        tokens = datamodule.tokens(split).to(trainer.strategy.root_device)
        with precision.forward_context():
            if is_recurrent(model):
                nll, count = stateful_nll(model, tokens, window)
                method = f"state carried across windows of {window}"
            else:
                nll, count = sliding_window_nll(model, tokens, window, stride)
                method = f"sliding window of {window}, stride {stride}"
        metrics[f"{split}/stateful_loss"] = nll / count
        metrics[f"{split}/stateful_ppl"] = math.exp(nll / count)
        metrics[f"{split}/stateful_method"] = method
        counts = datamodule.eval_counts(split)
        for name, value in per_word_and_byte(nll, count, counts).items():
            metrics[f"{split}/stateful_{name}"] = value
    return metrics


def optimized_value(metrics: dict, cfg: DictConfig) -> float | None:
    """The value a sweeper minimises: `optimized_metric` of the run (None when the run did not
    measure it, e.g. without validation)."""
    name = cfg.get("optimized_metric")
    return None if name is None else metrics.get(name)


def check_optimized_metric(cfg: DictConfig) -> None:
    """Stop before training when `optimized_metric` names nothing a run reports."""
    name = cfg.get("optimized_metric")
    if name is not None and name not in OPTIMIZABLE:
        raise UserError(
            f"optimized_metric={name} is not a metric runs report; choose one of "
            f"{', '.join(OPTIMIZABLE)}"
        )


def write_metrics(trainer: L.Trainer, metrics: dict, output_dir: Path) -> None:
    """metrics.json and the printed summary, by one process (under DDP every process gets here
    with the same metrics)."""
    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        console.info(summary(metrics, output_dir))
