"""Training runs in-process: the cells learn the built-in data; bad losses stop clearly."""

import json
import math

import pytest
import torch
from helpers import compose_train, model_from_checkpoint, windowed_loss
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
    train(compose_train([f"model={model}", f"block={block}", *SHORT], tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/ppl"] < 0.5 * metrics["val/unigram_ppl"]
    assert metrics["val/ppl"] > metrics["val/floor_ppl"]
    # An epoch is 199,999 // 64 = 3,124 windows: 195 batches of 16 and one of 4. Steps 197-300
    # take full batches of the second epoch.
    assert metrics["global_step"] == metrics["best_step"] == 300
    assert metrics["train/tokens"] == 64 * (3124 + 104 * 16)
    # One validation, at the end: the learning curve is one point, the reported one.
    assert metrics["val/history"] == [[metrics["train/tokens"], metrics["val/ppl"]]]
    # The file's loss agrees with plain torch on the weights it names, not only with itself.
    trained, data = model_from_checkpoint(tmp_path / "checkpoints" / "best-step300.ckpt")
    loss = windowed_loss(trained, data.tokens("val"), 64)
    assert metrics["val/loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(math.exp(loss), rel=1e-4)


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
