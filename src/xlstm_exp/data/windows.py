"""Fixed-length next-token windows over a 1-D token stream."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

IGNORE_INDEX = -100  # the default ignore_index of torch.nn.functional.cross_entropy


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

    def __getitem__(self, start: int) -> tuple[Tensor, Tensor]:
        return self.windows.window_at(start)


class RandomShiftSampler(Sampler[int]):
    """Shuffled window start positions, shifted by a fresh random offset every epoch.

    The shift moves window boundaries between epochs, so each token is seen with varying left
    context. The number of windows is the same every epoch (``num_targets // T``, at least 1);
    the up to T-1 targets before the shift and any tail past the last window sit out that epoch.
    Lightning calls `set_epoch`; without it each new iteration advances the epoch itself.
    """

    def __init__(self, windows: TokenWindows, seed: int) -> None:
        self.num_targets = windows.num_targets
        self.context_length = windows.context_length
        self.seed = seed
        self.epoch = 0
        self.num_windows = max(1, self.num_targets // self.context_length)
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_windows

    def resume(self, epoch: int, windows_done: int) -> None:
        """Make the next pass over `epoch` skip the windows an interrupted run already used, so a
        resumed run continues with the very next batch instead of replaying the epoch."""
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
        order = rng.permutation(self.num_windows)
        yield from (shift + order[skip:] * self.context_length).tolist()
