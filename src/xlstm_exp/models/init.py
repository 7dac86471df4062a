"""The official xLSTM initialisation (NX-AI xlstm 2.0.6, `xlstm/components/init.py` and the
layers' `reset_parameters`), as functions the blocks and mixers call with their place in the
stack. Every scale follows the residual-stream width `d_model`, also for projections that act
on a block's wider inner features: the official code passes `embedding_dim` everywhere."""

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class InitScales:
    """Where a layer sits: the residual width, the number of residual blocks and this block's
    0-based index (the sLSTM forget-gate bias depends on depth)."""

    d_model: int
    num_blocks: int = 1
    block_index: int = 0


def small_init_(param: torch.Tensor, scales: InitScales) -> None:
    """Official `small_init_init_`: N(0, sqrt(2 / (5 d))) (Nguyen & Salazar 2019)."""
    nn.init.normal_(param, std=math.sqrt(2 / (5 * scales.d_model)))


def wang_init_(param: torch.Tensor, scales: InitScales) -> None:
    """Official `wang_init_`: N(0, 2 / (L sqrt(d))) for maps back into the residual stream, so
    the stack's output scale does not grow with depth."""
    nn.init.normal_(param, std=2 / scales.num_blocks / math.sqrt(scales.d_model))


def powerlaw_forget_bias(head_dim: int, scales: InitScales) -> torch.Tensor:
    """Official sLSTM `bias_init="powerlaw_blockdependent"` for the forget gate of one head:
    5 - 12 (j / (DH - 1)) ** (0.3 + 1.3 r) over the head's units j, with r the block's relative
    depth in [0, 1]. Each head spans memory from long (+5) to short (-7); deeper blocks keep
    more units long."""
    depth = scales.block_index / (scales.num_blocks - 1) if scales.num_blocks > 1 else 0.0
    units = torch.arange(head_dim, dtype=torch.float64) / max(head_dim - 1, 1)
    return (5.0 - 12.0 * units ** (0.3 + 1.3 * depth)).float()
