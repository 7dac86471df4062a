"""The formal-language task generators against brute-force solvers that read the decoded string.

Each solver works on the input as text, by a method unlike the generator's: counting, literal
substring search, step-by-step simulation, Python's own `eval`, `collections.Counter`, comparing
the two halves.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from xlstm_exp.data.formal_tasks import MIN_LENGTH, TASKS, formal_task

NAMES = (
    "parity",
    "even_pairs",
    "cycle_navigation",
    "modular_arithmetic",
    "modular_arithmetic_brackets",
    "majority",
    "missing_duplicate",
)
MAX_LENGTH = 256


def solve_parity(text: str) -> str:
    return str(text.count("1") % 2)


def solve_even_pairs(text: str) -> str:
    pairs = sum(text[i : i + 2] in ("ab", "ba") for i in range(len(text) - 1))
    return "even" if pairs % 2 == 0 else "odd"


def solve_cycle_navigation(text: str) -> str:
    position = 0
    for move in text:
        position = (position + {"F": 1, "B": -1, "S": 0}[move]) % 5
    return str(position)


def solve_arithmetic(text: str) -> str:
    # Python's precedence is the usual one and its % of a negative number is non-negative.
    return str(eval(text) % 5)


def solve_majority(text: str) -> str:
    (top, top_count), (_, runner_up_count) = Counter(text).most_common(2)
    assert top_count > runner_up_count, f"tie in {text}"
    return top


def solve_missing_duplicate(text: str) -> str:
    half = len(text) // 2
    first, second = text[:half], text[half:]
    assert "_" not in first and second.count("_") == 1, text
    masked = second.index("_")
    assert first[:masked] == second[:masked] and first[masked + 1 :] == second[masked + 1 :], text
    return first[masked]


SOLVERS = {
    "parity": solve_parity,
    "even_pairs": solve_even_pairs,
    "cycle_navigation": solve_cycle_navigation,
    "modular_arithmetic": solve_arithmetic,
    "modular_arithmetic_brackets": solve_arithmetic,
    "majority": solve_majority,
    "missing_duplicate": solve_missing_duplicate,
}

# The documented input lengths: digits and operators alternate; a word and its copy.
EXPECTED_LENGTH = {
    "modular_arithmetic": lambda length: length if length % 2 else length - 1,
    "missing_duplicate": lambda length: length - length % 2,
}


def decode(symbols: tuple[str, ...], ids: np.ndarray) -> str:
    return "".join(symbols[i] for i in ids)


def answer_frequencies(name: str, seed: int, lengths: range, count: int) -> np.ndarray:
    task = TASKS[name]
    rng = np.random.default_rng(seed)
    drawn_lengths = rng.integers(lengths.start, lengths.stop, size=count)
    answers = [int(answer[0]) for _, answer in task.sample_many(rng, drawn_lengths)]
    return np.bincount(answers, minlength=len(task.answer_symbols)) / count


def test_registry_holds_exactly_the_tasks():
    assert set(TASKS) == set(NAMES)
    for name in NAMES:
        assert TASKS[name].name == name
        assert formal_task(name) is TASKS[name]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown formal task 'parity_check'") as error:
        formal_task("parity_check")
    for name in NAMES:
        assert name in str(error.value)


@pytest.mark.parametrize("name", NAMES)
def test_answers_match_brute_force(name):
    task = TASKS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    lengths = [*range(MIN_LENGTH, 41)] * 15 + [*rng.integers(41, MAX_LENGTH, size=30), MAX_LENGTH]
    for length in lengths:
        inputs, answer = task.sample(rng, int(length))
        text = decode(task.input_symbols, inputs)
        assert task.answer_symbols[answer[0]] == SOLVERS[name](text), text


@pytest.mark.parametrize("name", NAMES)
def test_alphabets_and_lengths(name):
    task = TASKS[name]
    expected_length = EXPECTED_LENGTH.get(name, lambda length: length)
    rng = np.random.default_rng(1)
    for length in range(MIN_LENGTH, MAX_LENGTH + 1):
        inputs, answer = task.sample(rng, length)
        assert np.issubdtype(inputs.dtype, np.integer) and np.issubdtype(answer.dtype, np.integer)
        assert len(inputs) == expected_length(length) == task.input_length(length)
        assert 0 <= inputs.min() and inputs.max() < len(task.input_symbols)
        assert answer.shape == (1,) and 0 <= answer[0] < len(task.answer_symbols)


@pytest.mark.parametrize("name", NAMES)
def test_shorter_than_minimum_is_refused(name):
    with pytest.raises(ValueError, match="at least 3"):
        TASKS[name].sample(np.random.default_rng(0), MIN_LENGTH - 1)


@pytest.mark.parametrize("name", NAMES)
def test_every_answer_occurs_at_training_lengths(name):
    frequencies = answer_frequencies(name, seed=2, lengths=range(3, 41), count=2000)
    uniform = 1 / len(frequencies)
    assert np.all(frequencies > uniform / 2) and np.all(frequencies < uniform * 3 / 2), frequencies


@pytest.mark.parametrize("name", NAMES)
def test_chance_is_the_best_constant_guess_at_evaluation_lengths(name):
    frequencies = answer_frequencies(name, seed=3, lengths=range(40, MAX_LENGTH + 1), count=2000)
    assert abs(frequencies.max() - TASKS[name].chance) < 0.04, frequencies


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_examples_other_seed_other_examples(name):
    task = TASKS[name]
    lengths = [*range(MIN_LENGTH, 41), MAX_LENGTH]

    def examples(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return task.sample_many(np.random.default_rng(seed), lengths)

    def same(first, second) -> bool:
        return all(
            np.array_equal(a_inputs, b_inputs) and np.array_equal(a_answer, b_answer)
            for (a_inputs, a_answer), (b_inputs, b_answer) in zip(first, second, strict=True)
        )

    rng = np.random.default_rng(4)
    one_by_one = [task.sample(rng, length) for length in lengths]
    assert same(examples(4), examples(4))
    assert same(examples(4), one_by_one)
    assert not same(examples(4), examples(5))
