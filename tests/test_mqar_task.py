"""MQAR rows: brute-force checks of every row's content, the power-law placement, the filler."""

from __future__ import annotations

import numpy as np
import pytest

from xlstm_exp.data.mqar_task import ZOOLOGY_SETTINGS, check_mqar_settings, mqar_examples

IGNORE = -100


def generate(seed: int, rows: int, length: int, pairs: int, vocab: int = 8192, power_a=0.01):
    input_ids, targets = mqar_examples(
        np.random.default_rng(seed), rows, length, pairs, vocab_size=vocab, power_a=power_a
    )
    return input_ids.numpy(), targets.numpy()


def query_slots(targets: np.ndarray, pairs: int) -> np.ndarray:
    """Each row's query slots in order of position; slot g sits at position 2 * pairs + 2g."""
    rows, cols = np.nonzero(targets != IGNORE)
    assert np.array_equal(np.bincount(rows, minlength=len(targets)), [pairs] * len(targets))
    return (cols.reshape(-1, pairs) - 2 * pairs) // 2


# Zoology's settings, plus a vocabulary that has exactly as many keys as pairs (every key in
# every row, filler only from the rest) and an odd length (the last token is filler).
BRUTE_FORCE_CASES = [(length, pairs, 8192) for length, pairs in ZOOLOGY_SETTINGS] + [
    (20, 4, 10),
    (17, 4, 8192),
]


@pytest.mark.parametrize(("length", "pairs", "vocab"), BRUTE_FORCE_CASES)
def test_every_row_passes_a_brute_force_check(length: int, pairs: int, vocab: int) -> None:
    input_ids, targets = generate(0, 300, length, pairs, vocab)
    assert input_ids.shape == targets.shape == (300, length)
    assert input_ids.dtype == targets.dtype == np.int64
    half = vocab // 2
    for row, row_targets in zip(input_ids.tolist(), targets.tolist(), strict=True):
        assert all(0 <= token < vocab for token in row)
        keys, values = row[0 : 2 * pairs : 2], row[1 : 2 * pairs : 2]
        assert all(1 <= key < half for key in keys) and len(set(keys)) == pairs
        assert all(half <= value < vocab for value in values) and len(set(values)) == pairs
        value_of = dict(zip(keys, values, strict=True))

        scored = [t for t, target in enumerate(row_targets) if target != IGNORE]
        assert len(scored) == pairs
        assert min(scored) >= 2 * pairs
        assert all((t - 2 * pairs) % 2 == 0 for t in scored)
        for t in scored:
            assert row[t] in value_of and row_targets[t] == value_of[row[t]]
        assert sorted(row[t] for t in scored) == sorted(keys)
        # After the prefix a key never shows up unscored: filler avoids the row's keys.
        key_positions = [t for t in range(2 * pairs, length) if row[t] in value_of]
        assert key_positions == scored


