"""Training runs in-process: the cells learn the built-in data; bad losses stop clearly."""

import json

import pytest
import torch
from helpers import compose_train
from torch import nn

from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.run import train

pytestmark = pytest.mark.slow

SHORT = [
    "data.train_tokens=200000",
    "data.val_tokens=20000",
    "data.test_tokens=20000",
    "data.context_length=64",
    "data.batch_size=16",
    "model.d_model=64",
    "trainer.max_steps=300",
    "trainer.val_check_interval=300",
    "optimizer.warmup_steps=10",
    "logger=none",
    "test=false",
]


@pytest.mark.parametrize(("model", "block"), [("mlstm", "pre"), ("slstm", "post")])
def test_short_training_beats_the_unigram_baseline_clearly(model, block, tmp_path):
    cfg = compose_train([f"model={model}", f"block={block}", *SHORT], tmp_path)
    metrics = train(cfg)
    assert metrics == json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/ppl"] < 0.5 * metrics["val/unigram_ppl"]
    assert metrics["val/ppl"] > metrics["val/floor_ppl"]


class NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids):
        return torch.full((*input_ids.shape, 5), float("nan")) * self.weight


def test_non_finite_loss_stops_with_a_clear_error():
    module = LanguageModelingModule(NaNModel())
    batch = (torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        module.training_step(batch, 0)
