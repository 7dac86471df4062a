"""What a mixer is: the declared contract every sequence-mixing layer of a block fulfils."""

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from xlstm_exp.models.init import InitScales


class Mixer(nn.Module, ABC):
    """The sequence-mixing layer inside a residual block.

    Constructed as `Mixer(width, num_heads, dropout, **options)` and called as
    `mixer(x, x_conv, state) -> (y, state)`: `x` is its input, `x_conv` the same input after the
    block's causal conv and swish (equal to `x` when the block has no conv), and `state` what the
    mixer carries between calls (`None` for a fresh sequence).
    """

    # Whether the block should build a causal conv branch for it (else `x_conv` is `x`).
    reads_conv_branch: ClassVar[bool]
    # The block kind the xLSTM paper runs this mixer in: "pre" (Fig. 11) or "post" (Fig. 10).
    paper_block: ClassVar[str]
    # Whether it takes a `backend` option choosing between PyTorch and Triton kernels.
    has_kernel_backends: ClassVar[bool] = False

    @staticmethod
    @abstractmethod
    def width_multiple(num_heads: int) -> int:
        """Widths this mixer runs at must be multiples of this."""

    @abstractmethod
    def init_weights(self, scales: InitScales) -> None:
        """Initialise every parameter as the official xLSTM code does for this layer."""

    def no_weight_decay(self) -> list[nn.Parameter]:
        """Weight matrices that AdamW must not decay (vectors never are)."""
        return []

    @abstractmethod
    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state: Any = None):
        """`(B, S, width)` inputs -> `(B, S, width)` outputs and the state after them."""
