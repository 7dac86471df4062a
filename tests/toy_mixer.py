"""A cell added the way the README's "Add a cell" says, one Mixer subclass and a registry entry,
registered for the tests of the modules that use `registered_toy` only, and the mixer names the
generic tests are parametrised over: every registered mixer and the toy."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xlstm_exp.models  # noqa: F401  (registers the shipped mixers before they are listed)
from xlstm_exp.models.init import InitScales, small_init_, wang_init_
from xlstm_exp.models.mixer import Mixer
from xlstm_exp.models.registry import MIXERS, register_mixer

TOY = "toy"


class ToyState(NamedTuple):
    """The running average of every channel, `(B, width)`."""

    h: torch.Tensor


class ToyMixer(Mixer):
    """A causal exponential moving average per channel, h_t = a h_{t-1} + (1 - a) W_in x_conv_t,
    with a learned decay a in (0, 1), gated by the plain input: y_t = W_out (h_t * silu(x_t)).

    Sequences run in a parallel form (a decay matrix over time), single tokens with a carried
    state in the recurrent one, so prefill-then-step tests compare two different computations.
    The decays are a (heads, head_dim) matrix, so that `no_weight_decay` has one to declare.
    `dropout` is taken as every mixer is, and left to the block's residual dropout.
    """

    reads_conv_branch = True
    paper_block = "post"
    is_recurrent = True
    state_type = ToyState
    mixable = False

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0, max_decay: float = 0.95):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} does not split into {num_heads} heads")
        self.max_decay = max_decay
        self.in_proj = nn.Linear(width, width, bias=False)
        self.decay_logit = nn.Parameter(torch.empty(num_heads, width // num_heads))
        self.out_proj = nn.Linear(width, width, bias=False)
        self.init_weights(InitScales(d_model=width))

    @staticmethod
    def width_multiple(num_heads: int) -> int:
        return num_heads

    def init_weights(self, scales: InitScales) -> None:
        small_init_(self.in_proj.weight, scales)
        for weight in self.output_projections():
            wang_init_(weight, scales)
        # Every head spans memories from short (a = 0.5) to long (a = max_decay).
        decays = torch.linspace(0.5, self.max_decay, self.decay_logit.shape[1])
        with torch.no_grad():
            self.decay_logit.copy_(torch.logit(decays).expand_as(self.decay_logit))

    def output_projections(self) -> list[nn.Parameter]:
        return [self.out_proj.weight]

    def no_weight_decay(self) -> list[nn.Parameter]:
        # Decaying the logits would pull every memory towards a = 0.5.
        return [self.decay_logit]

    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state: ToyState | None = None):
        log_a = F.logsigmoid(self.decay_logit).flatten()  # (width,)
        u = -torch.expm1(log_a) * self.in_proj(x_conv)  # (1 - a) W_in x_conv
        if state is not None and x.shape[1] == 1:
            h = (log_a.exp() * state.h + u[:, 0]).unsqueeze(1)
        else:
            time = torch.arange(x.shape[1], device=x.device)
            lag = (time[:, None] - time[None, :]).to(log_a.dtype)  # t - s
            # a^(t-s) for s <= t; the future gets exp(-inf) = 0 (never exp(+large) * 0 = nan).
            exponent = (lag[..., None] * log_a).masked_fill((lag < 0)[..., None], -torch.inf)
            h = torch.einsum("tsw,bsw->btw", exponent.exp(), u)
            if state is not None:
                h = h + ((time[:, None] + 1) * log_a).exp() * state.h[:, None]
        return self.out_proj(h * F.silu(x)), ToyState(h[:, -1])


@contextmanager
def toy_registered() -> Iterator[str]:
    """The toy in the registry for the duration of the block, so that other tests see only the
    shipped mixers."""
    if TOY in MIXERS:
        raise RuntimeError(f"a mixer named {TOY!r} is registered already")
    register_mixer(TOY)(ToyMixer)
    try:
        yield TOY
    finally:
        del MIXERS[TOY]


@pytest.fixture
def registered_toy() -> Iterator[str]:
    with toy_registered() as name:
        yield name


def mixer_classes() -> dict[str, type[Mixer]]:
    """Every registered mixer and the toy, by name."""
    return {**MIXERS, TOY: ToyMixer}


def mixer_names(**declared) -> list[str]:
    """Names of every registered mixer and the toy whose declarations have the given values,
    e.g. `mixer_names(is_recurrent=True)`: read when the tests are collected, so a cell added
    to the registry is tested without a list to edit."""
    return sorted(
        name
        for name, cls in mixer_classes().items()
        if all(getattr(cls, key) == value for key, value in declared.items())
    )
