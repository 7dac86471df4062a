"""``data=wikitext2`` and ``data=wikitext103``: WikiText via Hugging Face `datasets`, tokenized
with a tokenizer trained by Hugging Face `tokenizers` (``tokenizer=bpe`` or ``tokenizer=word``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor
from torch.utils.data import DataLoader

from xlstm_exp.data.contract import EVAL_SPLITS, LanguageDataModule
from xlstm_exp.data.text_counts import as_line, text_counts
from xlstm_exp.data.token_stream import (
    PackedStream,
    StreamLoader,
    StreamPosition,
    distributed_rank,
)
from xlstm_exp.data.tokenization import (
    TokenizerSpec,
    cache_file,
    encode_lines,
    encode_text,
    load_or_train,
)
from xlstm_exp.data.wikitext_source import WikiTextSource
from xlstm_exp.data.windows import EvalShardSampler, PaddedWindows, TokenWindows
from xlstm_exp.user_error import UserError


class WikiTextDataModule(LanguageDataModule):
    """WikiText for language modelling, with numbers comparable across tokenizers.

    Batches are ``(input_ids, targets)``, both ``(B, T)`` long tensors, targets -100 where
    ignored. Training streams the train split (`token_stream`): never held in memory, split
    disjointly among ranks and DataLoader workers, shuffled blocks of ``T`` targets, resumable
    mid-epoch from `state_dict`. Validation and test score their split's whole token stream (a
    start token, then every line's tokens) in consecutive non-overlapping windows of ``T``
    targets, the last one padded: every token of the split is a target exactly once, and
    `eval_counts` turns the summed NLL into per-word perplexity and bits per byte.

    ``path`` is a Hub id or a local folder in the Hub's layout and ``name`` its config;
    ``tokenizer`` is the ``tokenizer`` config group (a dict or DictConfig, see `TokenizerSpec`).
    The tokenizer is built (or read from its cache) on first use, e.g. by `vocab_size`.
    """

    def __init__(
        self,
        path: str = "Salesforce/wikitext",
        name: str = "wikitext-103-raw-v1",
        tokenizer: Mapping | None = None,
        context_length: int = 128,
        batch_size: int = 16,
        num_workers: int = 0,
        shuffle_buffer: int = 1024,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        for key, value, least in [
            ("context_length", context_length, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("shuffle_buffer", shuffle_buffer, 1),
        ]:
            if value < least:
                raise UserError(f"data.{key}={value}; it must be at least {least}")
        self.path, self.name = str(path), str(name)
        self.tokenizer_spec = TokenizerSpec.from_config(tokenizer)
        self.context_length, self.batch_size = context_length, batch_size
        self.num_workers, self.shuffle_buffer, self.seed = num_workers, shuffle_buffer, seed
        self._source: WikiTextSource | None = None
        self._tokenizer: Tokenizer | None = None
        self._eval: dict[str, tuple[Tensor, dict[str, int]]] = {}
        self._position = StreamPosition(workers=max(1, num_workers))

    @property
    def source(self) -> WikiTextSource:
        """The dataset config, opened on first use (so errors surface where it is needed)."""
        if self._source is None:
            self._source = WikiTextSource(self.path, self.name)
        return self._source

    @property
    def tokenizer_file(self) -> Path:
        """The tokenizer's cache file; its name hashes the data and every tokenizer setting."""
        return cache_file(self.tokenizer_spec, self.source.fingerprint("train"), self.name)

    @property
    def tokenizer(self) -> Tokenizer:
        """The `tokenizers.Tokenizer`, read from its cache or trained on the train split."""
        self.setup()
        return self._tokenizer

    def _train_lines(self) -> Iterable[str]:
        rows = islice(self.source.rows("train"), self.tokenizer_spec.sample_rows)
        return (as_line(row) for row in rows)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def start_id(self) -> int:
        """The token that starts every stream (so that the first real token is a target)."""
        return self.tokenizer.token_to_id(self.tokenizer_spec.start_token)

    def setup(self, stage: str | None = None) -> None:
        """Read the tokenizer from its cache, or train and cache it (once); the splits are read
        when their loaders are made."""
        if self._tokenizer is None:
            self._tokenizer = load_or_train(
                self.tokenizer_spec, self.tokenizer_file, self._train_lines
            )

    def tokens(self, split: str) -> Tensor:
        """The whole token stream of ``val`` or ``test``: the start token, then every line's."""
        return self._eval_split(split)[0]

    def eval_counts(self, split: str) -> dict[str, int]:
        """Over the whole ``val`` or ``test`` split: ``tokens`` (targets in its loader),
        ``words`` (WikiText's convention, see `text_counts`) and UTF-8 ``bytes``."""
        tokens, counts = self._eval_split(split)
        return {"tokens": tokens.numel() - 1, "words": counts["words"], "bytes": counts["bytes"]}

    def _eval_split(self, split: str) -> tuple[Tensor, dict[str, int]]:
        if split not in EVAL_SPLITS:
            raise ValueError(f"unknown evaluation split {split!r}; expected one of {EVAL_SPLITS}")
        if split not in self._eval:
            rows = list(self.source.rows(split))  # a few MB at most
            ids = [self.start_id, *encode_lines(self.tokenizer, [as_line(row) for row in rows])]
            self._eval[split] = (torch.tensor(ids, dtype=torch.long), text_counts(rows))
        return self._eval[split]

    def train_dataloader(self) -> StreamLoader:
        stream = PackedStream(
            self.source,
            self.tokenizer,
            self.start_id,
            context_length=self.context_length,
            batch_size=self.batch_size,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
        )
        # Under a Trainer a batch counts as trained on when the loop takes it, not when fetched.
        self._position.defer = self.trainer is not None
        return StreamLoader(stream, self._position, self.num_workers)

    def _eval_loader(self, split: str) -> DataLoader:
        windows = TokenWindows(self.tokens(split), self.context_length)
        # Under DDP each rank scores every R-th window, padded with empty ones, never repeated.
        rank, world_size = distributed_rank()
        sampler = EvalShardSampler(windows, num_replicas=world_size, rank=rank)
        return DataLoader(PaddedWindows(windows), batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def on_before_batch_transfer(self, batch: object, dataloader_idx: int) -> object:
        if self.trainer is not None and self.trainer.training:
            self._position.consume_next()
        return batch

    def _stream_signature(self) -> dict:
        """Everything the order of train batches depends on besides the position."""
        return {
            "tokenizer": self.tokenizer_file.name,
            "context_length": self.context_length,
            "batch_size": self.batch_size,
            "shuffle_buffer": self.shuffle_buffer,
            "seed": self.seed,
            "num_workers": max(1, self.num_workers),
            "world_size": distributed_rank()[1],
        }

    def state_dict(self) -> dict:
        """The position in the train stream (Lightning stores it in checkpoints). Under DDP
        that is rank 0's: the ranks take their steps together, so theirs differ at most in
        which worker is ahead, near the end of an epoch where one of them has run out."""
        return {**self._position.state_dict(), "stream": self._stream_signature()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Continue from a saved position; if the stream changed since (other workers, batch
        size, data, ...), its epoch restarts from the first batch, with a warning."""
        saved, current = state_dict.get("stream", {}), self._stream_signature()
        if saved != current:
            changed = sorted(k for k in current if saved.get(k) != current[k])
            warnings.warn(
                f"the train stream differs from the checkpoint's in {changed}, so epoch "
                f"{state_dict['epoch']} restarts from its first batch instead of continuing",
                stacklevel=2,
            )
            restart = {"consumed": [0] * self._position.workers, "last": None}
            state_dict = {"epoch": state_dict["epoch"], **restart}
        self._position.load_state_dict(state_dict)

    def tokenizer_json(self) -> str:
        return self.tokenizer.to_str()

    def encode(self, text: str) -> list[int]:
        return encode_text(self.tokenizer, text)

    def decode(self, ids: Sequence[int] | Tensor | np.ndarray) -> str:
        values = np.asarray(ids.tolist() if isinstance(ids, Tensor) else ids).ravel().tolist()
        return self.tokenizer.decode([i for i in values if i >= 0], skip_special_tokens=False)