def test_first_key_slot_follows_the_power_law_exactly() -> None:
    # Zoology gives the first weighted draw to the first key, so its slot has the weights'
    # distribution itself; later keys get flatter ones.
    length, pairs, rows, power_a = 64, 4, 20_000, 0.01
    input_ids, targets = generate(1, rows, length, pairs)
    first_key = input_ids[:, :1]
    position = np.argmax(input_ids[:, 2 * pairs :] == first_key, axis=1) + 2 * pairs
    assert np.all(targets[np.arange(rows), position] == input_ids[:, 1])
    num_slots = (length - 2 * pairs) // 2
    expected = np.arange(1, num_slots + 1) ** (power_a - 1.0)
    expected /= expected.sum()
    observed = np.bincount((position - 2 * pairs) // 2, minlength=num_slots) / rows
    assert observed.size == num_slots
    tolerance = 5 * np.sqrt(expected * (1 - expected) / rows) + 1e-3
    assert np.all(np.abs(observed - expected) < tolerance)


@pytest.mark.parametrize(("length", "pairs"), ZOOLOGY_SETTINGS)
def test_short_gaps_are_much_more_frequent_than_long_ones(length: int, pairs: int) -> None:
    num_slots = (length - 2 * pairs) // 2
    slots = query_slots(generate(2, 2000, length, pairs)[1], pairs)
    # Measured for zoology's placement at power_a=0.01: ~0.80 of queries in the first half of the
    # query section, ~0.08 in the last quarter, median slot ~num_kv_pairs; uniform gives 0.5, 0.25.
    assert np.mean(slots < num_slots / 2) > 0.7
    assert np.mean(slots >= 3 * num_slots / 4) < 0.12
    assert np.median(slots) < num_slots / 3
    uniform = query_slots(generate(2, 2000, length, pairs, power_a=1.0)[1], pairs)
    assert abs(np.mean(uniform < num_slots / 2) - 0.5) < 0.03
    assert abs(np.mean(uniform >= 3 * num_slots / 4) - 0.25) < 0.03


def filler_tokens(input_ids: np.ndarray, targets: np.ndarray, pairs: int) -> np.ndarray:
    return input_ids[:, 2 * pairs :][targets[:, 2 * pairs :] == IGNORE]


def test_filler_is_uniform_over_the_vocabulary_minus_the_row_keys() -> None:
    # vocab 10, 4 pairs: the keys are always 1..4, so filler is uniform over {0, 5, ..., 9}.
    input_ids, targets = generate(3, 2000, 64, 4, vocab=10)
    counts = np.bincount(filler_tokens(input_ids, targets, 4), minlength=10)
    assert np.all(counts[1:5] == 0)
    share = counts[[0, 5, 6, 7, 8, 9]] / counts.sum()
    assert np.all(np.abs(share - 1 / 6) < 0.005)
    # A large vocabulary: filler covers both halves in proportion to their free tokens.
    input_ids, targets = generate(3, 500, 256, 16)
    filler = filler_tokens(input_ids, targets, 16)
    assert abs(np.mean(filler < 4096) - (4096 - 16) / (8192 - 16)) < 0.005
    assert filler.min() == 0 and filler.max() == 8191


def test_prefix_order_is_uniformly_random() -> None:
    # vocab 10: keys 1..4 all appear, values are 4 of 5..9; each goes to each pair equally often.
    input_ids = generate(4, 4000, 16, 4, vocab=10)[0]
    for prefix_tokens, tokens in (
        (input_ids[:, 0:8:2], range(1, 5)),
        (input_ids[:, 1:8:2], range(5, 10)),
    ):
        for pair in range(4):
            share = np.bincount(prefix_tokens[:, pair], minlength=10)[list(tokens)] / 4000
            assert np.all(np.abs(share - 1 / len(tokens)) < 0.03)


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    first, again, other = (generate(seed, 50, 128, 8) for seed in (5, 5, 6))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize(
    ("length", "pairs", "vocab", "message"),
    [
        (64, 17, 8192, r"data\.num_kv_pairs=17 .*data\.context_length=64.* at most 16 pairs"),
        (64, 0, 8192, r"data\.num_kv_pairs=0 must be at least 1"),
        (64, 4, 8, r"data\.num_kv_pairs=4 .*data\.vocab_size=8 offers 3 .*vocab_size >= 10"),
    ],
)
def test_settings_that_do_not_fit_name_the_config_keys(length, pairs, vocab, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_mqar_settings(length, pairs, vocab)
    with pytest.raises(ValueError, match=message):
        mqar_examples(np.random.default_rng(0), 1, length, pairs, vocab_size=vocab)


@pytest.mark.parametrize(("length", "pairs", "vocab"), [(64, 16, 8192), (16, 4, 10)])
def test_settings_at_the_limits_generate(length: int, pairs: int, vocab: int) -> None:
    check_mqar_settings(length, pairs, vocab)
    slots = query_slots(generate(4, 20, length, pairs, vocab)[1], pairs)
    # With 4 * pairs == length every slot holds a query.
    assert np.array_equal(np.sort(slots, axis=1), np.tile(np.arange(pairs), (20, 1)))
