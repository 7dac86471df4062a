"""Gated MLP of the post-up-projection block."""

import torch
import torch.nn.functional as F
from torch import nn

from xlstm_exp.models.init import InitScales, small_init_, wang_init_


def round_up(value: float, multiple: int) -> int:
    return int(-(-value // multiple) * multiple)


class GatedMLP(nn.Module):
    """`down(gelu(gate) * up)` with `hidden` units (the official GatedFeedForward)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.up_proj = nn.Linear(width, 2 * hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)

    def init_weights(self, scales: InitScales) -> None:
        small_init_(self.up_proj.weight, scales)
        wang_init_(self.down_proj.weight, scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.gelu(gate) * up)
