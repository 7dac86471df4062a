"""Generators of the formal-language tasks of the xLSTM paper (Beck et al. 2024, Fig. 4).

The tasks follow Delétang et al. 2023, "Neural Networks and the Chomsky Hierarchy". An example is
an input string, as ids into the task's ``input_symbols``, and one answer token, as an id into
its ``answer_symbols``: every answer has exactly one token, so there is no answer-length field.

Input lengths. ``sample(rng, length)`` returns exactly ``length`` input symbols except where the
task's grammar forbids that length; ``FormalTask.input_length`` says what comes back:

* ``modular_arithmetic``: digits and operators alternate, so inputs have odd length; an even
  ``length`` gives ``length - 1`` symbols.
* ``missing_duplicate``: the input is two copies of a word, so it has even length; an odd
  ``length`` gives ``length - 1`` symbols (Delétang et al. pad with an extra empty token instead).

Lengths below ``MIN_LENGTH`` (3) are refused.

Chance levels (``FormalTask.chance``) are the accuracy of the best constant guess on the
evaluation lengths 40..256. They are 1 / len(answer_symbols) except for
``modular_arithmetic_brackets``, whose products make 0 the most frequent answer.

Deviations from Delétang et al.: ``majority`` is not one of their tasks (it is in the xLSTM
paper's figure), and ``missing_duplicate`` masks a position of the second copy only, where they
mask any position of either copy.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from xlstm_exp.user_error import UserError

MIN_LENGTH = 3
MODULUS = 5
CYCLE_LENGTH = 5
MAJORITY_ALPHABET = ("a", "b", "c", "d", "e")

DIGITS = tuple(str(digit) for digit in range(MODULUS))
OPERATORS = ("+", "-", "*")
PLUS, MINUS, TIMES = range(len(OPERATORS))  # indices into OPERATORS
ARITHMETIC = (operator.add, operator.sub, operator.mul)  # in the order of OPERATORS
# In the input alphabets the digits come first, so a digit's id is its value.
FLAT_SYMBOLS = DIGITS + OPERATORS
BRACKET_SYMBOLS = FLAT_SYMBOLS + ("(", ")")
OPEN, CLOSE = len(FLAT_SYMBOLS), len(FLAT_SYMBOLS) + 1

CYCLE_MOVES = ("F", "B", "S")
CYCLE_STEPS = np.array([1, -1, 0])  # in the order of CYCLE_MOVES

MASK = 2  # id of "_" in missing_duplicate's input alphabet

# 2 generates the units mod 5 (2^0..2^3 = 1, 2, 4, 3). Multiplying them by adding their
# exponents mod 4 keeps a product of up to 128 factors from overflowing int64.
LOG2_MOD5 = np.array([0, 0, 1, 3, 2])  # entry 0 is never used: zero factors are handled apart
POW2_MOD5 = np.array([1, 2, 4, 3])

ExampleGenerator = Callable[[np.random.Generator, int], tuple[np.ndarray, int]]


def exact_length(length: int) -> int:
    return length


def odd_length(length: int) -> int:
    return length if length % 2 else length - 1


def even_length(length: int) -> int:
    return length - length % 2


@dataclass(frozen=True)
class FormalTask:
    """One task: its alphabets, chance level and example generator.

    ``generate(rng, length)`` returns ``(input ids, answer id)`` for an input of
    ``input_length(length)`` symbols; use `sample`, which checks the length and wraps the answer.
    """

    name: str
    input_symbols: tuple[str, ...]
    answer_symbols: tuple[str, ...]
    chance: float
    generate: ExampleGenerator
    input_length: Callable[[int], int] = exact_length

    def sample(self, rng: np.random.Generator, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(input ids into input_symbols, answer ids into answer_symbols) of one example whose
        input has ``input_length(length)`` symbols; the answer array always has one id."""
        if length < MIN_LENGTH:
            raise UserError(
                f"{self.name}: length must be at least {MIN_LENGTH}, got {length}; raise the "
                "minimum of data.train_lengths / data.eval_lengths"
            )
        inputs, answer = self.generate(rng, length)
        return inputs, np.array([answer], dtype=np.int64)

    def sample_many(
        self, rng: np.random.Generator, lengths: Sequence[int]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """One example per requested length, the same as calling `sample` for each in turn."""
        return [self.sample(rng, length) for length in lengths]


def _parity(rng: np.random.Generator, length: int) -> tuple[np.ndarray, int]:
    bits = rng.integers(0, 2, size=length)
    return bits, int(bits.sum() % 2)


def _even_pairs(rng: np.random.Generator, length: int) -> tuple[np.ndarray, int]:
    letters = rng.integers(0, 2, size=length)
    # Each "ab" or "ba" is a change of letter, and the changes are even in number exactly when
    # the string ends on the letter it starts with.
    return letters, int(letters[0] != letters[-1])


def _cycle_navigation(rng: np.random.Generator, length: int) -> tuple[np.ndarray, int]:
    moves = rng.integers(0, len(CYCLE_MOVES), size=length)
    return moves, int(CYCLE_STEPS[moves].sum() % CYCLE_LENGTH)


def _modular_arithmetic(rng: np.random.Generator, length: int) -> tuple[np.ndarray, int]:
    length = odd_length(length)
    digits = rng.integers(0, MODULUS, size=length // 2 + 1)
    operators = rng.integers(0, len(OPERATORS), size=length // 2)
    expression = np.empty(length, dtype=np.int64)
    expression[0::2] = digits
    expression[1::2] = len(DIGITS) + operators
    return expression, _evaluate_without_brackets(digits, operators)


def _evaluate_without_brackets(digits: np.ndarray, operators: np.ndarray) -> int:
    """Value mod 5 of digits[0] operators[0] digits[1] ..., with * before + and -."""
    # As * binds tighter, the expression is a signed sum of terms, each a run of digits joined
    # by *. A term starts at the first digit and after every + or -, which gives its sign.
    operator_before = np.concatenate(([PLUS], operators))
    term_starts = np.flatnonzero(operator_before != TIMES)
    has_zero = np.logical_or.reduceat(digits == 0, term_starts)
    exponents = np.add.reduceat(LOG2_MOD5[digits], term_starts) % 4
    terms = np.where(has_zero, 0, POW2_MOD5[exponents])
    signs = np.where(operator_before[term_starts] == MINUS, -1, 1)
    return int((signs * terms).sum() % MODULUS)


def _modular_arithmetic_brackets(rng: np.random.Generator, length: int) -> tuple[np.ndarray, int]:
    # An expression of n symbols draws at most n random numbers (see _append_bracketed), so one
    # vectorised draw replaces a generator call per node.
    uniforms = iter(rng.random(length).tolist())
    tokens: list[int] = []
    value = _append_bracketed(length, uniforms, tokens)
    return np.array(tokens, dtype=np.int64), value


def _append_bracketed(length: int, uniforms: Iterator[float], tokens: list[int]) -> int:
    """Appends a random expression of exactly ``length`` symbols to ``tokens``; returns its value.

    The grammar is Delétang et al.'s: up to 4 symbols a leaf d, -d, (d) or (-d); beyond, (L op R)
    with L's length uniform in 1..length-4. The leaves' unary minus is what lets every length be
    hit exactly. A node uses 1 (leaf) or 2 (split, operator) uniforms and an operator node spends
    3 symbols, so an expression of n symbols uses at most n uniforms.
    """
    if length <= 4:
        digit = int(next(uniforms) * MODULUS)
        negated = length % 2 == 0
        leaf = [MODULUS + MINUS, digit] if negated else [digit]
        tokens.extend([OPEN, *leaf, CLOSE] if length >= 3 else leaf)
        return -digit % MODULUS if negated else digit
    left_length = 1 + int(next(uniforms) * (length - 4))
    operator_index = int(next(uniforms) * len(OPERATORS))
    tokens.append(OPEN)
    left = _append_bracketed(left_length, uniforms, tokens)
    tokens.append(len(DIGITS) + operator_index)
    right = _append_bracketed(length - 3 - left_length, uniforms, tokens)
    tokens.append(CLOSE)
    return ARITHMETIC[operator_index](left, right) % MODULUS


def _majority(rng: np.random.Generator, length: int) -> tuple[np.ndarray, int]:
    # Strings with a tie for the most frequent symbol are redrawn rather than broken by a rule:
    # a rule favouring one symbol would let a constant guess beat chance (at length 3, 48% of
    # strings have three distinct symbols). Without ties the answer is uniform by symmetry.
    while True:
        symbols = rng.integers(0, len(MAJORITY_ALPHABET), size=length)
        counts = np.bincount(symbols, minlength=len(MAJORITY_ALPHABET))
        most_frequent = np.flatnonzero(counts == counts.max())
        if most_frequent.size == 1:
            return symbols, int(most_frequent[0])


def _missing_duplicate(rng: np.random.Generator, length: int) -> tuple[np.ndarray, int]:
    word = rng.integers(0, 2, size=length // 2)
    masked_position = int(rng.integers(0, word.size))
    second_copy = word.copy()
    second_copy[masked_position] = MASK
    return np.concatenate((word, second_copy)), int(word[masked_position])


TASKS: dict[str, FormalTask] = {
    task.name: task
    for task in (
        FormalTask("parity", ("0", "1"), ("0", "1"), 1 / 2, _parity),
        FormalTask("even_pairs", ("a", "b"), ("even", "odd"), 1 / 2, _even_pairs),
        FormalTask(
            "cycle_navigation",
            CYCLE_MOVES,
            tuple(map(str, range(CYCLE_LENGTH))),
            1 / 5,
            _cycle_navigation,
        ),
        FormalTask(
            "modular_arithmetic", FLAT_SYMBOLS, DIGITS, 1 / 5, _modular_arithmetic, odd_length
        ),
        # A product is 0 as soon as one factor is, so 0 is the most frequent answer: measured
        # 0.305 +- 0.001 over 2e5 expressions of lengths uniform in 40..256 (0.29 at length 40,
        # 0.31 at 256; 0.2 at length 3, 0.27 over 3..40).
        FormalTask(
            "modular_arithmetic_brackets",
            BRACKET_SYMBOLS,
            DIGITS,
            0.305,
            _modular_arithmetic_brackets,
        ),
        FormalTask("majority", MAJORITY_ALPHABET, MAJORITY_ALPHABET, 1 / 5, _majority),
        FormalTask(
            "missing_duplicate",
            ("0", "1", "_"),
            ("0", "1"),
            1 / 2,
            _missing_duplicate,
            even_length,
        ),
    )
}


def formal_task(name: str) -> FormalTask:
    """The registered task called ``name``."""
    if name not in TASKS:
        raise UserError(
            f"unknown formal task {name!r} (data.task={name}); valid names: {', '.join(TASKS)}"
        )
    return TASKS[name]
