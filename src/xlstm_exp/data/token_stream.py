"""The streamed train split: fixed-length blocks, shuffled, batched, resumable mid-epoch.

Rows are read in groups of `ROWS_PER_GROUP` consecutive rows; group g belongs to stream
``g % S`` of the ``S = world_size * num_workers`` streams, so every rank and every DataLoader
worker reads a disjoint part of the split, of nearly equal size, and a block holds contiguous
text (a jump only between groups). Each stream is tokenized in its worker, packed into blocks
of ``T + 1`` tokens that overlap by one (every token after the stream's start token is a
target once, but for a last partial block, dropped), shuffled through a buffer of blocks
seeded by ``(seed, epoch, stream)``, and batched. Shuffling blocks rather than rows keeps each
paragraph's preceding text as its context.

The batches of an epoch are a deterministic function of their position, so resuming needs only
the position: the epoch and, per worker, how many of its batches were trained on
(`StreamPosition`). A resumed worker re-reads and re-tokenizes the part it had done, without
yielding it, and continues with the next batch.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from xlstm_exp.data.text_counts import as_line
from xlstm_exp.data.tokenization import encode_lines
from xlstm_exp.data.wikitext_source import WikiTextSource

ROWS_PER_GROUP = 64  # about one WikiText article
Item = TypeVar("Item")


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process (``(0, 1)`` without torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def shuffled(items: Iterable[Item], buffer_size: int, rng: np.random.Generator) -> Iterator[Item]:
    """``items`` in the order of a shuffle buffer of ``buffer_size`` (1: unchanged order)."""
    buffer: list[Item] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        slot = int(rng.integers(buffer_size))
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


class PackedStream(IterableDataset):
    """Batches ``(input_ids, targets, worker, index)`` of one rank's part of the train split;
    ``index`` counts the worker's batches in the epoch."""

    def __init__(
        self,
        source: WikiTextSource,
        tokenizer: Tokenizer,
        start_id: int,
        context_length: int,
        batch_size: int,
        shuffle_buffer: int,
        seed: int,
    ) -> None:
        self.source, self.tokenizer, self.start_id = source, tokenizer, start_id
        self.context_length, self.batch_size = context_length, batch_size
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.epoch, self.first_batches, self.rotation = 0, [0], 0
        self.rank, self.world_size = 0, 1

    def set_position(self, epoch: int, first_batches: list[int], rotation: int) -> None:
        """Iterate epoch ``epoch``, worker w starting at its batch ``first_batches[w]``.

        The DataLoader takes batches from its workers in turn, starting with its worker 0, which
        plays worker ``rotation`` here: the one whose turn it was when the position was saved.
        Set in the main process before the workers start, which copy it (the train loader's
        workers are not persistent, for this reason).
        """
        self.epoch, self.first_batches, self.rotation = epoch, list(first_batches), rotation
        self.rank, self.world_size = distributed_rank()

    def row_groups(self, stream: int, streams: int) -> Iterator[list[str]]:
        """The lines of the groups of rows that belong to ``stream`` of ``streams``."""
        groups = self.source.row_groups("train", ROWS_PER_GROUP, self.epoch)
        for rows in islice(groups, stream, None, streams):
            yield [as_line(row) for row in rows]

    def blocks(self, stream: int, streams: int) -> Iterator[np.ndarray]:
        """Blocks of ``T + 1`` tokens of a stream, in order, overlapping by one token."""
        step = self.context_length
        pending = np.array([self.start_id], dtype=np.int64)
        for lines in self.row_groups(stream, streams):
            ids = np.asarray(encode_lines(self.tokenizer, lines), dtype=np.int64)
            pending = np.concatenate([pending, ids])
            count = (pending.size - 1) // step
            yield from (pending[i * step : (i + 1) * step + 1] for i in range(count))
            pending = pending[count * step :]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, int, int]]:
        info = get_worker_info()
        workers = info.num_workers if info else 1
        worker = ((info.id if info else 0) + self.rotation) % workers
        if info is not None:
            # The workers are the parallelism; tokenizers' own thread pool in a forked child
            # can deadlock if the parent had used it.
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        stream, streams = self.rank * workers + worker, self.world_size * workers
        rng = np.random.default_rng([self.seed, self.epoch, stream])
        blocks = shuffled(self.blocks(stream, streams), self.shuffle_buffer, rng)
        first = self.first_batches[worker]
        index = 0
        while group := list(islice(blocks, self.batch_size)):
            if index >= first:
                batch = torch.from_numpy(np.stack(group))
                yield batch[:, :-1].contiguous(), batch[:, 1:].contiguous(), worker, index
            index += 1


