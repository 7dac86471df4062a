"""eval.py's job: score a checkpoint on the validation and test splits; write metrics.json."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from xlstm_exp.checkpoint import check_same_model
from xlstm_exp.console_noise import route_dependency_output
from xlstm_exp.data.contract import LanguageDataModule
from xlstm_exp.evaluation import score, stream_metrics, write_metrics
from xlstm_exp.from_config import build_data, build_model
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models.factory import parameter_counts
from xlstm_exp.trained_model import TRAINING_FILE, TrainedModel, load_trained
from xlstm_exp.user_error import UserError


def data_config(cfg: DictConfig, trained: DictConfig | None, source: Path) -> DictConfig:
    """The data to score on: the checkpoint's own, or `data=...` read with the checkpoint's
    tokenizer (the one its vocabulary was built from) unless `tokenizer=...` is given too."""
    if cfg.get("data") is None:
        if trained is None:
            raise UserError(
                f"{source} has no {TRAINING_FILE} to say what data it was trained on; pass "
                "data=... (and tokenizer=...) to score it"
            )
        return trained.data
    if trained is None:
        return cfg.data
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
    source = load_trained(cfg.ckpt_path)
    trained = source.run_config
    data_cfg = data_config(cfg, trained, source.source)
    datamodule = build_data(data_cfg)
    check_vocabulary(source, datamodule, data_cfg)
    model = source.model
    module = LanguageModelingModule(model)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[instantiate(cfg.progress_bar)])
    results = score(trainer, module, datamodule, test=True)

    choices = HydraConfig.get().runtime.choices
    trained_choices = trained.choices if trained is not None else {}
    metrics = {
        "ckpt_path": str(source.source),
        "model": trained_choices.get("model") or "+".join(dict.fromkeys(model.layer_mixers)),
        "block": trained_choices.get("block") or model.block_label,
        "data": choices.get("data") or trained_choices.get("data"),
        **parameter_counts(model),
        **results,
        "global_step": source.global_step,
        "train/tokens": source.train_tokens,
    }
    if cfg.eval.stateful:
        metrics.update(stream_metrics(trainer, model, datamodule, cfg.eval.window, cfg.eval.stride))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(trainer, metrics, output_dir)
    return metrics


def check_vocabulary(
    source: TrainedModel, datamodule: LanguageDataModule, data_cfg: DictConfig
) -> None:
    """Stop before scoring data of another vocabulary than the model's, naming the config keys
    that differ from the training run's."""
    if datamodule.vocab_size == source.vocab_size:
        return
    requested = {"data": OmegaConf.to_container(data_cfg, resolve=True)}
    if source.checkpoint is not None:
        model, _ = build_model(source.run_config, datamodule.vocab_size)
        check_same_model(source.checkpoint, model, requested, source.source)
    raise UserError(
        f"{source.source} holds another model than the one requested: its vocabulary has "
        f"{source.vocab_size} tokens, data=... gives {datamodule.vocab_size}; score it on data "
        "of its own tokenizer"
    )
