"""The models the benchmark measures against, built at the benchmark's configuration.

The official NX-AI packages and PyxLSTM are not dependencies of the project: `make bench`
installs them into `.bench/peers` (see bench/requirements-peers.txt), which the benchmark puts
on its path. Each builder returns a module and a function from token ids to logits.
"""

from collections.abc import Callable

import torch
from plain_models import PlainLM
from torch import nn

Logits = Callable[[torch.Tensor], torch.Tensor]


def official(kind: str, vocab: int, d: int, layers: int, heads: int, context: int):
    """The official xLSTM stack: mLSTM blocks only or sLSTM blocks only (sLSTM on the `vanilla`
    backend, as the CUDA one needs a GPU), with the defaults of the package's examples."""
    from xlstm import (
        FeedForwardConfig,
        mLSTMBlockConfig,
        mLSTMLayerConfig,
        sLSTMBlockConfig,
        sLSTMLayerConfig,
        xLSTMLMModel,
        xLSTMLMModelConfig,
    )

    config = xLSTMLMModelConfig(
        vocab_size=vocab,
        context_length=context,
        num_blocks=layers,
        embedding_dim=d,
        mlstm_block=mLSTMBlockConfig(
            mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=heads)
        ),
        slstm_block=sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(
                backend="vanilla",
                num_heads=heads,
                conv1d_kernel_size=4,
                bias_init="powerlaw_blockdependent",
            ),
            feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu"),
        ),
        slstm_at="all" if kind == "slstm" else [],
    )
    model = xLSTMLMModel(config)
    model.reset_parameters()
    return model, model


def pyxlstm(kind: str, vocab: int, d: int, layers: int, heads: int, context: int):
    """PyxLSTM's `xLSTM` model: `layers` blocks of one cell layer each (it has no heads)."""
    from xLSTM import xLSTM

    model = xLSTM(vocab, d, d, num_layers=1, num_blocks=layers, lstm_type=kind)
    return model, lambda idx: model(idx)[0]


def plain(kind: str, vocab: int, d: int, layers: int, heads: int, context: int):
    model = PlainLM(vocab, d, layers, heads, kind)
    return model, model


BUILDERS: dict[str, Callable[..., tuple[nn.Module, Logits]]] = {
    "official": official,
    "pyxlstm": pyxlstm,
    "plain": plain,
}
