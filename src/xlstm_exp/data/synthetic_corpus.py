"""A seeded, language-like token process whose true entropy rate is known exactly.

Vocabulary ids: 0 ``<eod>``, 1 ``<ref>``, then K names, then W content words (id order = Zipf
rank). The stream is a concatenation of iid documents, each opened by ``<eod>``:

* after ``<eod>``: the document's name, uniform over the K names;
* after ``<ref>``: the document's name again (the long-range dependency: free for a model that
  remembers the document's opening, log K nats for one that forgot);
* after a name or word: ``<eod>`` with prob. ``end_prob``, ``<ref>`` with prob. ``ref_prob``,
  else a word from ``lam * sparse_w + (1 - lam) * zipf`` (after a name: ``zipf`` alone), where
  ``sparse_w`` spreads its mass over S successors of w with a fixed 1/rank profile.

The next-token distribution is a function of the visible past, and its entropy depends only on
the previous token, so the exact entropy of every emitted token is a table lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

EOD = 0
REF = 1
FIRST_NAME = 2

_SYLLABLES = [onset + vowel for onset in "bdfgklmnprstvz" for vowel in "aeiou"]


def _plogp(p: np.ndarray | float) -> np.ndarray:
    """Elementwise ``p * log(p)`` with the convention ``0 * log(0) = 0``."""
    p = np.asarray(p, dtype=np.float64)
    return p * np.log(np.where(p > 0, p, 1.0))


def _inverse_cdf(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices distributed as the weights whose running sum is ``cumulative``; u uniform [0, 1)."""
    # The clip guards against u * total rounding up to total.
    index = np.searchsorted(cumulative, u * cumulative[-1], side="right")
    return np.minimum(index, len(cumulative) - 1)


