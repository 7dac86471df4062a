"""Sizes, counts, rates and lengths are refused when the config is composed, by key, value and
rule, before any data or model is built (in-process, composing only)."""

import re

import pytest
from helpers import TINY, compose_train, options

from xlstm_exp.config_checks import check_config
from xlstm_exp.from_config import build_data
from xlstm_exp.user_error import UserError

BAD = [
    ("model.d_model", "0", "a positive integer"),
    ("model.num_layers", "-1", "a positive integer"),
    ("model.num_heads", "2.5", "a positive integer"),
    ("model.vocab_size", "0", "a positive integer or null"),
    ("model.dropout", "1.0", "in [0, 1)"),
    ("model.dropout", "-0.1", "in [0, 1)"),
    ("model.target_params", "-5M", "a positive parameter count"),
    ("model.target_params", "lots", "a positive parameter count"),
    ("data.context_length", "0", "a positive integer or null"),
    ("data.batch_size", "null", "a positive integer"),
    ("max_tokens", "0", "a positive number of tokens or null"),
    ("optimizer.lr", "0", "a positive number"),
    ("optimizer.lr", "-1.0", "a positive number"),
    ("optimizer.weight_decay", "-0.1", "at least 0"),
    ("optimizer.warmup_steps", "-1", "an integer >= 0"),
    ("trainer.max_steps", "0", "a positive integer or -1"),
    ("trainer.max_steps", "-2", "a positive integer or -1"),
    ("logger.wandb.settings.init_timeout", "0", "a positive number of seconds"),
]


@pytest.mark.parametrize(("key", "value", "rule"), BAD)
def test_a_bad_value_is_refused_naming_key_value_and_rule(key, value, rule, tmp_path):
    overrides = [o for o in TINY if o != "logger=none"] + [f"{key}={value}"]
    cfg = compose_train(overrides, tmp_path)
    with pytest.raises(UserError, match=f"^{re.escape(f'{key}={value} must be {rule}')}"):
        check_config(cfg)


@pytest.mark.parametrize(
    "override",
    ["max_tokens=null", "model.target_params=47M", "trainer.max_steps=-1", "model.dropout=0"],
)
def test_edge_values_that_work_pass(override, tmp_path):
    check_config(compose_train([*TINY, override], tmp_path))


@pytest.mark.parametrize("choice", [f"{g}={o}" for g in ("data", "experiment") for o in options(g)])
def test_every_shipped_dataset_and_experiment_passes(choice, tmp_path):
    check_config(compose_train([choice], tmp_path))


def test_the_data_module_is_not_built_with_a_bad_length(tmp_path, monkeypatch):
    """Before, data.context_length=0 was only refused by the data module after its corpus was
    generated (or, for WikiText, after the tokenizer was trained)."""
    cfg = compose_train([*TINY, "data.context_length=0"], tmp_path)
    monkeypatch.setattr("xlstm_exp.from_config.instantiate", pytest.fail)
    with pytest.raises(UserError, match=r"^data\.context_length=0 must be a positive integer"):
        build_data(cfg.data)
