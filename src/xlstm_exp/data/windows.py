"""Fixed-length next-token windows over a 1-D token stream, and the samplers that deal them out to
the processes of a distributed run."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

IGNORE_INDEX = -100  # the default ignore_index of torch.nn.functional.cross_entropy
# A sampler index for a window without targets: it adds nothing to a summed loss or token count.
EMPTY_WINDOW = -1


class TokenWindows(Dataset[tuple[Tensor, Tensor]]):
    """Non-overlapping windows: item i predicts ``tokens[i*T+1 : (i+1)*T+1]`` from the T before.

    Every token but the first is a target exactly once. The final window is padded: inputs 0
    and targets ``IGNORE_INDEX`` past the end of the stream.
    """

    def __init__(self, tokens: Tensor, context_length: int) -> None:
        if tokens.ndim != 1 or tokens.numel() < 2:
            raise ValueError("tokens must be a 1-D tensor with at least two tokens")
        if context_length < 1:
            raise ValueError("context_length must be positive")
        self.tokens = tokens.long()
        self.context_length = context_length
        self.num_targets = tokens.numel() - 1

    def __len__(self) -> int:
        return -(-self.num_targets // self.context_length)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        # IndexError (not a silent empty window) also ends plain iteration over the dataset.
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        return self.window_at(index * self.context_length)

    def window_at(self, start: int) -> tuple[Tensor, Tensor]:
        """The window whose first input is ``tokens[start]``, padded past the stream's end."""
        if not 0 <= start < self.num_targets:
            raise IndexError(f"start {start} leaves no target in a stream of {self.num_targets}")
        valid = min(self.context_length, self.num_targets - start)
        inputs = torch.zeros(self.context_length, dtype=torch.long)
        targets = torch.full((self.context_length,), IGNORE_INDEX, dtype=torch.long)
        inputs[:valid] = self.tokens[start : start + valid]
        targets[:valid] = self.tokens[start + 1 : start + 1 + valid]
        return inputs, targets


class WindowsByStart(Dataset[tuple[Tensor, Tensor]]):
    """``windows`` indexed by token start position instead of window number.

    The index carries the start, so a start chosen in the main process (by
    `RandomShiftSampler`) reaches dataloader workers unchanged.
    """

    def __init__(self, windows: TokenWindows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        # Every start position that leaves a target: what a sampler enumerating the dataset in
        # order (Lightning's overfit_batches) may ask for.
        return self.windows.num_targets

    def __getitem__(self, start: int) -> tuple[Tensor, Tensor]:
        return self.windows.window_at(start)


class PaddedWindows(Dataset[tuple[Tensor, Tensor]]):
    """``windows`` by window number, and `EMPTY_WINDOW`: inputs 0, every target ignored."""

    def __init__(self, windows: TokenWindows) -> None:
        self.windows = windows

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if index == EMPTY_WINDOW:
            length = self.windows.context_length
            return torch.zeros(length, dtype=torch.long), torch.full((length,), IGNORE_INDEX)
        return self.windows[index]


# Both samplers below are DistributedSamplers so that Lightning uses them as they are under DDP or
# FSDP: it wraps any other sampler in a DistributedSampler of its own, which would repeat windows
# to even out the ranks and split a resumed epoch differently from the interrupted one.


class EvalShardSampler(DistributedSampler[int]):
    """One rank's share of an evaluation split, in order: window numbers r, r + R, r + 2R, ... of R
    ranks; with one process, every window in order.

    Every rank gets the same number of windows, because a rank with a batch more than the others
    would wait forever in the collective of its extra forward (FSDP gathers the parameters in each
    one). A share that comes up short ends with `EMPTY_WINDOW` rather than a repeated window, so
    every target of the split still counts exactly once in the summed loss.
    """

    def __init__(self, windows: Sized, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(windows, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_windows = len(windows)

    def __iter__(self) -> Iterator[int]:
        for index in range(self.rank, self.total_size, self.num_replicas):
            yield index if index < self.num_windows else EMPTY_WINDOW


class RandomShiftSampler(DistributedSampler[int]):
    """Shuffled window start positions, shifted by a fresh random offset every epoch.

    The shift moves window boundaries between epochs, so each token is seen with varying left
    context. The number of windows is the same every epoch (``num_targets // T``, at least 1);
    the up to T-1 targets before the shift and any tail past the last window sit out that epoch.
    Lightning calls `set_epoch`; without it each new iteration advances the epoch itself.

    With R ranks (``num_replicas``), every rank draws the same shift and order and takes every
    R-th window of it starting at its ``rank``: the ranks' shares are disjoint, and their k-th
    batches of b windows together are the k-th batch of R*b windows of a single process. Each
    rank gets ``num_windows // R`` windows, so all take the same number of steps (the up to R-1
    windows left over sit out that epoch).
    """

    def __init__(
        self, windows: TokenWindows, seed: int, num_replicas: int = 1, rank: int = 0
    ) -> None:
        super().__init__(windows, num_replicas=num_replicas, rank=rank, seed=seed, drop_last=True)
        self.num_targets = windows.num_targets
        self.context_length = windows.context_length
        self.num_windows = max(1, self.num_targets // self.context_length)
        if self.num_windows < num_replicas:
            raise ValueError(
                f"{self.num_windows} training windows cannot be shared by {num_replicas} ranks; "
                "use more training tokens or a shorter context"
            )
        self.num_samples = self.num_windows // num_replicas
        self.total_size = self.num_samples * num_replicas
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.num_samples

    def resume(self, epoch: int, windows_done: int) -> None:
        """Make the next pass over `epoch` skip the windows an interrupted run already used (on
        this rank), so a resumed run continues with the very next batch instead of replaying the
        epoch."""
        self._resume = (epoch, windows_done)

    def __iter__(self) -> Iterator[int]:
        # Seeding with the pair keeps (seed, epoch) streams distinct, unlike seed + epoch.
        rng = np.random.default_rng((self.seed, self.epoch))
        skip = self._resume[1] if self._resume and self._resume[0] == self.epoch else 0
        self._resume = None
        self.epoch += 1
        # The largest shift that still leaves a target in the last window.
        last_offset = (self.num_windows - 1) * self.context_length
        max_shift = min(self.context_length - 1, self.num_targets - 1 - last_offset)
        shift = int(rng.integers(max_shift + 1))
        order = rng.permutation(self.num_windows)[self.rank : self.total_size : self.num_replicas]
        yield from (shift + order[skip:] * self.context_length).tolist()
