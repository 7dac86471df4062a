"""Normalisation layers of the xLSTM blocks."""

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadNorm(nn.Module):
    """Layer norm applied separately to each head's features of each token (a group norm with one
    group per head), so heads with different output scales contribute evenly."""

    def __init__(self, width: int, num_heads: int, eps: float = 1e-5):
        super().__init__()
        self.num_heads = num_heads
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        return F.group_norm(flat, self.num_heads, self.weight, None, self.eps).view_as(x)
