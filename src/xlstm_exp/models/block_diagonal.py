"""Block-diagonal linear map: independent small projections per block (head) of the features."""

import torch
from torch import nn


class BlockDiagonalLinear(nn.Module):
    """`y[..., b, :] = x[..., b, :] @ W[b]` for blocks of `block_size` features; no mixing between
    blocks. The xLSTM cells use it for head-wise gate and q/k/v projections.

    `maps` > 1 applies that many independent maps of the same input in one matmul (e.g. the i
    and f gates of the sLSTM); the output is `(..., blocks, maps, block_size)` flattened, so each
    block's results sit side by side.
    """

    def __init__(self, width: int, block_size: int, maps: int = 1):
        super().__init__()
        if width % block_size:
            raise ValueError(f"width {width} is not a multiple of block size {block_size}")
        self.block_size = block_size
        self.weight = nn.Parameter(torch.empty(width // block_size, block_size, maps * block_size))
        # The official LinearHeadwiseExpand's own default; the mixers re-initialise it with the
        # residual width they sit in (models.init.small_init_).
        nn.init.normal_(self.weight, std=(2 / (5 * block_size)) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.unflatten(-1, (-1, self.block_size))
        return torch.einsum("...ni,nio->...no", blocks, self.weight).flatten(-2)
