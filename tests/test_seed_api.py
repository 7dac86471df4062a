"""The `xLSTM(...)` constructor users know from the blog posts."""

import pytest
import torch

from xlstm_exp import xLSTM
from xlstm_exp.lm import LanguageModelingModule


@pytest.mark.parametrize("lstm_type", ["slstm", "mLSTM", "LSTM"])
def test_causal_logits_for_each_cell_type(lstm_type):
    torch.manual_seed(0)
    model = xLSTM(
        50, embedding_size=32, hidden_size=64, num_layers=2, num_blocks=1, lstm_type=lstm_type
    ).eval()
    assert len(model.forward_stack.blocks) == 2
    x = torch.randint(0, 50, (2, 12))
    changed = x.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 50
    a, b = model(x), model(changed)
    assert a.shape == (2, 12, 50)
    assert torch.equal(a[:, :6], b[:, :6]) and not torch.equal(a[:, 6:], b[:, 6:])


def test_bidirectional_sees_both_sides_and_cannot_train_as_language_model():
    torch.manual_seed(0)
    model = xLSTM(50, 32, 64, num_layers=1, num_blocks=1, bidirectional=True).eval()
    x = torch.randint(0, 50, (1, 12))
    changed = x.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 50
    diff = (model(x) - model(changed)).abs().amax(-1)[0]
    assert (diff[:6] > 0).all() and (diff[7:] > 0).all(), "an encoder sees past and future"
    with pytest.raises(ValueError, match="bidirectional"):
        LanguageModelingModule(model)


def test_unknown_cell_type_is_refused():
    with pytest.raises(ValueError, match="mlstm"):
        xLSTM(50, 32, 64, 1, 1, lstm_type="gru")
