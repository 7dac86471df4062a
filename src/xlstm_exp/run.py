"""One training run from a composed config: build data, model, trainer; fit; write metrics.json."""

import json
import os
import time
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models import LanguageModel


def configure_wandb_mode() -> None:
    """W&B runs offline unless the user chose otherwise (an API key or an explicit mode), so a
    machine without network never hangs or prompts for a login."""
    if "WANDB_API_KEY" not in os.environ and "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"


def build_model(cfg: DictConfig, vocab_size: int) -> nn.Module:
    """A LanguageModel from the `model` and `block` groups; a `model` config with a `_target_`
    builds that module instead (e.g. `xlstm_exp.xLSTM`), ignoring `block`."""
    options = OmegaConf.to_container(cfg.model, resolve=True)
    options["vocab_size"] = options.get("vocab_size") or vocab_size
    if "_target_" in options:
        return instantiate(options)
    return LanguageModel(block=OmegaConf.to_container(cfg.block, resolve=True), **options)


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """Total and non-embedding parameters (the latter as the model defines it, if it does)."""
    total = sum(p.numel() for p in model.parameters())
    if isinstance(model, LanguageModel):
        return total, model.num_parameters(non_embedding=True)
    return total, total


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a config group such as `logger` or `callbacks` (None: none)."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def train(cfg: DictConfig) -> dict:
    """Train, validate (and test, unless `test=false`) one model; returns the metrics written to
    `<output_dir>/metrics.json`."""
    started = time.time()
    choices = HydraConfig.get().runtime.choices
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    configure_wandb_mode()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)

    datamodule = instantiate(cfg.data)
    model = build_model(cfg, datamodule.vocab_size)
    module = LanguageModelingModule(model, **cfg.optimizer)
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = instantiate_all(cfg.get("callbacks"))
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    try:
        trainer.fit(module, datamodule=datamodule)
        results = dict(trainer.validate(module, datamodule=datamodule, verbose=False)[0])
        if cfg.get("test"):
            results.update(trainer.test(module, datamodule=datamodule, verbose=False)[0])
    finally:
        for logger in loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.experiment.finish()  # one W&B run per sweep job

    params, params_non_embedding = parameter_counts(model)
    metrics = {
        **{group: choices[group] for group in ("model", "block", "data")},
        "params": params,
        "params_non_embedding": params_non_embedding,
        **{k: float(v) for k, v in results.items()},
        "train/tokens": module.train_tokens,
        "train/tokens_per_s": module.train_tokens / max(module.train_seconds, 1e-9),
        "global_step": trainer.global_step,
        "wall_time_s": time.time() - started,
    }
    for split in ("val", "test"):
        if f"{split}/loss" in metrics and hasattr(datamodule, "floor_ppl"):
            metrics[f"{split}/floor_ppl"] = datamodule.floor_ppl(split)
            metrics[f"{split}/unigram_ppl"] = datamodule.unigram_ppl(split)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(summary(metrics, output_dir))
    return metrics


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
    lines.append(
        f"{metrics['train/tokens_per_s']:.0f} train tokens/s, {metrics['wall_time_s']:.0f} s; "
        f"metrics in {output_dir / 'metrics.json'}"
    )
    return "\n".join(lines)
