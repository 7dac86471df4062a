"""Residual blocks around any mixer: the xLSTM paper's two block kinds."""

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from xlstm_exp.models.causal_conv import CausalConv1d
from xlstm_exp.models.feedforward import GatedMLP, round_up
from xlstm_exp.models.registry import build_mixer


class BlockState(NamedTuple):
    """What a block carries between calls: its conv buffer (None without a conv) and the
    mixer's own state."""

    conv: torch.Tensor | None
    mixer: Any


class PreUpProjectionBlock(nn.Module):
    """Paper Fig. 11 (the mLSTM block): norm -> up-projection into two branches; one branch goes
    through causal conv + swish into the mixer, the other gates the mixer output through swish;
    down-projection back to the residual stream."""

    def __init__(
        self,
        d_model: int,
        mixer: str,
        num_heads: int,
        dropout: float = 0.0,
        proj_factor: float = 2.0,
        conv_kernel_size: int = 4,
        mixer_options: Mapping | None = None,
    ):
        super().__init__()
        # Inner width divisible by the heads and by the 4-wide q/k/v blocks of the mLSTM.
        inner = round_up(proj_factor * d_model, 4 * num_heads)
        self.norm = nn.LayerNorm(d_model, bias=False)
        self.up_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv = CausalConv1d(inner, conv_kernel_size) if conv_kernel_size else None
        self.mixer = build_mixer(mixer, inner, num_heads, dropout, **(mixer_options or {}))
        self.down_proj = nn.Linear(inner, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

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


class PostUpProjectionBlock(nn.Module):
    """Paper Fig. 10 (the sLSTM block): norm -> mixer at model width -> residual; norm -> gated
    MLP -> residual. With attention it is the usual pre-norm Transformer block. Mixers that read
    a conv branch (sLSTM, mLSTM) get a causal conv + swish of the normed input for it."""

    def __init__(
        self,
        d_model: int,
        mixer: str,
        num_heads: int,
        dropout: float = 0.0,
        proj_factor: float = 4 / 3,
        conv_kernel_size: int = 4,
        mixer_options: Mapping | None = None,
    ):
        super().__init__()
        self.mixer_norm = nn.LayerNorm(d_model, bias=False)
        self.mixer = build_mixer(mixer, d_model, num_heads, dropout, **(mixer_options or {}))
        use_conv = conv_kernel_size and self.mixer.reads_conv_branch
        self.conv = CausalConv1d(d_model, conv_kernel_size) if use_conv else None
        self.mlp_norm = nn.LayerNorm(d_model, bias=False)
        self.mlp = GatedMLP(d_model, proj_factor)
        self.dropout = nn.Dropout(dropout)

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


BLOCKS = {"pre": PreUpProjectionBlock, "post": PostUpProjectionBlock}


def build_block(
    spec: str | Mapping, d_model: int, mixer: str, num_heads: int, dropout: float, mixer_options
) -> nn.Module:
    """`spec` is a block kind (`pre`/`post`) or a mapping with `kind` and that block's options."""
    options = {"kind": spec} if isinstance(spec, str) else dict(spec)
    kind = options.pop("kind")
    if kind not in BLOCKS:
        raise ValueError(f"unknown block kind {kind!r}; choose one of {sorted(BLOCKS)}")
    return BLOCKS[kind](d_model, mixer, num_heads, dropout, mixer_options=mixer_options, **options)
