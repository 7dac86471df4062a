"""The official NX-AI xlstm 2.0.6 layers beside ours: building them at one configuration and
mapping every parameter between the two layouts.

`make install` puts the official package (with --no-deps, so it uses the project's torch) into
`.official/`, outside the project's environment; the parity tests import it from there.
"""

import sys
from dataclasses import dataclass

import pytest
import torch
from helpers import ROOT
from torch import nn

from xlstm_exp.models import LanguageModel

OFFICIAL = ROOT / ".official"


def official_xlstm():
    """The official `xlstm` package, imported from `.official/`."""
    if not (OFFICIAL / "xlstm").is_dir():
        pytest.fail(f"the official xlstm package is missing from {OFFICIAL}: run `make install`")
    if str(OFFICIAL) not in sys.path:
        sys.path.append(str(OFFICIAL))
    import xlstm

    return xlstm


@dataclass
class Pair:
    """One of our parameters and the official parameter(s) it corresponds to, with the
    official value rearranged into our layout."""

    name: str
    ours: nn.Parameter
    official: list[nn.Parameter]
    value: torch.Tensor


def official_model(
    vocab: int, d_model: int, num_heads: int, slstm_at: list[int], num_blocks: int, context: int
):
    """The official xLSTMLMModel with mLSTM blocks and sLSTM blocks (vanilla backend, the
    PyTorch one) at `slstm_at`, initialised as its training script does."""
    x = official_xlstm()
    config = x.xLSTMLMModelConfig(
        vocab_size=vocab,
        context_length=context,
        num_blocks=num_blocks,
        embedding_dim=d_model,
        mlstm_block=x.mLSTMBlockConfig(
            mlstm=x.mLSTMLayerConfig(
                conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=num_heads
            )
        ),
        slstm_block=x.sLSTMBlockConfig(
            slstm=x.sLSTMLayerConfig(backend="vanilla", num_heads=num_heads, conv1d_kernel_size=4),
            feedforward=x.FeedForwardConfig(proj_factor=1.3, act_fn="gelu"),
        ),
        slstm_at=slstm_at,
    )
    model = x.xLSTMLMModel(config)
    model.reset_parameters()  # its constructor leaves the embedding and head uninitialised
    return model


def our_model(
    vocab: int, d_model: int, num_heads: int, slstm_at: list[int], num_blocks: int, official
) -> LanguageModel:
    """Our xLSTM at the official model's configuration. Differs on purpose in one width: the
    official FFN rounds 1.3 d up to a multiple of 64, ours 4/3 d up to 8, so the sLSTM blocks
    get the official FFN width explicitly."""
    ffn = (
        official.xlstm_block_stack.blocks[slstm_at[0]].ffn.config._proj_up_dim if slstm_at else None
    )
    block = {"kind": "auto", "post": {"up_width": ffn}}
    return LanguageModel(
        vocab, d_model, num_blocks, num_heads, mixer="mlstm", block=block, slstm_at=slstm_at
    )


def heads_last(weight: torch.Tensor) -> torch.Tensor:
    """Official head-wise weights are (heads, out, in); ours are (heads, in, out)."""
    return weight.transpose(1, 2)


def residual(norm_weight: nn.Parameter) -> torch.Tensor:
    """Official norms store w and scale by 1 + w (init 0); ours store the scale (init 1)."""
    return 1 + norm_weight.detach()


