"""eval.py's job: score a checkpoint on the validation and test splits; write metrics.json."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from xlstm_exp.checkpoint import check_same_model, load_checkpoint, run_config
from xlstm_exp.console_noise import route_dependency_output
from xlstm_exp.evaluation import score, stream_metrics, write_metrics
from xlstm_exp.from_config import build_data, build_model
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models.factory import parameter_counts


def data_config(cfg: DictConfig, trained: DictConfig) -> DictConfig:
    """The data to score on: the checkpoint's own, or `data=...` read with the checkpoint's
    tokenizer (the one its vocabulary was built from) unless `tokenizer=...` is given too."""
    if cfg.get("data") is None:
        return trained.data
    if cfg.get("tokenizer") is not None or trained.get("tokenizer") is None:
        return cfg.data
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.tokenizer = trained.tokenizer
    return cfg.data


def evaluate(cfg: DictConfig) -> dict:
    """Rebuild the checkpoint's model from the config it carries and score it on its own data,
    or on `data=...` when given (with the same vocabulary)."""
    route_dependency_output()
    checkpoint = load_checkpoint(cfg.ckpt_path)
    trained = OmegaConf.create(run_config(checkpoint, cfg.ckpt_path))
    data_cfg = data_config(cfg, trained)
    datamodule = build_data(data_cfg)
    model, _ = build_model(trained, datamodule.vocab_size)
    requested = {"data": OmegaConf.to_container(data_cfg, resolve=True)}
    check_same_model(checkpoint, model, requested, cfg.ckpt_path)
    module = LanguageModelingModule(model)
    module.load_state_dict(checkpoint["state_dict"])
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[instantiate(cfg.progress_bar)])
    results = score(trainer, module, datamodule, test=True)

    choices = HydraConfig.get().runtime.choices
    metrics = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "model": trained.choices.model,
        "block": trained.choices.block,
        "data": choices.get("data") or trained.choices.data,
        **parameter_counts(model),
        **results,
        "global_step": checkpoint.get("global_step"),
        "train/tokens": checkpoint.get("train_tokens"),
    }
    if cfg.eval.stateful:
        metrics.update(stream_metrics(trainer, model, datamodule, cfg.eval.window, cfg.eval.stride))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(trainer, metrics, output_dir)
    return metrics
