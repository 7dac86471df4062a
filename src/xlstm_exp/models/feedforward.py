"""Gated MLP of the post-up-projection block."""

import torch
import torch.nn.functional as F
from torch import nn


def round_up(value: float, multiple: int) -> int:
    return int(-(-value // multiple) * multiple)


class GatedMLP(nn.Module):
    """`down(gelu(gate) * up)` with a hidden width of `proj_factor * width` rounded up to 8 (fine
    steps keep parameter-matched model sizes close to their target)."""

    def __init__(self, width: int, proj_factor: float = 4 / 3):
        super().__init__()
        hidden = round_up(proj_factor * width, 8)
        self.up_proj = nn.Linear(width, 2 * hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.gelu(gate) * up)
