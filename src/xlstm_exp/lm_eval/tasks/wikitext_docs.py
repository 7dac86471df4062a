"""The documents of the `wikitext_stream` and `wikitext_articles` tasks, read from a WikiText
config in the Hub's layout with `WikiTextSource` (a Hub id or a local folder).

lm-eval calls `stream_splits` or `article_splits` (a task's `custom_dataset`) with the task's
metadata: the run's `--model_args` merged with `--metadata`. Of it, `data_path` and `data_name`
choose the data (default: the Hub's Salesforce/wikitext, wikitext-2-raw-v1); the rest is not
for the data, so ignored here.
"""

from __future__ import annotations

import datasets

from xlstm_exp.data.text_counts import as_line, text_counts
from xlstm_exp.data.wikitext_source import WikiTextSource

DEFAULT_PATH = "Salesforce/wikitext"
DEFAULT_NAME = "wikitext-2-raw-v1"
SPLITS = {"validation": "val", "test": "test"}  # lm-eval's split names -> WikiTextSource's


def split_rows(data_path: str, data_name: str) -> dict[str, list[str]]:
    """The rows of the validation and test splits (never the train split, which can be large)."""
    source = WikiTextSource(str(data_path), str(data_name))
    return {split: list(source.rows(ours)) for split, ours in SPLITS.items()}


def stream_splits(
    data_path: str = DEFAULT_PATH, data_name: str = DEFAULT_NAME, **task_metadata
) -> datasets.DatasetDict:
    """Each split as one document, the project's own convention (`text_counts`): its rows as
    the lines of the original file, and the words and bytes WikiText's perplexities divide by."""
    documents = {}
    for split, rows in split_rows(data_path, data_name).items():
        counts = text_counts(rows)
        page = "".join(as_line(row) for row in rows)
        document = {"page": page, "words": counts["words"], "bytes": counts["bytes"]}
        documents[split] = datasets.Dataset.from_list([document])
    return datasets.DatasetDict(documents)


def stream_results(doc: dict, results: list[float]) -> dict[str, tuple[float, int]]:
    """Per-word and per-byte scores of a split, with the document's own word and byte counts."""
    (loglikelihood,) = results
    return {
        "word_perplexity": (loglikelihood, doc["words"]),
        "byte_perplexity": (loglikelihood, doc["bytes"]),
        "bits_per_byte": (loglikelihood, doc["bytes"]),
    }


def is_title(line: str) -> bool:
    """Whether a line of the original file starts an article: ` = Title = `, not a section's
    ` = = Section = = ` (nor a line that merely begins with ` = `, e.g. inside a table)."""
    heading = line.replace("= = =", "===").replace("= =", "==").strip()
    return heading.startswith("= ") and heading.endswith(" =")


def articles(rows: list[str]) -> list[str]:
    """The articles of a split's rows, cut as EleutherAI/wikitext_document_level cuts the
    original file (the stock `wikitext` task's data): each from its title line up to the next
    title, lines joined by newlines; text before the first title only if not blank."""
    # The Hub keeps a line's newline, and stores the blank lines (" " in the original files) as
    # "". The file ends in a newline, so splitting it at newlines ends with an empty line.
    lines = [row.removesuffix("\n") or " " for row in rows] + [""]
    pages, page = [], []
    for line in lines:
        if is_title(line):
            if "\n".join(page).strip():
                pages.append("\n".join(page))
            page = []
        page.append(line)
    return [*pages, "\n".join(page)]


def article_splits(
    data_path: str = DEFAULT_PATH, data_name: str = DEFAULT_NAME, **task_metadata
) -> datasets.DatasetDict:
    """Each split as its articles, in the field `page` as the stock task reads them."""
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict({"page": articles(rows)})
            for split, rows in split_rows(data_path, data_name).items()
        }
    )
