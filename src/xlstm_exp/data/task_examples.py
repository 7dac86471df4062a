"""Batches of task examples (formal languages, associative recall): rows of different lengths
padded together, scored on their answers only, dealt out to the processes of a run."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from xlstm_exp.data.contract import LanguageDataModule
from xlstm_exp.data.windows import EMPTY_WINDOW, IGNORE_INDEX, EvalShardSampler

PAD = 0
# What a row of an evaluation batch is: inputs, targets (IGNORE_INDEX but at answers), group.
Row = tuple[Tensor, Tensor, int]


class TaskExamples(Dataset[Row]):
    """`size` examples, the i-th made by `make(i)` when it is asked for, and `EMPTY_WINDOW`: a
    one-token row without answers, which evens out the processes' shares of an evaluation."""

    def __init__(self, make: Callable[[int], Row], size: int) -> None:
        self.make, self.size = make, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Row:
        if index == EMPTY_WINDOW:
            return torch.tensor([PAD]), torch.tensor([IGNORE_INDEX]), 0
        if not 0 <= index < self.size:
            raise IndexError(f"example {index} out of range for {self.size} examples")
        return self.make(index)


def pad_rows(rows: Sequence[Row]) -> tuple[Tensor, Tensor, Tensor]:
    """`(inputs, targets, groups)`, the rows padded to the longest: inputs with `PAD`, targets
    with `IGNORE_INDEX` (padding after a causal model's inputs changes none of its outputs)."""
    length = max(row[0].numel() for row in rows)
    inputs = torch.full((len(rows), length), PAD, dtype=torch.long)
    targets = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    for index, (row_inputs, row_targets, _) in enumerate(rows):
        inputs[index, : row_inputs.numel()] = row_inputs
        targets[index, : row_targets.numel()] = row_targets
    return inputs, targets, torch.tensor([row[2] for row in rows], dtype=torch.long)


def pad_training_rows(rows: Sequence[Row]) -> tuple[Tensor, Tensor]:
    return pad_rows(rows)[:2]


def train_loader(examples: TaskExamples, batch_size: int, seed: int) -> DataLoader:
    """Shuffled batches; under DDP Lightning deals them out with its distributed sampler."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        examples,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=pad_training_rows,
        drop_last=True,
    )


def eval_loader(examples: TaskExamples, batch_size: int, rank: int, num_replicas: int):
    """Every example once, in order, shared among the processes without repeats."""
    sampler = EvalShardSampler(examples, num_replicas=num_replicas, rank=rank)
    return DataLoader(examples, batch_size=batch_size, sampler=sampler, collate_fn=pad_rows)


class TaskDataModule(LanguageDataModule):
    """Data of examples scored on their answers: shuffled training batches, every evaluation
    example once, shared among the processes of a run. Subclasses say what the examples are."""

    batch_size: int
    seed: int

    @abstractmethod
    def examples(self, split: str) -> TaskExamples:
        """The examples of ``train``, ``val`` or ``test``."""

    def _eval_loader(self, split: str) -> DataLoader:
        alone = self.trainer is None
        rank, replicas = (0, 1) if alone else (self.trainer.global_rank, self.trainer.world_size)
        return eval_loader(self.examples(split), self.batch_size, rank, replicas)

    def train_dataloader(self) -> DataLoader:
        return train_loader(self.examples("train"), self.batch_size, self.seed)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
