"""Every shipped config option composes and instantiates."""

import pytest
import torch
from helpers import CONF, GROUPS, TINY, compose_train, options
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf
from wikitext_mirror import tiny_mirror

from xlstm_exp.run import build_model, instantiate_all

OTHER_GROUPS = [g for g in GROUPS if g not in ("model", "block")]


def test_every_group_has_options():
    for group in ["model", "block", *OTHER_GROUPS]:
        assert options(group), f"conf/{group}/ is empty"
    assert {"lstm", "transformer", "slstm", "mlstm", "xlstm"} <= set(options("model"))
    assert set(options("block")) == {"auto", "pre", "post"}


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("block", options("block"))
def test_model_and_block_build_and_run(model, block, tmp_path):
    cfg = compose_train([f"model={model}", f"block={block}", *TINY], tmp_path)
    net, _ = build_model(cfg, vocab_size=50)
    logits = net(torch.randint(0, 50, (2, 9)))
    assert logits.shape == (2, 9, 50) and torch.isfinite(logits).all()
    assert HydraConfig.get().runtime.choices.model == model


def tiny_wikitext(tmp_path) -> list[str]:
    """WikiText options read a tiny local mirror, with a vocabulary too small for the
    experiments' parameter targets."""
    mirror = tiny_mirror(tmp_path / "mirror")
    return [
        f"data.path={mirror}",
        "data.name=tiny-v1",
        "tokenizer.vocab_size=300",
        f"tokenizer.cache_dir={tmp_path / 'cache'}",
        "model.target_params=null",
    ]


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in OTHER_GROUPS for o in options(g)])
def test_option_composes_and_instantiates(group, option, tmp_path):
    overrides = [*TINY, f"{group}={option}"]
    if (
        group in ("data", "experiment")
        and "wikitext" in (CONF / group / f"{option}.yaml").read_text()
    ):
        # TINY's data keys are the built-in corpus's.
        overrides = [*(o for o in TINY if not o.startswith("data.")), f"{group}={option}"]
        overrides += tiny_wikitext(tmp_path)
    cfg = compose_train(overrides, tmp_path)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    datamodule = instantiate(cfg.data)
    assert datamodule.vocab_size > 0
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = instantiate_all(cfg.get("callbacks"))
    # Without a GPU here, the gpu trainer config is checked with the CPU as its accelerator.
    cpu_only = {"accelerator": "cpu"} if not torch.cuda.is_available() else {}
    strategy = OmegaConf.select(cfg, "trainer.strategy._target_", default="")
    if cpu_only and strategy.endswith("FSDPStrategy"):
        # Lightning's FSDP refuses the CPU: its strategy is built on its own, the trainer without.
        instantiate(cfg.trainer.strategy)
        cpu_only["strategy"] = "auto"
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, **cpu_only)
    assert trainer.max_steps > 0 or trainer.fast_dev_run
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()
