"""A tiny generated WikiText look-alike, written in the Hugging Face Hub's layout for tests, and
the helpers that drive the WikiText data module through it.

Rows look like WikiText's: article and section headings, paragraphs of space-separated words
and punctuation with a leading space and a trailing " \\n", and blank rows stored as "".
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from xlstm_exp.data.wikitext import WikiTextDataModule
from xlstm_exp.data.windows import IGNORE_INDEX

T, B = 16, 4  # context length and batch size of the tests

WORDS = (
    "the of and in to a was is for on as by with he that at from his it an were are which "
    "this also be had first one their its after new who they two her she been other when "
    'there all during into school city game season café <unk> @-@ , . ( ) "'
).split()


def article(rng: np.random.Generator, number: int) -> list[str]:
    """One article: a title, a few sections of a few paragraphs, blank rows between."""
    rows = ["", f" = Article {number} = \n", ""]
    for section in range(int(rng.integers(1, 4))):
        if section:
            rows += [f" = = Section {section} = = \n", ""]
        for _ in range(int(rng.integers(1, 4))):
            words = rng.choice(WORDS, size=int(rng.integers(3, 30)))
            rows += [" " + " ".join(words) + " \n", ""]
    return rows


def generated_rows(seed: int, articles: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [row for number in range(articles) for row in article(rng, number)]


def write_mirror(root: Path, configs: dict[str, dict[str, list[str]]]) -> Path:
    """Parquet files ``<config>/<split>-00000-of-00001.parquet`` and a README.md whose YAML
    front matter declares the configs, as on the Hub; returns ``root``."""
    front = ["---", "configs:"]
    for config, splits in configs.items():
        front += [f"- config_name: {config}", "  data_files:"]
        (root / config).mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            file = f"{config}/{split}-00000-of-00001.parquet"
            table = pa.table({"text": pa.array(rows, pa.string())})
            # An empty split has no row group at all (a 0-row group trips `datasets`).
            with pq.ParquetWriter(root / file, table.schema) as writer:
                if rows:
                    writer.write_table(table)
            front += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (root / "README.md").write_text("\n".join([*front, "---", "# Tiny WikiText mirror", ""]))
    return root


def tiny_mirror(root: Path) -> Path:
    """Config ``tiny-v1`` with all three splits (train: 183 rows, about 3 groups of 64, so that two
    DataLoader workers get unequal parts), and broken ones: ``notrain-v1`` (no train split),
    ``emptyval-v1`` (an empty validation split)."""
    train, validation, test = (generated_rows(seed, n) for seed, n in [(1, 15), (2, 3), (3, 3)])
    return write_mirror(
        root,
        {
            "tiny-v1": {"train": train, "validation": validation, "test": test},
            "notrain-v1": {"validation": validation, "test": test},
            "emptyval-v1": {"train": train, "validation": [], "test": test},
        },
    )


def make(mirror: Path | str, cache: Path, kind: str = "word", **options) -> WikiTextDataModule:
    """A data module on config ``tiny-v1`` of ``mirror`` (small blocks and batches, a small
    tokenizer cached in ``cache``); ``options`` override its arguments."""
    tokenizer = {"kind": kind, "cache_dir": str(cache)}
    tokenizer |= {"vocab_size": 300 if kind == "bpe" else None}
    tokenizer |= options.pop("tokenizer", {})
    defaults = dict(path=str(mirror), name="tiny-v1", context_length=T, batch_size=B, seed=0)
    return WikiTextDataModule(tokenizer=tokenizer, **(defaults | {"shuffle_buffer": 8} | options))


def rows_of(mirror: Path, config: str, split: str) -> list[str]:
    """The rows as written, read without `datasets`."""
    return pq.read_table(mirror / config / f"{split}-00000-of-00001.parquet")["text"].to_pylist()


def all_blocks(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Counter:
    """Each batch row as its T + 1 tokens."""
    blocks = Counter()
    for inputs, targets in loader:
        assert inputs.dtype == targets.dtype == torch.long and inputs.shape[1] == T
        assert torch.equal(inputs[:, 1:], targets[:, :-1])  # next-token targets, contiguous
        for x, y in zip(inputs.tolist(), targets.tolist(), strict=True):
            blocks[(*x, y[-1])] += 1
    return blocks


def rank_blocks(rank: int, mirror: Path, cache: Path) -> None:
    """One rank of two (gloo): the number of batches and the blocks of its train epoch with two
    DataLoader workers, and the number of validation batches and targets it scores."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{cache / 'store'}", rank=rank, world_size=2
    )
    try:
        data = make(mirror, cache, "bpe", num_workers=2)
        batches = list(data.train_dataloader())
        val = [int((targets != IGNORE_INDEX).sum()) for _, targets in data.val_dataloader()]
        result = (len(batches), all_blocks(batches), len(val), sum(val))
        (cache / f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


class Recorder(L.LightningModule):
    """A bigram model that records every batch it trains on."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.logits = nn.Embedding(vocab_size, vocab_size)
        self.seen: list[tuple[int, ...]] = []

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        self.seen.append(tuple(inputs.flatten().tolist()))
        return F.cross_entropy(self.logits(inputs).flatten(0, 1), targets.flatten())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(data: WikiTextDataModule, steps: int, root: Path, ckpt: Path | None = None) -> Recorder:
    """Train a `Recorder` for ``steps`` steps (resuming ``ckpt``); checkpoint at root/last.ckpt."""
    model = Recorder(data.vocab_size)
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt, weights_only=True)  # as train.py does
    trainer.save_checkpoint(root / "last.ckpt")
    return model
