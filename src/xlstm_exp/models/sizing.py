"""Parameter-matched models: solve the width that gives a target parameter count."""

import re
from collections.abc import Callable

import torch
from torch import nn

SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9}


def parse_count(value: str | int | float) -> int:
    """`47M`, `1.3B`, `250K`, `5e6` or a plain number -> an integer count."""
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([KMB]?)\s*", str(value), re.I)
    if match is None:
        raise ValueError(f"cannot read {value!r} as a parameter count (e.g. 47M, 1.3B, 5e6)")
    return round(float(match.group(1)) * SUFFIXES[match.group(2).upper()])


def count_parameters(make: Callable[[int], nn.Module], width: int) -> int:
    # Built on the meta device: shapes only, no memory and no initialisation work.
    with torch.device("meta"):
        return sum(p.numel() for p in make(width).parameters())


def solve_width(
    target: int, make: Callable[[int], nn.Module], multiple: int, tolerance: float = 0.02
) -> tuple[int, int]:
    """The multiple of `multiple` whose model (`make(width)`) has the parameter count closest to
    `target`, and that count; raises if it is not within `tolerance` of the target. The count
    grows with the width, so a doubling search then a bisection find it."""
    low, high = multiple, multiple
    while count_parameters(make, high) < target:
        low, high = high, high * 2
    while high - low > multiple:
        mid = (low + high) // (2 * multiple) * multiple
        if count_parameters(make, mid) < target:
            low = mid
        else:
            high = mid
    width, count = min(
        ((w, count_parameters(make, w)) for w in (low, high)), key=lambda wc: abs(wc[1] - target)
    )
    if abs(count - target) > tolerance * target:
        raise ValueError(
            f"no width reaches {target:,} parameters within {tolerance:.0%}: width {width} gives "
            f"{count:,}; change num_layers or the vocabulary size"
        )
    return width, count
