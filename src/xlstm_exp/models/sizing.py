"""Parameter-matched models: solve the width (and, where its steps are too coarse, the
up-projection width) that gives a target parameter count."""

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from xlstm_exp.user_error import UserError

SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9}

# make(width, up_width) -> model; up_width None means the block's default.
ModelMaker = Callable[[int, int | None], nn.Module]


@dataclass(frozen=True)
class SolvedSize:
    width: int
    up_width: int | None  # None: the block's own default width
    params: int


def parse_count(value: str | int | float) -> int:
    """`47M`, `1.3B`, `250K`, `5e6` or a plain number -> an integer count."""
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([KMB]?)\s*", str(value), re.I)
    if match is None:
        raise UserError(
            f"model.target_params={value}: cannot read it as a parameter count; write e.g. "
            "47M, 1.3B or 5e6"
        )
    count = round(float(match.group(1)) * SUFFIXES[match.group(2).upper()])
    if count <= 0:
        raise UserError(
            f"model.target_params={value}: a parameter count must be positive, e.g. 47M"
        )
    return count


def count_parameters(make: ModelMaker, width: int, up_width: int | None = None) -> int:
    # Built on the meta device: shapes only, no memory and no initialisation work.
    with torch.device("meta"):
        return sum(p.numel() for p in make(width, up_width).parameters())


def closest_multiple(target: int, count: Callable[[int], int], step: int, low: int, high: int):
    """The multiple of `step` in [low, high] whose (increasing) `count` is closest to `target`,
    and that count: a bisection."""
    low, high = max(step, low // step * step), max(step, -(-high // step) * step)
    while high - low > step:
        mid = (low + high) // (2 * step) * step
        if count(mid) < target:
            low = mid
        else:
            high = mid
    return min(((v, count(v)) for v in (low, high)), key=lambda vc: abs(vc[1] - target))


def solve_size(
    target: int,
    make: ModelMaker,
    multiple: int,
    up_multiple: int,
    default_up: Callable[[int], int],
    tolerance: float = 0.02,
) -> SolvedSize:
    """The model size whose parameter count is within `tolerance` of `target`.

    First the multiple of `multiple` for the width, with the block's default up-projection;
    where the count jumps over the target between two widths (a large vocabulary, coarse head
    steps), the up-projection width (a multiple of `up_multiple`, the second knob) closes the
    gap at one of the neighbouring widths, staying as close to the default proportion as it
    can: within half to twice the default."""
    high = multiple
    while count_parameters(make, high) < target:
        high *= 2
    width, count = closest_multiple(
        target, lambda w: count_parameters(make, w), multiple, high // 2, high
    )
    if abs(count - target) <= tolerance * target:
        return SolvedSize(width, None, count)
    candidates = []
    for w in {max(multiple, width + k * multiple) for k in (-2, -1, 0, 1, 2)}:
        default = default_up(w)
        up, up_count = closest_multiple(
            target,
            lambda u, w=w: count_parameters(make, w, u),
            up_multiple,
            default // 2,
            2 * default,
        )
        if abs(up_count - target) <= tolerance * target:
            candidates.append((abs(up / default - 1), SolvedSize(w, up, up_count)))
    if not candidates:
        smallest = count_parameters(make, multiple, up_multiple)
        hint = (
            f"the smallest model has {smallest:,}; lower num_layers or the vocabulary size"
            if target < 2 * smallest
            else "each width step moves the count too far (the vocabulary's embedding and head "
            "grow with the width): tie the embeddings, use a smaller vocabulary or more layers"
        )
        raise UserError(
            f"model.target_params={target:,}: no width reaches it within {tolerance:.0%}: width "
            f"{width} gives {count:,}, and no up-projection width at neighbouring widths closes "
            f"the gap; {hint}"
        )
    return min(candidates, key=lambda c: c[0])[1]