class StreamPosition:
    """Where training stands in the train stream: the epoch, per DataLoader worker the number of
    its batches consumed, and the worker of the last one (whose successor comes next).

    A batch is consumed when the training loop takes it (`consume_next`, called from the data
    module's `on_before_batch_transfer`), not when the loader fetches it: Lightning fetches
    ahead. Without a Trainer (``defer=False``) a fetched batch counts as consumed at once.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.epoch = 0
        self.consumed = [0] * workers
        self.last: int | None = None
        self.exhausted = False  # the epoch's last batch has been fetched
        self.in_flight: deque[tuple[int, int]] = deque()
        self.defer = False

    def start_epoch(self) -> tuple[int, list[int], int]:
        """The epoch a new iterator runs, each worker's first batch and the worker to start
        with: the next epoch from its start once this one ran out, else the rest of this one
        (a resumed or repeated iter)."""
        if self.exhausted:
            self.epoch, self.consumed, self.last = self.epoch + 1, [0] * self.workers, None
            self.exhausted = False
        self.in_flight.clear()
        rotation = 0 if self.last is None else (self.last + 1) % self.workers
        return self.epoch, list(self.consumed), rotation

    def fetched(self, worker: int, index: int) -> None:
        self.in_flight.append((worker, index))
        if not self.defer:
            self.consume_next()

    def consume_next(self) -> None:
        if self.in_flight:
            worker, index = self.in_flight.popleft()
            self.consumed[worker], self.last = index + 1, worker

    def state_dict(self) -> dict:
        if self.exhausted and not self.in_flight:
            return {"epoch": self.epoch + 1, "consumed": [0] * self.workers, "last": None}
        return {"epoch": self.epoch, "consumed": list(self.consumed), "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.consumed = int(state["epoch"]), [int(c) for c in state["consumed"]]
        self.last, self.exhausted = state["last"], False
        self.in_flight.clear()


def all_ranks_have(has_batch: bool) -> bool:
    """Whether every rank has a next batch: ranks' parts of the split differ slightly in
    length, and a rank that ended its epoch alone would wait in the epoch-end collectives
    (checkpoint barrier, ...) while the others wait in the next step's, a hang."""
    if distributed_rank()[1] == 1:
        return has_batch
    on_gpu = torch.distributed.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else None
    flag = torch.tensor([int(has_batch)], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


class StreamLoader(DataLoader):
    """A DataLoader over a `PackedStream` that yields ``(input_ids, targets)``, reports each
    batch's origin to a `StreamPosition`, and ends the epoch on all ranks together, when the
    first of them runs out (the others' last few batches sit out that epoch)."""

    def __init__(self, dataset: PackedStream, position: StreamPosition, num_workers: int) -> None:
        # Batches come whole from the dataset; workers restart each epoch to get its position.
        super().__init__(dataset, batch_size=None, num_workers=num_workers)
        self.position = position

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.num_workers > 0:
            # Before the fork, so that tokenizers neither warns nor uses its pool in children.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.dataset.set_position(*self.position.start_epoch())
        batches = super().__iter__()
        while all_ranks_have((item := next(batches, None)) is not None):
            inputs, targets, worker, index = item
            self.position.fetched(worker, index)
            yield inputs, targets
        self.position.exhausted = True
