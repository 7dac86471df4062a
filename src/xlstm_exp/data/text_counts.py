"""WikiText's counting conventions, which make perplexities comparable across tokenizers.

A dataset row is one line of the original file. The Hub keeps each line's newline except on
blank lines, which are ``""``; `as_line` restores the file's line. Words are the whitespace-
separated words of a line plus one end-of-line, so a blank line counts one word: this gives the
published split sizes (217,646 words for WikiText-2/103 validation, 245,569 for test).
"""

from __future__ import annotations

from collections.abc import Iterable


def as_line(row: str) -> str:
    """The row as a line of the original file: its text with exactly one trailing newline."""
    return row if row.endswith("\n") else row + "\n"


def count_words(line: str) -> int:
    """Whitespace-separated words of a line plus its end-of-line."""
    return len(line.split()) + 1


def text_counts(rows: Iterable[str]) -> dict[str, int]:
    """``rows``, ``words`` and UTF-8 ``bytes`` of the split's text (its original file)."""
    counts = {"rows": 0, "words": 0, "bytes": 0}
    for row in rows:
        line = as_line(row)
        counts["rows"] += 1
        counts["words"] += count_words(line)
        counts["bytes"] += len(line.encode("utf-8"))
    return counts
