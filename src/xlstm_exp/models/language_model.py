"""The language-model stack: embedding -> residual blocks -> final norm -> vocabulary head."""

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from xlstm_exp.models.blocks import BlockState, build_block
from xlstm_exp.models.registry import MIXERS


def slstm_positions(num_layers: int, slstm_at: Sequence[int] | str | None) -> list[int]:
    """Which blocks are sLSTM blocks in an xLSTM[a:b] mix.

    `slstm_at` is a list of 0-based block indices (the official code's convention), `"all"`, or a
    paper-style ratio `"a:b"` (a mLSTM blocks per b sLSTM blocks), which spreads
    `round(num_layers * b / (a + b))` sLSTM blocks evenly over the stack.
    """
    if slstm_at is None:
        return []
    if isinstance(slstm_at, str):
        if slstm_at == "all":
            return list(range(num_layers))
        a, b = (float(part) for part in slstm_at.split(":"))
        count = round(num_layers * b / (a + b))
        return sorted({int((j + 0.5) * num_layers / count) for j in range(count)})
    positions = sorted(int(p) for p in slstm_at)
    if any(not 0 <= p < num_layers for p in positions):
        raise ValueError(f"slstm_at {positions} out of range for {num_layers} blocks")
    return positions


def width_multiple(
    num_layers: int,
    num_heads: int,
    mixer: str,
    block: str | Mapping,
    slstm_at: Sequence[int] | str | None = None,
    slstm_block: str | Mapping | None = None,
) -> int:
    """What `d_model` must be a multiple of: post-up-projection blocks run their mixer at
    `d_model`, which must suit its heads; pre-up-projection blocks round their own inner width."""
    sLSTM = set(slstm_positions(num_layers, slstm_at))
    multiple = 1
    for i in range(num_layers):
        spec = slstm_block if i in sLSTM and slstm_block is not None else block
        if (spec if isinstance(spec, str) else spec["kind"]) == "post":
            name = "slstm" if i in sLSTM else mixer
            multiple = math.lcm(multiple, MIXERS[name].width_multiple(num_heads))
    return multiple


class LanguageModel(nn.Module):
    """A causal language model built from one mixer kind and one block kind per layer.

    `mixer` names a registered mixer (`lstm`, `attention`, `slstm`, `mlstm`); `block` is a block
    kind or a mapping with `kind` and block options. For xLSTM[a:b] mixes, `slstm_at` turns some
    blocks into sLSTM blocks, built as `slstm_block` (default: the same block as the others).
    `mixer_options` maps a mixer name to extra keyword arguments for it. `backend` picks the
    kernels of the mixers that have several (`auto`, `torch`, `triton`; see `models.backend`).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.0,
        mixer: str = "mlstm",
        block: str | Mapping = "pre",
        slstm_at: Sequence[int] | str | None = None,
        slstm_block: str | Mapping | None = None,
        mixer_options: Mapping[str, Mapping] | None = None,
        tie_weights: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        self.d_model = d_model
        sLSTM = set(slstm_positions(num_layers, slstm_at))
        mixer_options = {name: dict((mixer_options or {}).get(name) or {}) for name in MIXERS}
        for name, mixer_class in MIXERS.items():
            if getattr(mixer_class, "has_kernel_backends", False):
                mixer_options[name]["backend"] = backend
        self.layer_mixers = ["slstm" if i in sLSTM else mixer for i in range(num_layers)]
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            build_block(
                slstm_block if i in sLSTM and slstm_block is not None else block,
                d_model,
                name,
                num_heads,
                dropout,
                mixer_options.get(name),
            )
            for i, name in enumerate(self.layer_mixers)
        )
        self.norm = nn.LayerNorm(d_model, bias=False)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.reset_parameters()
        if tie_weights:
            self.head.weight = self.embedding.weight

    def reset_parameters(self) -> None:
        """The official xLSTM initialisation: small-init N(0, sqrt(2 / 5d)) for projections and
        embeddings, Wang-init N(0, 2 / (L sqrt(d))) for projections back into the residual
        stream (so the stack's output scale does not grow with depth), then each mixer's own
        gate initialisation. Convolutions and nn.LSTM keep PyTorch's defaults."""
        small = (2 / (5 * self.d_model)) ** 0.5
        wang = 2 / (len(self.blocks) * self.d_model**0.5)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                last = name.rsplit(".", 1)[-1]
                std = wang if last in ("down_proj", "out_proj") else small
                nn.init.normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if hasattr(module, "reset_gate_parameters"):
                module.reset_gate_parameters()

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count; `non_embedding` leaves out the token embedding and the head."""
        params = {id(p): p for p in self.parameters()}
        if non_embedding:
            params.pop(id(self.embedding.weight), None)
            params.pop(id(self.head.weight), None)
        return sum(p.numel() for p in params.values())

    def forward(
        self,
        input_ids: torch.Tensor,
        state: list[BlockState] | None = None,
        return_state: bool = False,
    ):
        """Logits `(B, S, vocab)` for `input_ids` `(B, S)`; with `return_state`, also the state
        after the last token, which a later call can continue from."""
        x = self.dropout(self.embedding(input_ids))
        new_state = []
        for i, block in enumerate(self.blocks):
            x, block_state = block(x, None if state is None else state[i])
            new_state.append(block_state)
        logits = self.head(self.norm(x))
        return (logits, new_state) if return_state else logits

    def step(self, token_ids: torch.Tensor, state: list[BlockState] | None):
        """One token per sequence, `(B,)` -> logits `(B, vocab)` and the new state."""
        logits, state = self.forward(token_ids.view(-1, 1), state, return_state=True)
        return logits[:, 0], state
