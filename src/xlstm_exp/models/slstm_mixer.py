"""sLSTM mixer: the scalar-memory cell with exponential gating and head-wise recurrence."""

import torch
from torch import nn

from xlstm_exp.models.block_diagonal import BlockDiagonalLinear
from xlstm_exp.models.norms import MultiHeadNorm
from xlstm_exp.models.registry import register_mixer
from xlstm_exp.models.slstm import slstm_recurrent


@register_mixer("slstm")
class SLSTMMixer(nn.Module):
    """The sLSTM layer of the paper's post-up-projection block (Fig. 10).

    Input and forget gates read the conv branch, cell input and output gate the plain input,
    each through a head-wise (block-diagonal) projection; the recurrence mixes memory only within
    a head. The output is normalised per head.
    """

    reads_conv_branch = True

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} does not split into {num_heads} heads")
        self.num_heads = num_heads
        head_dim = width // num_heads
        self.igate_proj = BlockDiagonalLinear(width, head_dim)
        self.fgate_proj = BlockDiagonalLinear(width, head_dim)
        self.zgate_proj = BlockDiagonalLinear(width, head_dim)
        self.ogate_proj = BlockDiagonalLinear(width, head_dim)
        self.bias = nn.Parameter(torch.empty(4, num_heads, head_dim))
        self.recurrent = nn.Parameter(torch.empty(4, num_heads, head_dim, head_dim))
        self.norm = MultiHeadNorm(width, num_heads)
        self.reset_gate_parameters()

    @staticmethod
    def width_multiple(num_heads: int) -> int:
        return num_heads

    def reset_gate_parameters(self) -> None:
        # Recurrent weights start at zero (the official default), so early training sees a
        # gated feed-forward cell and the recurrence grows only where it helps. Forget biases
        # spread over [3, 6] within each head give a range of long memory spans; the other
        # gate biases start at zero.
        nn.init.zeros_(self.recurrent)
        nn.init.zeros_(self.bias)
        with torch.no_grad():
            self.bias[1] = torch.linspace(3.0, 6.0, self.bias.shape[-1])

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state=None):
        gates = [
            self._heads(proj(source)) + bias.unsqueeze(1)
            for proj, source, bias in zip(
                (self.igate_proj, self.fgate_proj, self.zgate_proj, self.ogate_proj),
                (x_conv, x_conv, x, x),
                self.bias,
                strict=True,
            )
        ]
        h, state = slstm_recurrent(*gates, self.recurrent, state)
        return self.norm(h.transpose(1, 2).flatten(-2)), state
