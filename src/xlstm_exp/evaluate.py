"""Evaluate a checkpoint on the validation and test splits; write metrics.json."""

import json
import math
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from xlstm_exp.checkpoint import CONFIG_KEY, check_same_model, load_checkpoint
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.run import build_model, parameter_counts, summary
from xlstm_exp.stream_eval import is_recurrent, sliding_window_nll, stateful_nll


def stream_metrics(model, datamodule, options: DictConfig, context_length: int) -> dict:
    """Each split scored as one stream: recurrent models carry their state across windows,
    attention slides a window over the stream."""
    window = options.window or context_length
    stride = options.stride or max(1, window // 2)
    metrics = {}
    for split in ("val", "test"):
        tokens = datamodule.tokens(split)
        if is_recurrent(model):
            nll, count = stateful_nll(model, tokens, window)
            method = f"state carried across windows of {window}"
        else:
            nll, count = sliding_window_nll(model, tokens, window, stride)
            method = f"sliding window of {window}, stride {stride}"
        metrics[f"{split}/stateful_loss"] = nll / count
        metrics[f"{split}/stateful_ppl"] = math.exp(nll / count)
        metrics[f"{split}/stateful_method"] = method
        counts = datamodule.eval_counts(split) if hasattr(datamodule, "eval_counts") else None
        if counts and counts["tokens"] == count:
            metrics[f"{split}/stateful_word_ppl"] = math.exp(nll / counts["words"])
            metrics[f"{split}/stateful_bpb"] = nll / (counts["bytes"] * math.log(2))
    return metrics


def evaluate(cfg: DictConfig) -> dict:
    """Rebuild the checkpoint's model from the config it carries and score it on its own data,
    or on `data=...` when given (with the same vocabulary)."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    if not checkpoint.get(CONFIG_KEY):
        raise ValueError(
            f"checkpoint {cfg.ckpt_path} carries no run config; was it written by train.py?"
        )
    trained = OmegaConf.create(checkpoint[CONFIG_KEY])
    data_cfg = cfg.data if cfg.get("data") is not None else trained.data
    datamodule = instantiate(data_cfg)
    model, _ = build_model(trained, datamodule.vocab_size)
    requested = {"data": OmegaConf.to_container(data_cfg, resolve=True)}
    check_same_model(checkpoint, model, requested, cfg.ckpt_path)
    module = LanguageModelingModule(model)
    module.load_state_dict(checkpoint["state_dict"])
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[instantiate(cfg.progress_bar)])
    results = dict(trainer.validate(module, datamodule=datamodule, verbose=False)[0])
    results.update(trainer.test(module, datamodule=datamodule, verbose=False)[0])

    choices = HydraConfig.get().runtime.choices
    metrics = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "model": trained.choices.model,
        "block": trained.choices.block,
        "data": choices.get("data") or trained.choices.data,
        **parameter_counts(model),
        **{k: float(v) for k, v in results.items()},
        "global_step": checkpoint.get("global_step"),
        "train/tokens": checkpoint.get("train_tokens"),
    }
    if cfg.eval.stateful:
        metrics.update(stream_metrics(model, datamodule, cfg.eval, data_cfg.context_length))
    for split in ("val", "test"):
        if hasattr(datamodule, "floor_ppl"):
            metrics[f"{split}/floor_ppl"] = datamodule.floor_ppl(split)
            metrics[f"{split}/unigram_ppl"] = datamodule.unigram_ppl(split)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(summary(metrics, output_dir))
    return metrics
