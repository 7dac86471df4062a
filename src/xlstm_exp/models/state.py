"""Helpers for the recurrent state a model carries between calls.

A `LanguageModel` state is a list with one `BlockState(conv, mixer)` per block; a mixer's state
is its `Mixer.state_type` (`LSTMState(h, c)`, `KVCache(k, v)`, `MLSTMState(C, n, m)`,
`SLSTMState(c, n, m, h)`): nested tuples, mostly NamedTuples, of tensors.
"""

from collections.abc import Callable
from typing import Any

import torch


def map_state(state: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply `fn` to every tensor of a state, keeping its structure and tuple types."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple
        return type(state)(*(map_state(x, fn) for x in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(x, fn) for x in state)
    return state


def detach_state(state: Any) -> Any:
    """The same state cut from the autograd graph (truncated back-propagation through time)."""
    return map_state(state, torch.Tensor.detach)


def state_to(state: Any, device: torch.device | str) -> Any:
    """The same state on another device."""
    return map_state(state, lambda x: x.to(device))


def state_bytes(state: Any) -> int:
    """Memory held by a state, in bytes."""
    total = 0

    def count(x: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += x.numel() * x.element_size()
        return x

    map_state(state, count)
    return total
