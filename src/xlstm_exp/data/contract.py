"""What a data module is: everything training, evaluation and generation read from one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch

# The splits that are scored, each as one token stream.
EVAL_SPLITS = ("val", "test")


class LanguageDataModule(L.LightningDataModule, ABC):
    """A LightningDataModule of token windows for next-token prediction.

    Its loaders yield ``(input_ids, targets)`` batches, both ``(B, T)`` long tensors with
    ``T <= context_length``, targets -100 where nothing is scored; with `answer_groups`, eval
    batches carry a third element, each sequence's group index. Subclass it, implement the
    abstract members, and point a `conf/data/<name>.yaml` at the subclass with `_target_`.
    """

    context_length: int
    batch_size: int

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Token ids run from 0 to `vocab_size - 1`."""

    @abstractmethod
    def tokens(self, split: str) -> torch.Tensor:
        """The whole ``val`` or ``test`` split as one 1-D stream of token ids (what
        `eval.stateful` scores)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of a text (a generation prompt)."""

    @abstractmethod
    def decode(self, ids: Sequence[int] | torch.Tensor | np.ndarray) -> str:
        """The text of token ids; negative ids (padding) are skipped."""

    def eval_counts(self, split: str) -> dict[str, int] | None:
        """``tokens`` (targets in the split's loader), ``words`` and UTF-8 ``bytes`` of the
        split's text, which turn a summed NLL into per-word perplexity and bits per byte (the
        numbers that compare across tokenizers); None where the data has no such text."""
        return None

    def reference_ppl(self, split: str) -> dict[str, float]:
        """Perplexities to read a model's against, by name (e.g. ``floor_ppl``, the data's
        true entropy rate); reported as ``<split>/<name>``. None known: empty."""
        return {}

    def chance_accuracy(self) -> float | None:
        """For data whose scored targets are answers (a task, not free text): the accuracy of
        guessing them. Given, runs report answer accuracy (`acc`, `seq_acc`, and `norm_acc`,
        the accuracy above chance scaled to 1); None for language-modelling data."""
        return None

    def answer_groups(self) -> list[str]:
        """Names of the groups whose accuracy is reported apart (e.g. input-length buckets, as
        `<split>/norm_acc/<name>`); when there are any, eval batches carry each sequence's group
        index as a third element."""
        return []

    def tokenizer_json(self) -> str | None:
        """The tokenizer as a Hugging Face `tokenizers` JSON string, which checkpoints carry so
        that generation needs no data files; None when `encode` needs none (built-in data)."""
        return None
