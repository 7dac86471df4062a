"""The data module and the model a run's config asks for."""

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xlstm_exp import console
from xlstm_exp.config_checks import check_config
from xlstm_exp.data.contract import LanguageDataModule
from xlstm_exp.models.factory import build_language_model
from xlstm_exp.models.sizing import SolvedSize
from xlstm_exp.user_error import UserError


def build_data(data_cfg: DictConfig) -> LanguageDataModule:
    """The `data` group's data module, which must fulfil the `LanguageDataModule` contract."""
    check_config(data_cfg, "data")
    datamodule = instantiate(data_cfg)
    if not isinstance(datamodule, LanguageDataModule):
        raise UserError(
            f"data._target_={data_cfg.get('_target_')} builds a {type(datamodule).__name__}, "
            "not an xlstm_exp.data.contract.LanguageDataModule (see README, Add a dataset)"
        )
    return datamodule


def build_model(cfg: DictConfig, vocab_size: int) -> tuple[nn.Module, SolvedSize | None]:
    """The model of the `model` and `block` groups, and its solved size when
    `model.target_params` asked for one; a `model` config with a `_target_` builds that module
    instead (e.g. `xlstm_exp.xLSTM`), which builds its own blocks."""
    options = OmegaConf.to_container(cfg.model, resolve=True)
    check_config(options, "model")
    options["vocab_size"] = options.get("vocab_size") or vocab_size
    block = OmegaConf.to_container(cfg.block, resolve=True)
    if "_target_" in options:
        if block.get("kind") != "auto":
            raise UserError(
                f"block={block.get('kind')} does not apply to model._target_="
                f"{options['_target_']}, which builds its own blocks; leave block at auto"
            )
        options.pop("target_params", None)
        return instantiate(options), None
    model, size = build_language_model(block=block, **options)
    if size is not None:
        up = f", up-projection width {size.up_width}" if size.up_width else ""
        console.info(
            f"target_params {options['target_params']}: d_model {size.width}{up} gives "
            f"{size.params:,} parameters"
        )
    return model, size
