"""The data-module contract: every shipped dataset fulfils it, a new one needs only a subclass,
and anything else is refused by name."""

import math

import pytest
from helpers import TINY, compose_train, options
from hydra.utils import get_class
from omegaconf import OmegaConf, open_dict

from xlstm_exp.data.contract import LanguageDataModule
from xlstm_exp.from_config import build_data
from xlstm_exp.run import train
from xlstm_exp.user_error import UserError


@pytest.mark.parametrize("data", options("data"))
def test_every_data_config_builds_a_language_data_module(data, tmp_path):
    cfg = compose_train([f"data={data}"], tmp_path)
    assert issubclass(get_class(cfg.data._target_), LanguageDataModule)


def test_a_data_module_outside_the_contract_is_refused_by_name():
    plain = OmegaConf.create({"_target_": "lightning.LightningDataModule"})
    with pytest.raises(UserError, match="not an xlstm_exp.data.contract.LanguageDataModule"):
        build_data(plain)


@pytest.mark.slow
def test_a_new_dataset_trains_and_is_scored_from_its_contract_alone(tmp_path):
    cfg = compose_train([*TINY, "model=lstm", "trainer.max_steps=30"], tmp_path)
    with open_dict(cfg):
        cfg.data = {"_target_": "toy_data.CountingData", "context_length": 16, "batch_size": 4}
        cfg.optimizer.warmup_steps = 5
    metrics = train(cfg)
    for split in ("val", "test"):
        assert metrics[f"{split}/floor_ppl"] == 1.0
        # The data's word and byte counts reach the scores.
        assert metrics[f"{split}/word_ppl"] == pytest.approx(metrics[f"{split}/ppl"] ** 2, 1e-4)
        assert metrics[f"{split}/bpb"] == pytest.approx(metrics[f"{split}/loss"] / math.log(2))
    # A sequence that counts is learnt well within 30 steps (uniform would be 12).
    assert metrics["val/ppl"] < 3
