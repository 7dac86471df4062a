"""Residual blocks around any mixer: the xLSTM paper's two block kinds, and which one a layer
gets (`auto`: the block the paper runs its mixer in)."""

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from xlstm_exp.models.causal_conv import CausalConv1d
from xlstm_exp.models.feedforward import GatedMLP, round_up
from xlstm_exp.models.init import InitScales, small_init_, wang_init_
from xlstm_exp.models.mixer import Mixer
from xlstm_exp.models.registry import build_mixer, mixer_class
from xlstm_exp.user_error import UserError


class BlockState(NamedTuple):
    """What a block carries between calls: its conv buffer (None without a conv) and the
    mixer's own state."""

    conv: torch.Tensor | None
    mixer: Any


class ResidualBlock(nn.Module, ABC):
    """A block of the stack: `block(x, state) -> (x', state)` at the residual width. Its
    up-projection width is `up_width`, or by default `proj_factor * d_model` rounded up to a
    multiple of `up_width_step(num_heads, mixer)`."""

    kind: ClassVar[str]
    default_proj_factor: ClassVar[float]
    mixer: Mixer

    @staticmethod
    @abstractmethod
    def up_width_step(num_heads: int, mixer: str) -> int:
        """What the default up-projection width is rounded up to a multiple of."""

    @classmethod
    def default_up_width(
        cls, d_model: int, num_heads: int, proj_factor: float | None, mixer: str
    ) -> int:
        factor = cls.default_proj_factor if proj_factor is None else proj_factor
        return round_up(factor * d_model, cls.up_width_step(num_heads, mixer))

    @abstractmethod
    def init_weights(self, scales: InitScales) -> None:
        """The official initialisation of every parameter of the block, mixer included."""


def reset_conv(conv: CausalConv1d | None) -> None:
    if conv is not None:  # the official CausalConv1d keeps PyTorch's Conv1d initialisation
        conv.conv.reset_parameters()


