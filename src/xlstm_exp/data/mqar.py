"""``data=mqar``: multi-query associative recall (zoology's MQAR), generated from a seed."""

from __future__ import annotations

import numpy as np
import torch

from xlstm_exp.data.mqar_task import check_mqar_settings, mqar_examples
from xlstm_exp.data.task_examples import TaskDataModule, TaskExamples
from xlstm_exp.user_error import UserError

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
# Rows are generated this many at a time, so that the int64 arrays of one batch of them, not of
# a whole split, are ever held at once; the split is kept in the narrowest integer type that
# holds the vocabulary.
CHUNK = 8192


class MQARDataModule(TaskDataModule):
    """Rows of ``context_length`` tokens: ``num_kv_pairs`` key-value pairs, then each key queried
    once; only the values are scored (see `mqar_task`). Zoology's defaults: vocabulary 8192,
    100,000 training and 3,000 test rows, and one pair per 16 tokens of context (the default of
    ``num_kv_pairs``). The test split may hold more pairs than training (``test_num_kv_pairs``);
    accuracy is reported per pair count (``kv_<n>``)."""

    def __init__(
        self,
        context_length: int = 64,
        num_kv_pairs: int | None = None,
        test_num_kv_pairs: int | None = None,
        vocab_size: int = 8192,
        train_examples: int = 100_000,
        eval_examples: int = 3_000,
        power_a: float = 0.01,
        batch_size: int = 64,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        num_kv_pairs = num_kv_pairs or context_length // 16  # zoology's settings keep this ratio
        self.pairs = {"train": num_kv_pairs, "val": num_kv_pairs}
        self.pairs["test"] = test_num_kv_pairs or num_kv_pairs
        for pairs in set(self.pairs.values()):
            check_mqar_settings(context_length, pairs, vocab_size)
        if train_examples < batch_size:
            raise UserError(
                f"data.train_examples={train_examples} is below data.batch_size={batch_size}; "
                "raise the one or lower the other"
            )
        self.context_length, self._vocab_size, self.power_a = context_length, vocab_size, power_a
        self.sizes = {"train": train_examples, "val": eval_examples, "test": eval_examples}
        self.batch_size, self.seed = batch_size, seed
        self._rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def answer_groups(self) -> list[str]:
        return [f"kv_{pairs}" for pairs in sorted(set(self.pairs.values()))]

    def chance_accuracy(self) -> float:
        return 1 / (self._vocab_size - self._vocab_size // 2)  # uniform over the values

    def rows(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """`(input_ids, targets)` of the whole split, generated on first use."""
        if split not in self._rows:
            fits = self._vocab_size <= torch.iinfo(torch.int16).max
            dtype = torch.int16 if fits else torch.int32
            chunks = []
            for start in range(0, self.sizes[split], CHUNK):
                rng = np.random.default_rng([self.seed, SPLIT_STREAMS[split], start])
                count = min(CHUNK, self.sizes[split] - start)
                setting = (self.context_length, self.pairs[split], self._vocab_size, self.power_a)
                rows = mqar_examples(rng, count, *setting)
                chunks.append(tuple(part.to(dtype) for part in rows))
            self._rows[split] = tuple(torch.cat(parts) for parts in zip(*chunks, strict=True))
        return self._rows[split]

    def examples(self, split: str) -> TaskExamples:
        inputs, targets = self.rows(split)
        group = self.answer_groups().index(f"kv_{self.pairs[split]}")
        return TaskExamples(lambda i: (inputs[i].long(), targets[i].long(), group), len(inputs))

    def tokens(self, split: str) -> torch.Tensor:
        return self.rows(split)[0].long().flatten()

    def encode(self, text: str) -> list[int]:
        return [int(word) for word in text.split()]

    def decode(self, ids) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(np.ravel(ids))
        return " ".join(str(int(i)) for i in values if i >= 0)
