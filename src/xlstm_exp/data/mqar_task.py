"""Multi-query associative recall (MQAR) examples in the format of HazyResearch/zoology.

Arora, Eyuboglu et al. 2023, "Zoology: Measuring and Improving Recall in Efficient Language
Models". A row of ``L`` tokens with ``K`` key-value pairs reads (``f`` is filler)::

    k1 v1 k2 v2 ... kK vK | f f k2 f f f k1 f ...   input_ids
                          | . . v2 . . . v1 . ...   targets (. is -100)

The first ``2K`` tokens are the pairs. The rest is the query section: ``S = (L - 2K) // 2`` slots,
slot ``g`` at position ``2K + 2g``. Each key appears in exactly one slot; the target at that
position is its value, and every other target is -100. As in zoology, the value never follows the
query key in the input (the next token is filler), so only recall is scored.

Tokens, as in zoology: keys are drawn without replacement from ``1 .. V//2 - 1``, values from
``V//2 .. V - 1``. Token 0 is never a key or value (zoology marks empty positions with 0 before it
fills them); it can appear as filler. Filler is uniform over the vocabulary minus the row's keys.

Placement, as in zoology: the K slots are weighted draws without replacement, weight of slot ``g``
``(g + 1) ** (power_a - 1)`` (``power_a = 1`` is uniform), and the i-th draw goes to the i-th key of
the prefix. The power law is thus over the distance from the start of the query section, not from
the key's first mention; the first key's slot follows the weights exactly, later keys' slots are
flatter because the popular slots are taken.

Zoology's experiments use 100,000 training and 3,000 test rows per setting (test seed = train
seed + 10); callers choose ``num_examples`` and the generator.

Deviations from zoology:

- Zoology's filler is uniform over the whole vocabulary, so a row's own keys appear unscored in
  the query section (about ``(L - 3K) * K / V`` times a row: 0.4 at L=256, K=16, V=8192). Here
  filler skips the row's keys, so every key occurrence after the prefix is a scored query.
- Randomness comes from one numpy Generator instead of the global numpy and torch generators;
  streams differ from zoology's for a given seed, the distributions do not. Sequential weighted
  draws without replacement equal an exponential race (smallest ``Exp(1) / weight`` first).
- Zoology asserts an even ``L`` and ``V > L``; the format needs neither.
"""

from __future__ import annotations

import numpy as np
import torch

from xlstm_exp.data.windows import IGNORE_INDEX
from xlstm_exp.user_error import UserError

# (context_length, num_kv_pairs) of zoology's MQAR settings used here.
ZOOLOGY_SETTINGS = ((64, 4), (128, 8), (256, 16))


def check_mqar_settings(context_length: int, num_kv_pairs: int, vocab_size: int) -> None:
    """Raise a UserError, naming the config keys, when the pairs do not fit."""
    if num_kv_pairs < 1:
        raise UserError(f"data.num_kv_pairs={num_kv_pairs} must be at least 1")
    if 4 * num_kv_pairs > context_length:
        raise UserError(
            f"data.num_kv_pairs={num_kv_pairs} does not fit data.context_length={context_length}: "
            "the pairs take 2 tokens each and their queries a 2-token slot each, so "
            f"4 * num_kv_pairs <= context_length; context_length={context_length} fits at most "
            f"{context_length // 4} pairs, {num_kv_pairs} pairs need "
            f"context_length >= {4 * num_kv_pairs}"
        )
    num_keys = max(vocab_size // 2 - 1, 0)
    if num_kv_pairs > num_keys:
        raise UserError(
            f"data.num_kv_pairs={num_kv_pairs} needs as many distinct keys, but "
            f"data.vocab_size={vocab_size} offers {num_keys} (keys are tokens 1 .. vocab_size // 2 "
            f"- 1, values the upper half); use num_kv_pairs <= {num_keys} or "
            f"vocab_size >= {2 * num_kv_pairs + 2}"
        )


def _distinct(rng: np.random.Generator, low: int, high: int, rows: int, k: int) -> np.ndarray:
    """``k`` distinct integers of ``[low, high)`` per row, in random order.

    Floyd's algorithm, one column for all rows at a time: k draws per row however small the range,
    where rejecting rows with repeats could loop for long.
    """
    n = high - low
    picks = np.empty((rows, k), dtype=np.int64)
    for i, j in enumerate(range(n - k, n)):
        draw = rng.integers(0, j + 1, size=rows)
        taken = (picks[:, :i] == draw[:, None]).any(axis=1)
        picks[:, i] = np.where(taken, j, draw)
    # Floyd's sets are uniform but late columns favour large numbers; the order must not.
    return rng.permuted(picks, axis=1) + low


def mqar_examples(
    rng: np.random.Generator,
    num_examples: int,
    context_length: int,
    num_kv_pairs: int,
    vocab_size: int = 8192,
    power_a: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, targets)``, both ``(num_examples, context_length)`` int64.

    Targets are -100 except at the ``num_kv_pairs`` query positions of each row, where they hold
    the queried key's value (see the module docstring for the layout).
    """
    check_mqar_settings(context_length, num_kv_pairs, vocab_size)
    rows, k = num_examples, num_kv_pairs
    half = vocab_size // 2
    keys = _distinct(rng, 1, half, rows, k)
    values = _distinct(rng, half, vocab_size, rows, k)

    num_slots = (context_length - 2 * k) // 2
    weights = np.arange(1, num_slots + 1, dtype=np.float64) ** (power_a - 1)
    race = rng.exponential(size=(rows, num_slots)) / weights
    slots = np.argsort(race, axis=1)[:, :k]
    query_pos = 2 * k + 2 * slots

    # Uniform over the vocabulary minus the row's keys: draw among vocab_size - k tokens, then step
    # past each key (in ascending order) at or below the draw. int32 halves the time of the passes.
    filler = rng.integers(0, vocab_size - k, size=(rows, context_length), dtype=np.int32)
    for key in np.sort(keys, axis=1).astype(np.int32).T:
        filler += filler >= key[:, None]
    input_ids = filler.astype(np.int64)
    input_ids[:, 0 : 2 * k : 2] = keys
    input_ids[:, 1 : 2 * k : 2] = values
    np.put_along_axis(input_ids, query_pos, keys, axis=1)

    targets = np.full((rows, context_length), IGNORE_INDEX, dtype=np.int64)
    np.put_along_axis(targets, query_pos, values, axis=1)
    return torch.from_numpy(input_ids), torch.from_numpy(targets)