def _pseudo_words(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct syllable strings, shortest first (frequent words are short)."""
    words: list[str] = []
    length = 1
    while len(words) < count:
        total = len(_SYLLABLES) ** length
        for index in rng.choice(total, size=min(total, count - len(words)), replace=False):
            syllables = []
            for _ in range(length):
                index, digit = divmod(int(index), len(_SYLLABLES))
                syllables.append(_SYLLABLES[digit])
            words.append("".join(syllables))
        length += 1
    return words


def split_documents(tokens: np.ndarray) -> list[np.ndarray]:
    """Split a stream at its ``<eod>`` tokens; each document keeps its opening ``<eod>``."""
    tokens = np.asarray(tokens)
    return np.split(tokens, np.flatnonzero(tokens == EOD)[1:])


@dataclass(frozen=True)
class SyntheticProcess:
    """Parameters and seed of the process; ``seed`` fixes its structure (successors, spellings)."""

    num_words: int = 4000
    num_names: int = 64
    num_successors: int = 8
    successor_weight: float = 0.7
    zipf_exponent: float = 1.1
    ref_prob: float = 0.02
    end_prob: float = 1 / 300
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.num_words < 1 or self.num_names < 1:
            raise ValueError("need at least one word and one name")
        if not 1 <= self.num_successors <= self.num_words:
            raise ValueError("num_successors must lie in [1, num_words]")
        if not 0.0 <= self.successor_weight <= 1.0:
            raise ValueError("successor_weight must lie in [0, 1]")
        if self.end_prob <= 0.0 or self.ref_prob < 0.0 or self.end_prob + self.ref_prob >= 1.0:
            raise ValueError("need end_prob > 0, ref_prob >= 0 and end_prob + ref_prob < 1")

    @property
    def vocab_size(self) -> int:
        return FIRST_NAME + self.num_names + self.num_words

    @property
    def first_word(self) -> int:
        return FIRST_NAME + self.num_names

    @property
    def word_prob(self) -> float:
        """Probability that a name or word is followed by a content word."""
        return 1.0 - self.end_prob - self.ref_prob

    @property
    def mean_document_length(self) -> float:
        """Expected tokens per document including its ``<eod>``: a ``<ref>`` step emits two."""
        return 2.0 + (self.word_prob + 2.0 * self.ref_prob) / self.end_prob

    def _rng(self, *key: int) -> np.random.Generator:
        # Distinct spawn keys give independent streams from one seed: 0 structure, 1 vocabulary,
        # (2, stream) corpus samples.
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    @cached_property
    def zipf(self) -> np.ndarray:
        """Unigram word distribution, ``p(rank r) ∝ r ** -zipf_exponent``, shape (W,)."""
        weights = np.arange(1, self.num_words + 1, dtype=np.float64) ** -self.zipf_exponent
        return weights / weights.sum()

    @cached_property
    def slot_profile(self) -> np.ndarray:
        """Share of the sparse mass given to each successor slot, ∝ 1 / slot rank, shape (S,)."""
        weights = 1.0 / np.arange(1, self.num_successors + 1, dtype=np.float64)
        return weights / weights.sum()

    @cached_property
    def successors(self) -> np.ndarray:
        """Word indices (0-based among words) of each word's S distinct successors, shape (W, S).

        Drawn without replacement with Zipf weights (exponential race), so frequent words are
        frequent successors and the stream's word frequencies stay Zipf-like; slot 0 holds the
        race winner, the strongest successor.
        """
        rng = self._rng(0)
        size, k = self.num_words, self.num_successors
        out = np.empty((size, k), dtype=np.int64)
        for lo in range(0, size, 512):  # chunks bound the (rows, W) key matrix's memory
            keys = rng.exponential(size=(min(512, size - lo), size)) / self.zipf
            top = np.argpartition(keys, k - 1, axis=1)[:, :k]
            order = np.argsort(np.take_along_axis(keys, top, axis=1), axis=1)
            out[lo : lo + len(top)] = np.take_along_axis(top, order, axis=1)
        return out

    @cached_property
    def token_strings(self) -> list[str]:
        """Printable string of every token id."""
        spellings = _pseudo_words(self.num_words + self.num_names, self._rng(1))
        names = [s.capitalize() for s in spellings[self.num_words :]]
        return ["<eod>", "<ref>", *names, *spellings[: self.num_words]]

    def transition_row(self, prev: int) -> np.ndarray:
        """Next-token distribution after token ``prev`` (any but ``<ref>``), shape (V,)."""
        if prev == REF:
            raise ValueError("the row after <ref> is the document's name, not a function of prev")
        if not 0 <= prev < self.vocab_size:
            raise ValueError(f"token {prev} outside the vocabulary")
        row = np.zeros(self.vocab_size)
        if prev == EOD:
            row[FIRST_NAME : self.first_word] = 1.0 / self.num_names
            return row
        words = self.zipf.copy()
        if prev >= self.first_word:
            words *= 1.0 - self.successor_weight
            words[self.successors[prev - self.first_word]] += (
                self.successor_weight * self.slot_profile
            )
        row[EOD], row[REF] = self.end_prob, self.ref_prob
        row[self.first_word :] = self.word_prob * words
        return row

    @cached_property
    def row_entropies(self) -> np.ndarray:
        """Exact entropy (nats) of the next token given the past, indexed by the previous token.

        After ``<ref>`` it is 0 because the name is fixed by the visible history. A word row
        ``lam * sparse + (1 - lam) * zipf`` differs from the dense part ``(1 - lam) * zipf`` only
        in its S successor cells, so its entropy is the dense part's plus an O(S) correction.
        """
        c = self.word_prob
        stop = -(_plogp(self.end_prob) + _plogp(self.ref_prob) + _plogp(c))
        dense = (1.0 - self.successor_weight) * self.zipf
        dense_part = dense[self.successors]
        mixed = self.successor_weight * self.slot_profile + dense_part
        word_rows = -_plogp(dense).sum() + (_plogp(dense_part) - _plogp(mixed)).sum(axis=1)

        entropies = np.empty(self.vocab_size)
        entropies[EOD] = math.log(self.num_names)
        entropies[REF] = 0.0
        entropies[FIRST_NAME : self.first_word] = stop - c * _plogp(self.zipf).sum()
        entropies[self.first_word :] = stop + c * word_rows
        return entropies

    def target_entropies(self, tokens: np.ndarray) -> np.ndarray:
        """Exact ``H(x_t | x_<t)`` for each token but the first of a stream this process emitted."""
        return self.row_entropies[np.asarray(tokens)[:-1]]

    def floor_ppl(self, tokens: np.ndarray) -> float:
        """Entropy-rate perplexity on ``tokens[1:]``: no predictor can beat it in expectation."""
        return math.exp(float(self.target_entropies(tokens).mean()))

    def generate(self, num_tokens: int, stream: int) -> np.ndarray:
        """The first ``num_tokens`` tokens (int64) of the stream with random-stream id ``stream``.

        Documents are sampled in parallel batches and concatenated in index order, not in order
        of completion (which would favour short ones), so any prefix is an exact sample.
        """
        if num_tokens < 2:
            raise ValueError("a stream needs at least two tokens to have a target")
        rng = self._rng(2, stream)
        chunks, total = [], 0
        while total < num_tokens:
            # 10% more documents than expected makes a second batch rare.
            num_docs = math.ceil(1.1 * (num_tokens - total) / self.mean_document_length) + 8
            chunks.append(self._sample_documents(rng, num_docs))
            total += chunks[-1].size
        return np.concatenate(chunks)[:num_tokens]

    def _sample_documents(self, rng: np.random.Generator, num_docs: int) -> np.ndarray:
        """``num_docs`` complete documents, concatenated; vectorised across documents per step."""
        first_word, lam = self.first_word, self.successor_weight
        cum_zipf, cum_slots = np.cumsum(self.zipf), np.cumsum(self.slot_profile)
        names = FIRST_NAME + rng.integers(self.num_names, size=num_docs)
        active = np.arange(num_docs)
        doc_ids, emitted = [active, active], [np.full(num_docs, EOD), names]
        prev = names
        while active.size:
            u = rng.random(active.size)
            after_ref = prev == REF
            nxt = np.where(after_ref, names[active], REF)
            free = ~after_ref
            ended = free & (u < self.end_prob)
            word = np.flatnonzero(free & (u >= self.end_prob + self.ref_prob))
            # One uniform serves both candidate draws; the mixture coin then picks one of them.
            v = rng.random(word.size)
            prev_word = prev[word] - first_word
            sparse = (prev_word >= 0) & (rng.random(word.size) < lam)
            sparse_pick = self.successors[np.maximum(prev_word, 0), _inverse_cdf(cum_slots, v)]
            nxt[word] = first_word + np.where(sparse, sparse_pick, _inverse_cdf(cum_zipf, v))
            keep = ~ended
            active, prev = active[keep], nxt[keep]
            doc_ids.append(active)
            emitted.append(prev)
        # A stable sort by document keeps each document's tokens in emission order.
        order = np.argsort(np.concatenate(doc_ids), kind="stable")
        return np.concatenate(emitted)[order].astype(np.int64)
