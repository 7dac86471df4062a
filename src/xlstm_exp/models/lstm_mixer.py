"""LSTM baseline mixer: torch.nn.LSTM and its fused kernels."""

import torch
from torch import nn

from xlstm_exp.models.registry import register_mixer


@register_mixer("lstm")
class LSTMMixer(nn.Module):
    """A single-layer LSTM over the (conv-smoothed) input; state is nn.LSTM's `(h, c)`."""

    reads_conv_branch = False

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(width, width, batch_first=True)

    @staticmethod
    def width_multiple(num_heads: int) -> int:
        """Widths this mixer runs at must be multiples of this."""
        return 1

    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state=None):
        return self.lstm(x_conv, state)
