"""Perplexities that compare across tokenizers: per word and per byte of the scored text."""

import math


def per_word_and_byte(nll: float, tokens: int, counts: dict[str, int] | None) -> dict[str, float]:
    """``word_ppl`` and ``bpb`` (bits per byte) of a summed NLL over `tokens` targets, from the
    text's word and byte counts; empty when there are none or when they count another number of
    targets (only part of the split was scored)."""
    if not counts or tokens != counts["tokens"]:
        return {}
    return {
        "word_ppl": math.exp(nll / counts["words"]),
        "bpb": nll / (counts["bytes"] * math.log(2)),
    }
