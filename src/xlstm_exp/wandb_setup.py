"""W&B around a run: offline unless the user has credentials, runs named after what was built,
one group per sweep."""

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig


def configure_wandb_mode() -> None:
    """W&B runs offline unless the user has credentials (an API key or `wandb login`) or chose a
    mode, so a machine without an account never prompts for a login."""
    netrc = Path.home() / ".netrc"
    logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    if not logged_in and "WANDB_API_KEY" not in os.environ and "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"


def wandb_options(labels: list[str], output_dir: Path) -> dict:
    """Name and tag a W&B run after its model, block (as built) and data, and put all jobs of
    one multirun into one group (named after the sweep folder they share) so that a sweep reads
    as one dashboard."""
    options = {"name": "-".join(labels), "tags": labels}
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        options["group"] = output_dir.parent.name
    return options


def build_loggers(cfg: DictConfig, labels: list[str], output_dir: Path) -> list:
    loggers = []
    for entry in (cfg.get("logger") or {}).values():
        is_wandb = entry.get("_target_", "").endswith("WandbLogger")
        loggers.append(
            instantiate(entry, **(wandb_options(labels, output_dir) if is_wandb else {}))
        )
    return loggers


def publish_summary(loggers: list, metrics: dict, is_global_zero: bool) -> None:
    """The run's final metrics as the W&B run summary (what a dashboard table shows)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and is_global_zero:
            logger.experiment.summary.update(metrics)


def finish_wandb(loggers: list) -> None:
    """Close the W&B run, so that each job of a sweep gets its own."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