class PreUpProjectionBlock(ResidualBlock):
    """Paper Fig. 11 (the mLSTM block): norm -> up-projection into two branches; one branch goes
    through causal conv + swish into the mixer, the other gates the mixer output through swish;
    down-projection back to the residual stream. The mixer runs at the inner width `up_width`."""

    kind = "pre"
    default_proj_factor = 2.0

    @staticmethod
    def up_width_step(num_heads: int, mixer: str) -> int:
        # Whole 4-wide q/k/v blocks of the mLSTM per head, at a width the mixer runs at.
        return math.lcm(4 * num_heads, mixer_class(mixer).width_multiple(num_heads))

    def __init__(
        self,
        d_model: int,
        mixer: str,
        num_heads: int,
        dropout: float = 0.0,
        proj_factor: float | None = None,
        up_width: int | None = None,
        conv_kernel_size: int = 4,
        mixer_options: Mapping | None = None,
    ):
        super().__init__()
        inner = up_width or self.default_up_width(d_model, num_heads, proj_factor, mixer)
        self.norm = nn.LayerNorm(d_model, bias=False)
        self.up_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv = CausalConv1d(inner, conv_kernel_size) if conv_kernel_size else None
        self.mixer = build_mixer(mixer, inner, num_heads, dropout, **(mixer_options or {}))
        self.down_proj = nn.Linear(inner, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def init_weights(self, scales: InitScales) -> None:
        # Official xLSTMBlock + mLSTMLayer: unit norm, small-init up, Wang-init down.
        nn.init.ones_(self.norm.weight)
        small_init_(self.up_proj.weight, scales)
        reset_conv(self.conv)
        self.mixer.init_weights(scales)
        wang_init_(self.down_proj.weight, scales)

    def forward(self, x: torch.Tensor, state: BlockState | None = None):
        conv_state, mixer_state = state if state is not None else (None, None)
        x_mixer, z = self.up_proj(self.norm(x)).chunk(2, dim=-1)
        x_conv = x_mixer
        if self.conv is not None:
            x_conv, conv_state = self.conv(x_mixer, conv_state)
            x_conv = F.silu(x_conv)
        h, mixer_state = self.mixer(x_mixer, x_conv, mixer_state)
        y = self.down_proj(h * F.silu(z))
        return x + self.dropout(y), BlockState(conv_state, mixer_state)


class PostUpProjectionBlock(ResidualBlock):
    """Paper Fig. 10 (the sLSTM block): norm -> mixer at model width -> residual; norm -> gated
    MLP -> residual. With attention it is the usual pre-norm Transformer block. Mixers that read
    a conv branch (sLSTM, mLSTM) get a causal conv + swish of the normed input for it. The MLP
    has `up_width` hidden units."""

    kind = "post"
    default_proj_factor = 4 / 3  # the paper's; the official code uses 1.3

    @staticmethod
    def up_width_step(num_heads: int, mixer: str) -> int:
        # The MLP's width, which no mixer constrains. Finer than the official 64, so that
        # parameter-matched sizes land close to their target.
        return 8

    def __init__(
        self,
        d_model: int,
        mixer: str,
        num_heads: int,
        dropout: float = 0.0,
        proj_factor: float | None = None,
        up_width: int | None = None,
        conv_kernel_size: int = 4,
        mixer_options: Mapping | None = None,
    ):
        super().__init__()
        self.mixer_norm = nn.LayerNorm(d_model, bias=False)
        self.mixer = build_mixer(mixer, d_model, num_heads, dropout, **(mixer_options or {}))
        use_conv = conv_kernel_size and self.mixer.reads_conv_branch
        self.conv = CausalConv1d(d_model, conv_kernel_size) if use_conv else None
        self.mlp_norm = nn.LayerNorm(d_model, bias=False)
        self.mlp = GatedMLP(
            d_model, up_width or self.default_up_width(d_model, num_heads, proj_factor, mixer)
        )
        self.dropout = nn.Dropout(dropout)

    def init_weights(self, scales: InitScales) -> None:
        # Official xLSTMBlock with sLSTMLayer and GatedFeedForward.
        nn.init.ones_(self.mixer_norm.weight)
        nn.init.ones_(self.mlp_norm.weight)
        reset_conv(self.conv)
        self.mixer.init_weights(scales)
        self.mlp.init_weights(scales)

    def forward(self, x: torch.Tensor, state: BlockState | None = None):
        conv_state, mixer_state = state if state is not None else (None, None)
        h = self.mixer_norm(x)
        h_conv = h
        if self.conv is not None:
            h_conv, conv_state = self.conv(h, conv_state)
            h_conv = F.silu(h_conv)
        y, mixer_state = self.mixer(h, h_conv, mixer_state)
        x = x + self.dropout(y)
        x = x + self.dropout(self.mlp(self.mlp_norm(x)))
        return x, BlockState(conv_state, mixer_state)


BLOCKS: dict[str, type[ResidualBlock]] = {
    "pre": PreUpProjectionBlock,
    "post": PostUpProjectionBlock,
}
BLOCK_CHOICES = ("auto", *BLOCKS)


def resolve_block(spec: str | Mapping, mixer: str) -> tuple[str, dict]:
    """The block kind and options a layer with `mixer` gets from a block spec.

    `spec` is a kind (`auto`, `pre`, `post`) or a mapping with `kind` and, under `pre` and
    `post`, the options of that kind of block (`proj_factor`, `up_width`, `conv_kernel_size`).
    `auto` is the mixer's paper block (`Mixer.paper_block`).
    """
    options = {"kind": spec} if isinstance(spec, str) else dict(spec)
    kind = options.pop("kind", "auto")
    if kind not in BLOCK_CHOICES:
        raise UserError(
            f"block={kind}: unknown block kind; choose one of {', '.join(BLOCK_CHOICES)}"
        )
    unknown = sorted(set(options) - set(BLOCKS))
    if unknown:
        raise UserError(
            f"unknown block keys {unknown}: block options go under block.pre or block.post, "
            "e.g. block.pre.proj_factor=2"
        )
    if kind == "auto":
        kind = mixer_class(mixer).paper_block
    return kind, dict(options.get(kind) or {})


def build_block(
    spec: str | Mapping, d_model: int, mixer: str, num_heads: int, dropout: float, mixer_options
) -> ResidualBlock:
    kind, options = resolve_block(spec, mixer)
    return BLOCKS[kind](d_model, mixer, num_heads, dropout, mixer_options=mixer_options, **options)
