"""LSTM baseline mixer: torch.nn.LSTM and its fused kernels."""

from typing import NamedTuple

import torch
from torch import nn

from xlstm_exp.models.init import InitScales
from xlstm_exp.models.mixer import Mixer
from xlstm_exp.models.registry import register_mixer


class LSTMState(NamedTuple):
    """nn.LSTM's hidden and cell state, each `(1, B, width)`."""

    h: torch.Tensor
    c: torch.Tensor


@register_mixer("lstm")
class LSTMMixer(Mixer):
    """A single-layer LSTM over the block's input."""

    reads_conv_branch = False
    # The paper's LSTM baseline row: LSTM layers in a residual backbone with up-projection MLPs.
    paper_block = "post"
    is_recurrent = True
    state_type = LSTMState

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(width, width, batch_first=True)

    @staticmethod
    def width_multiple(num_heads: int) -> int:
        return 1

    def init_weights(self, scales: InitScales) -> None:
        # The official code has no LSTM layer to follow: PyTorch's own LSTM initialisation.
        self.lstm.reset_parameters()

    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state: LSTMState | None = None):
        y, (h, c) = self.lstm(x_conv, state)
        return y, LSTMState(h, c)
