"""Learning-rate schedule of the xLSTM paper's recipe."""

import math


def warmup_cosine(
    step: int, warmup_steps: int, total_steps: int | None, min_ratio: float = 0.1
) -> float:
    """Factor on the peak learning rate: linear warm-up from 0 over `warmup_steps`, then cosine
    decay to `min_ratio` of the peak at `total_steps`, flat afterwards. With no `total_steps`
    (a run whose length is unknown in advance) the peak holds after the warm-up."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps is None:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