def mlstm_block_pairs(prefix: str, ours, official) -> list[tuple]:
    layer, cell = official.xlstm, official.xlstm.mlstm_cell
    return [
        ("norm.weight", [official.xlstm_norm.weight], residual(official.xlstm_norm.weight)),
        ("up_proj.weight", [layer.proj_up.weight], layer.proj_up.weight),
        ("conv.conv.weight", [layer.conv1d.conv.weight], layer.conv1d.conv.weight),
        ("conv.conv.bias", [layer.conv1d.conv.bias], layer.conv1d.conv.bias),
        *(
            (
                f"mixer.{p}_proj.weight",
                [getattr(layer, f"{p}_proj").weight],
                heads_last(getattr(layer, f"{p}_proj").weight),
            )
            for p in "qkv"
        ),
        *(
            (f"mixer.{g}.{w}", [getattr(getattr(cell, g), w)], getattr(getattr(cell, g), w))
            for g in ("igate", "fgate")
            for w in ("weight", "bias")
        ),
        ("mixer.norm.weight", [cell.outnorm.weight], residual(cell.outnorm.weight)),
        ("mixer.skip", [layer.learnable_skip], layer.learnable_skip),
        ("down_proj.weight", [layer.proj_down.weight], layer.proj_down.weight),
    ]


def slstm_block_pairs(prefix: str, ours, official) -> list[tuple]:
    layer, cell = official.xlstm, official.xlstm.slstm_cell
    # The official layer names its gate modules swapped (NX-AI/xlstm #98): `fgate` computes the
    # input gate and `igate` the forget gate.
    gates = {g: heads_last(getattr(layer, f"{g}gate").weight) for g in "fizo"}
    return [
        ("mixer_norm.weight", [official.xlstm_norm.weight], residual(official.xlstm_norm.weight)),
        ("conv.conv.weight", [layer.conv1d.conv.weight], layer.conv1d.conv.weight),
        ("conv.conv.bias", [layer.conv1d.conv.bias], layer.conv1d.conv.bias),
        (
            "mixer.if_proj.weight",
            [layer.fgate.weight, layer.igate.weight],
            torch.cat([gates["f"], gates["i"]], dim=-1),
        ),
        (
            "mixer.zo_proj.weight",
            [layer.zgate.weight, layer.ogate.weight],
            torch.cat([gates["z"], gates["o"]], dim=-1),
        ),
        # Official external layouts: bias (NH, gate, DH), R (NH, DH in, gate, DH out).
        ("mixer.bias", [cell._bias_], cell._bias_int2ext(cell._bias_)),
        (
            "mixer.recurrent",
            [cell._recurrent_kernel_],
            cell._recurrent_kernel_int2ext(cell._recurrent_kernel_).permute(2, 0, 1, 3),
        ),
        ("mixer.norm.weight", [layer.group_norm.weight], residual(layer.group_norm.weight)),
        ("mlp_norm.weight", [official.ffn_norm.weight], residual(official.ffn_norm.weight)),
        ("mlp.up_proj.weight", [official.ffn.proj_up.weight], official.ffn.proj_up.weight),
        ("mlp.down_proj.weight", [official.ffn.proj_down.weight], official.ffn.proj_down.weight),
    ]


def block_pairs(prefix: str, ours: nn.Module, official: nn.Module) -> list[Pair]:
    layout = mlstm_block_pairs if hasattr(official.xlstm, "mlstm_cell") else slstm_block_pairs
    own = dict(ours.named_parameters())
    return [
        Pair(prefix + name, own[name], params, value.detach())
        for name, params, value in layout(prefix, ours, official)
    ]


def model_pairs(ours: LanguageModel, official) -> list[Pair]:
    stack = official.xlstm_block_stack
    pairs = [
        Pair(
            "embedding.weight",
            ours.embedding.weight,
            [official.token_embedding.weight],
            official.token_embedding.weight.detach(),
        ),
        Pair(
            "head.weight",
            ours.head.weight,
            [official.lm_head.weight],
            official.lm_head.weight.detach(),
        ),
        Pair(
            "norm.weight",
            ours.norm.weight,
            [stack.post_blocks_norm.weight],
            residual(stack.post_blocks_norm.weight),
        ),
    ]
    for i, (block, theirs) in enumerate(zip(ours.blocks, stack.blocks, strict=True)):
        pairs += block_pairs(f"blocks.{i}.", block, theirs)
    return pairs


def copy_official(pairs: list[Pair]) -> None:
    with torch.no_grad():
        for pair in pairs:
            pair.ours.copy_(pair.value)
