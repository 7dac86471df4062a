"""`xLSTM(...)`: the constructor users know from the xLSTM blog posts, on top of LanguageModel."""

import torch
from torch import nn

from xlstm_exp.models.language_model import LanguageModel

CELLS = {"slstm": "slstm", "mlstm": "mlstm", "lstm": "lstm"}


class xLSTM(nn.Module):  # noqa: N801 - the name users import
    """A stack of xLSTM (or LSTM) cells in pre-up-projection residual blocks.

    Args:
        vocab_size: number of token ids.
        embedding_size: width of the token embeddings and of the residual stream between blocks.
        hidden_size: width of the cells inside each block (the block up-projects to it); a
            multiple of 16 gives 4 heads, otherwise the cells use one head.
        num_layers: cells per block group, each in its own residual block.
        num_blocks: block groups; the model has `num_blocks * num_layers` residual blocks.
        dropout: dropout on the embeddings and on every residual branch.
        bidirectional: False gives a causal language model. True adds a second stack that reads
            the sequence backwards and sums both stacks' logits: a non-causal encoder for tagging
            or classification, which must not be trained as a language model.
        lstm_type: "slstm", "mlstm" or "lstm" (any case).

    `model(input_ids)` maps `(B, S)` token ids to logits `(B, S, vocab_size)`.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        num_blocks: int,
        dropout: float = 0.0,
        bidirectional: bool = False,
        lstm_type: str = "slstm",
    ):
        super().__init__()
        cell = CELLS.get(lstm_type.lower())
        if cell is None:
            raise ValueError(
                f"lstm_type must be one of {sorted(CELLS)} (any case), not {lstm_type!r}"
            )
        self.bidirectional = bidirectional
        num_heads = 4 if hidden_size % 16 == 0 else 1

        def stack() -> LanguageModel:
            return LanguageModel(
                vocab_size,
                d_model=embedding_size,
                num_layers=num_layers * num_blocks,
                num_heads=num_heads,
                dropout=dropout,
                mixer=cell,
                block={"kind": "pre", "pre": {"proj_factor": hidden_size / embedding_size}},
            )

        self.forward_stack = stack()
        self.backward_stack = stack() if bidirectional else None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        logits = self.forward_stack(input_ids)
        if self.backward_stack is not None:
            logits = logits + self.backward_stack(input_ids.flip(1)).flip(1)
        return logits
