"""Scoring a split as one long stream, so that every token sees all (or much) of its past."""

import torch
import torch.nn.functional as F
from torch import nn

from xlstm_exp.models.language_model import LanguageModel
from xlstm_exp.models.state import detach_state


def summed_nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    # At least float32 for the softmax, whatever precision the model ran in.
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets, reduction="sum").item()


def is_recurrent(model: nn.Module) -> bool:
    """Whether the model can score a stream window by window from a carried state: a
    `LanguageModel` whose every mixer declares a fixed-size state (`Mixer.is_recurrent`)."""
    return isinstance(model, LanguageModel) and model.is_recurrent


@torch.no_grad()
def stateful_nll(model: nn.Module, tokens: torch.Tensor, window: int) -> tuple[float, int]:
    """Summed NLL of tokens[1:] given everything before them, for a recurrent model: windows of
    `window` tokens, each starting from the state the previous one ended in."""
    model.eval()
    total, state = 0.0, None
    for start in range(0, tokens.numel() - 1, window):
        inputs = tokens[start : start + window]
        targets = tokens[start + 1 : start + window + 1]
        logits, state = model(inputs[None], state=state, return_state=True)
        state = detach_state(state)
        total += summed_nll(logits[0, : targets.numel()], targets)
    return total, tokens.numel() - 1


@torch.no_grad()
def sliding_window_nll(
    model: nn.Module, tokens: torch.Tensor, window: int, stride: int
) -> tuple[float, int]:
    """Summed NLL of tokens[1:] with a sliding window of `window` inputs moved by `stride`:
    each step scores only its last `stride` targets, so every target is scored once with at
    least `window - stride` tokens of context (fewer at the very start)."""
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in 1..window ({window}), not {stride}")
    model.eval()
    total = 0.0
    for end in range(1, tokens.numel(), stride):
        stop = min(end + stride, tokens.numel())  # targets tokens[end:stop]
        first = max(0, stop - 1 - window)
        logits = model(tokens[first : stop - 1][None])[0, -(stop - end) :]
        total += summed_nll(logits, tokens[end:stop])
    return total, tokens.numel() - 1
