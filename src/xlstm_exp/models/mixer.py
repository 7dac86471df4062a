"""What a mixer is: the declared contract every sequence-mixing layer of a block fulfils."""

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from xlstm_exp.models.init import InitScales

# How a user fixes a mixer width its heads do not divide: the width is `model.d_model` in a
# post-up-projection block and the up-projection width in a pre-up-projection one.
HEADS_HINT = "change model.num_heads, model.d_model or the block's up_width so that it does"


class Mixer(nn.Module, ABC):
    """The sequence-mixing layer inside a residual block.

    Constructed as `Mixer(width, num_heads, dropout, **options)`, where `options` are the
    keyword parameters of its `__init__` (what `model.mixer_options.<name>` may set), and called
    as `mixer(x, x_conv, state) -> (y, state)`: `x` is its input, `x_conv` the same input after
    the block's causal conv and swish (equal to `x` when the block has no conv), and `state`
    what the mixer carries between calls (`None` for a fresh sequence, else a `state_type`).
    Register a subclass with `registry.register_mixer(name)` and it can be built by that name.
    """

    # Whether the block should build a causal conv branch for it (else `x_conv` is `x`).
    reads_conv_branch: ClassVar[bool]
    # The block kind the xLSTM paper runs this mixer in: "pre" (Fig. 11) or "post" (Fig. 10).
    paper_block: ClassVar[str]
    # True: its state has a fixed size, so a stream can be scored by carrying it from window to
    # window. False (attention): the state grows with the context; streams use sliding windows.
    is_recurrent: ClassVar[bool]
    # The type of the state `forward` returns (a NamedTuple of tensors).
    state_type: ClassVar[type]
    # Whether it may be one of the two cells of an xLSTM[a:b] stack (`slstm_at`, `mix_with`).
    mixable: ClassVar[bool] = False
    # Whether it takes a `backend` option choosing between PyTorch and Triton kernels.
    has_kernel_backends: ClassVar[bool] = False

    @staticmethod
    @abstractmethod
    def width_multiple(num_heads: int) -> int:
        """Widths this mixer runs at must be multiples of this."""

    @abstractmethod
    def init_weights(self, scales: InitScales) -> None:
        """Initialise every parameter as the official xLSTM code does for this layer: maps into
        the heads with `init.small_init_`, the `output_projections` with `init.wang_init_`."""

    def output_projections(self) -> list[nn.Parameter]:
        """Weights that map back towards the residual stream, initialised with the depth-scaled
        `init.wang_init_` so the stack's output scale does not grow with depth."""
        return []

    def no_weight_decay(self) -> list[nn.Parameter]:
        """Parameters of two or more dimensions that AdamW must not decay (vectors never are)."""
        return []

    @abstractmethod
    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state: Any = None):
        """`(B, S, width)` inputs -> `(B, S, width)` outputs and the state after them."""
