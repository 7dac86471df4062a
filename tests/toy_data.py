"""A dataset added the way the README's "Add a dataset" says: one LanguageDataModule subclass."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from xlstm_exp.data.contract import LanguageDataModule


class CountingData(LanguageDataModule):
    """Streams that count 0, 1, ..., period - 1 over and over from a random start: after the
    first token every next one is certain, so the true-entropy floor is 1."""

    def __init__(self, period: int = 12, context_length: int = 16, batch_size: int = 4, seed=0):
        super().__init__()
        self.period, self.context_length, self.batch_size = period, context_length, batch_size
        self.seed = seed

    @property
    def vocab_size(self) -> int:
        return self.period

    def tokens(self, split: str) -> torch.Tensor:
        start = {"train": 0, "val": 5, "test": 7}[split]
        return (torch.arange(start, start + 40 * self.context_length + 1)) % self.period

    def _windows(self, split: str) -> TensorDataset:
        stream = self.tokens(split)
        count = (stream.numel() - 1) // self.context_length
        inputs = stream[: count * self.context_length].view(count, -1)
        targets = stream[1 : count * self.context_length + 1].view(count, -1)
        return TensorDataset(inputs, targets)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._windows("train"), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._windows("val"), batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._windows("test"), batch_size=self.batch_size)

    def encode(self, text: str) -> list[int]:
        return [int(word) for word in text.split()]

    def decode(self, ids) -> str:
        return " ".join(str(int(i)) for i in ids if int(i) >= 0)

    def eval_counts(self, split: str) -> dict[str, int]:
        # Two tokens a word and one byte a token, so word ppl = ppl ** 2, bpb = loss / ln 2.
        tokens = self.tokens(split).numel() - 1
        return {"tokens": tokens, "words": tokens // 2, "bytes": tokens}

    def reference_ppl(self, split: str) -> dict[str, float]:
        return {"floor_ppl": 1.0}
