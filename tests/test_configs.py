"""Every shipped config option composes and instantiates."""

import inspect
import json

import pytest
import torch
from helpers import CONF, GROUPS, TASK_DATA, TINY, compose_train, options, task_data, tiny_task
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf
from wikitext_mirror import tiny_mirror

from xlstm_exp.from_config import build_model
from xlstm_exp.models import LanguageModel
from xlstm_exp.run import instantiate_all, run_job, train

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
    task = option if group == "data" and option in TASK_DATA else None
    if group == "experiment":
        task = task_data((CONF / group / f"{option}.yaml").read_text())
    if task:
        overrides = [*tiny_task(task), f"{group}={option}"]
    elif (
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


def test_every_model_config_has_the_base_keys_and_only_language_model_arguments(tmp_path):
    # `block` is a group of its own; `target_params` is solved into d_model before building.
    arguments = set(inspect.signature(LanguageModel).parameters) - {"block"} | {"target_params"}
    base = set(OmegaConf.load(CONF / "model" / "_base.yaml"))
    assert base == arguments, "conf/model/_base.yaml documents every LanguageModel argument"
    for model in options("model"):
        keys = set(compose_train([f"model={model}"], tmp_path).model)
        assert keys == base, model


def test_a_model_key_sweeps_across_every_model(tmp_path):
    # `-m model=lstm,mlstm model.backend=torch` composes each job as this does.
    for model in options("model"):
        cfg = compose_train([f"model={model}", "model.backend=torch"], tmp_path)
        assert cfg.model.backend == "torch"


def test_train_returns_the_optimized_metric_and_refuses_unknown_ones(tmp_path):
    cfg = compose_train([*TINY, "model=lstm", "optimized_metric=val/ppl", "test=false"], tmp_path)
    value = run_job(cfg)
    assert value == json.loads((tmp_path / "metrics.json").read_text())["val/ppl"]
    wrong = compose_train([*TINY, "optimized_metric=val/acc"], tmp_path / "wrong")
    with pytest.raises(ValueError, match="optimized_metric=val/acc is not a metric.*val/bpb"):
        train(wrong)
    assert not (tmp_path / "wrong" / "config.yaml").exists(), "refused before any work"
