"""Stateful (whole-stream) evaluation."""

import pytest
import torch
import torch.nn.functional as F
from toy_mixer import mixer_names, registered_toy  # noqa: F401  (the fixture pytestmark uses)

from xlstm_exp.models import LanguageModel
from xlstm_exp.stream_eval import is_recurrent, sliding_window_nll, stateful_nll

pytestmark = pytest.mark.usefixtures("registered_toy")

TOKENS = torch.randint(0, 30, (101,), generator=torch.Generator().manual_seed(0))


def full_sequence_nll(model, tokens) -> float:
    with torch.no_grad():
        logits = model(tokens[None, :-1])[0]
    return F.cross_entropy(logits.double(), tokens[1:], reduction="sum").item()


@pytest.mark.parametrize("mixer", mixer_names(is_recurrent=True))
def test_carrying_the_state_equals_one_forward_over_the_whole_stream(mixer):
    torch.manual_seed(0)
    model = LanguageModel(30, d_model=32, num_layers=2, num_heads=2, mixer=mixer).double()
    assert is_recurrent(model)
    total, count = stateful_nll(model, TOKENS, window=16)
    assert count == 100
    assert total == pytest.approx(full_sequence_nll(model, TOKENS), rel=1e-9)


# Mixers whose state grows with the context (attention) are scored with sliding windows.
@pytest.mark.parametrize("mixer", mixer_names(is_recurrent=False))
def test_sliding_window_scores_each_target_once_with_its_stated_context(mixer):
    torch.manual_seed(0)
    model = LanguageModel(30, d_model=32, num_layers=2, num_heads=2, mixer=mixer).double()
    assert not is_recurrent(model)
    total, count = sliding_window_nll(model, TOKENS, window=200, stride=7)
    assert count == 100 and total == pytest.approx(full_sequence_nll(model, TOKENS), rel=1e-9)
    # Brute force: target t is predicted from the window ending at t-1 chosen by the stride.
    window, stride, expected = 20, 8, 0.0
    for end in range(1, 101, stride):
        stop = min(end + stride, 101)
        for t in range(end, stop):
            first = max(0, stop - 1 - window)
            with torch.no_grad():
                logits = model(TOKENS[None, first:t])[0, -1]
            assert t - first >= window - stride + 1 or first == 0
            expected += F.cross_entropy(logits[None], TOKENS[t : t + 1], reduction="sum").item()
    total, _ = sliding_window_nll(model, TOKENS, window, stride)
    assert total == pytest.approx(expected, rel=1e-9)
