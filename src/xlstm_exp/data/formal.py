"""``data=formal``: the xLSTM paper's formal-language tasks (after Delétang et al. 2023), trained
on short inputs and tested on longer ones (length extrapolation), generated from a seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xlstm_exp.data.formal_tasks import MIN_LENGTH, formal_task
from xlstm_exp.data.task_examples import PAD, Row, TaskDataModule, TaskExamples
from xlstm_exp.data.windows import IGNORE_INDEX
from xlstm_exp.user_error import UserError

SPECIALS = ("<pad>", "<bos>", "<sep>")
BOS, SEP = 1, 2
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


class FormalLanguageDataModule(TaskDataModule):
    """Examples ``<bos> x_1 .. x_n <sep>``, scored only at ``<sep>``, whose target is the
    answer; input lengths uniform in ``train_lengths`` for training and ``eval_lengths`` for
    validation and test. Example i of a split is generated from (seed, split, i) when it is
    loaded, so nothing is stored or downloaded and every run with a seed sees the same data.
    Test accuracy is broken down by input length: buckets start at ``eval_lengths[0]`` and at
    each of ``bucket_starts`` inside ``eval_lengths``.
    """

    def __init__(
        self,
        task: str = "parity",
        train_lengths: Sequence[int] = (3, 40),
        eval_lengths: Sequence[int] = (40, 256),
        bucket_starts: Sequence[int] = (64, 128),
        train_examples: int = 20_000,
        eval_examples: int = 1_000,
        context_length: int | None = None,
        batch_size: int = 32,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        self.task = formal_task(task)
        self.lengths = {"train": tuple(train_lengths), "val": tuple(eval_lengths)}
        self.lengths["test"] = self.lengths["val"]
        for key, (low, high) in (("train_lengths", train_lengths), ("eval_lengths", eval_lengths)):
            if not MIN_LENGTH <= low <= high:
                raise UserError(
                    f"data.{key}=[{low}, {high}]: the minimum must be at least {MIN_LENGTH} "
                    "and at most the maximum"
                )
        longest = max(train_lengths[1], eval_lengths[1]) + 2  # with <bos> and <sep>
        self.context_length = context_length or longest
        if self.context_length < longest:
            raise UserError(
                f"data.context_length={context_length} is shorter than the longest example "
                f"({longest} tokens: data.eval_lengths / data.train_lengths maximum + 2)"
            )
        inside = sorted(s for s in bucket_starts if eval_lengths[0] < s <= eval_lengths[1])
        self.starts = [eval_lengths[0], *inside]
        if train_examples < batch_size:
            raise UserError(
                f"data.train_examples={train_examples} is below data.batch_size={batch_size}; "
                "raise the one or lower the other"
            )
        self.sizes = {"train": train_examples, "val": eval_examples, "test": eval_examples}
        self.batch_size, self.seed = batch_size, seed
        self.symbols = (
            *SPECIALS,
            *self.task.input_symbols,
            *(f"={a}" for a in self.task.answer_symbols),
        )

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def answer_groups(self) -> list[str]:
        ends = [start - 1 for start in self.starts[1:]] + [self.lengths["val"][1]]
        return [f"len_{start}-{end}" for start, end in zip(self.starts, ends, strict=True)]

    def chance_accuracy(self) -> float:
        return self.task.chance

    def example(self, split: str, index: int) -> Row:
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[split], index])
        low, high = self.lengths[split]
        inputs, answer = self.task.sample(rng, int(rng.integers(low, high + 1)))
        first_answer = len(SPECIALS) + len(self.task.input_symbols)
        tokens = torch.tensor([BOS, *(inputs + len(SPECIALS)).tolist(), SEP])
        targets = torch.full_like(tokens, IGNORE_INDEX)
        targets[-1] = int(answer[0]) + first_answer
        group = int(np.searchsorted(self.starts, len(inputs), side="right")) - 1
        return tokens, targets, max(group, 0)

    def examples(self, split: str) -> TaskExamples:
        return TaskExamples(lambda index: self.example(split, index), self.sizes[split])

    def tokens(self, split: str) -> torch.Tensor:
        """The split's examples one after the other, each with its answer token."""
        rows = [self.example(split, i) for i in range(self.sizes[split])]
        return torch.cat([torch.cat([inputs, targets[-1:]]) for inputs, targets, _ in rows])

    def encode(self, text: str) -> list[int]:
        ids = {symbol: index for index, symbol in enumerate(self.symbols)}
        unknown = [word for word in text.split() if word not in ids]
        if unknown:
            raise UserError(f"{unknown[:5]} are not symbols of {self.task.name}: {self.symbols}")
        return [ids[word] for word in text.split()]

    def decode(self, ids) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(np.ravel(ids))
        return " ".join(self.symbols[i] for i in values if i >= 0 and i != PAD)
