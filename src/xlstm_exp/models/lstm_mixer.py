"""LSTM baseline mixer: torch.nn.LSTM and its fused kernels."""

import torch
from torch import nn

from xlstm_exp.models.init import InitScales
from xlstm_exp.models.mixer import Mixer
from xlstm_exp.models.registry import register_mixer


@register_mixer("lstm")
class LSTMMixer(Mixer):
    """A single-layer LSTM over the (conv-smoothed) input; state is nn.LSTM's `(h, c)`."""

    reads_conv_branch = False
    # The paper's LSTM baseline row: LSTM layers in a residual backbone with up-projection MLPs.
    paper_block = "post"

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(width, width, batch_first=True)

    @staticmethod
    def width_multiple(num_heads: int) -> int:
        return 1

    def init_weights(self, scales: InitScales) -> None:
        # The official code has no LSTM layer to follow: PyTorch's own LSTM initialisation.
        self.lstm.reset_parameters()

    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state=None):
        return self.lstm(x_conv, state)
