"""``data=synthetic``: a seeded language-like corpus with a known entropy-rate floor."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xlstm_exp.data.contract import LanguageDataModule
from xlstm_exp.data.synthetic_corpus import EOD, SyntheticProcess
from xlstm_exp.data.windows import (
    EvalShardSampler,
    PaddedWindows,
    RandomShiftSampler,
    TokenWindows,
    WindowsByStart,
)
from xlstm_exp.user_error import UserError

SPLITS = ("train", "val", "test")


class SyntheticDataModule(LanguageDataModule):
    """Train/val/test streams of one `SyntheticProcess`, from independent random streams.

    Batches are ``(input_ids, targets)``, both ``(B, T)`` long tensors, with targets -100 where
    the last window runs past a split's end. Under DDP or FSDP each rank loads its own disjoint
    share of every split, ``batch_size`` windows a batch (see `RandomShiftSampler` and
    `EvalShardSampler`).
    """

    def __init__(
        self,
        num_words: int = 4000,
        num_names: int = 64,
        num_successors: int = 8,
        successor_weight: float = 0.7,
        zipf_exponent: float = 1.1,
        ref_prob: float = 0.02,
        end_prob: float = 1 / 300,
        train_tokens: int = 1_000_000,
        val_tokens: int = 60_000,
        test_tokens: int = 60_000,
        context_length: int = 128,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        self.process = SyntheticProcess(
            num_words=num_words,
            num_names=num_names,
            num_successors=num_successors,
            successor_weight=successor_weight,
            zipf_exponent=zipf_exponent,
            ref_prob=ref_prob,
            end_prob=end_prob,
            seed=seed,
        )
        self.split_sizes = {"train": train_tokens, "val": val_tokens, "test": test_tokens}
        self.context_length = context_length
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._tokens: dict[str, np.ndarray] = {}
        # (epoch, training batches used in it): saved in checkpoints for an exact resume.
        self._position = (0, 0)
        self._resume_position: tuple[int, int] | None = None

    @property
    def vocab_size(self) -> int:
        return self.process.vocab_size

    @property
    def token_strings(self) -> list[str]:
        return self.process.token_strings

    def setup(self, stage: str | None = None) -> None:
        """Generate every split once (about a second); later calls reuse them."""
        if not self._tokens:
            self._tokens = {
                split: self.process.generate(self.split_sizes[split], stream=index)
                for index, split in enumerate(SPLITS)
            }

    def tokens(self, split: str) -> torch.Tensor:
        """The split's whole token stream as a 1-D long tensor."""
        return torch.from_numpy(self._split(split))

    def _split(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.setup()
        return self._tokens[split]

    def _loader(self, dataset: Dataset, **kwargs: object) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def _ranks(self) -> dict[str, int]:
        """This process's rank and the number of ranks of the trainer's run (alone: 0 of 1)."""
        if self.trainer is None:
            return {"rank": 0, "num_replicas": 1}
        return {"rank": self.trainer.global_rank, "num_replicas": self.trainer.world_size}

    def train_dataloader(self) -> DataLoader:
        windows = TokenWindows(self.tokens("train"), self.context_length)
        sampler = RandomShiftSampler(windows, seed=self.seed, **self._ranks())
        if self._resume_position is not None:
            epoch, batches = self._resume_position
            sampler.resume(epoch, batches * self.batch_size)
            self._resume_position = None
        return self._loader(WindowsByStart(windows), sampler=sampler, drop_last=False)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        # Lightning calls this when a batch is used (not when the loader prefetches it), so the
        # count matches the optimizer steps taken by the time a checkpoint is written.
        trainer = self.trainer
        if trainer is not None and trainer.training:
            epoch, batches = self._position
            self._position = (
                (epoch, batches + 1)
                if epoch == trainer.current_epoch
                else (trainer.current_epoch, 1)
            )
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self._position[0], "train_batches": self._position[1]}

    def load_state_dict(self, state_dict: dict) -> None:
        self._position = (state_dict["epoch"], state_dict["train_batches"])
        self._resume_position = self._position

    def _eval_loader(self, split: str) -> DataLoader:
        windows = TokenWindows(self.tokens(split), self.context_length)
        sampler = EvalShardSampler(windows, **self._ranks())
        return self._loader(PaddedWindows(windows), sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def floor_ppl(self, split: str) -> float:
        """True entropy-rate perplexity on the split's targets (every token but the first)."""
        return self.process.floor_ppl(self._split(split))

    def unigram_ppl(self, split: str) -> float:
        """Perplexity on the split's targets of the add-one smoothed train unigram."""
        counts = np.bincount(self._split("train"), minlength=self.vocab_size) + 1.0
        log_probs = np.log(counts / counts.sum())
        return math.exp(-float(log_probs[self._split(split)[1:]].mean()))

    def reference_ppl(self, split: str) -> dict[str, float]:
        return {"floor_ppl": self.floor_ppl(split), "unigram_ppl": self.unigram_ppl(split)}

    def encode(self, text: str) -> list[int]:
        """Token ids of whitespace-separated token strings (as `decode` writes them)."""
        ids = {token: index for index, token in enumerate(self.token_strings)}
        unknown = [word for word in text.split() if word not in ids]
        if unknown:
            raise UserError(
                f"{unknown[:5]} are not in the synthetic vocabulary; it has words such as "
                f"{' '.join(self.token_strings[self.process.first_word :][:5])} and names "
                f"such as {self.token_strings[2]}"
            )
        return [ids[word] for word in text.split()]

    def decode(self, ids: Sequence[int] | torch.Tensor | np.ndarray) -> str:
        """Space-joined token strings, one document per line; negative (padding) ids skipped."""
        strings = self.token_strings
        ids = np.asarray(ids.tolist() if isinstance(ids, torch.Tensor) else ids).ravel()
        pieces = [("\n" if i == EOD else "") + strings[i] for i in ids.tolist() if i >= 0]
        return " ".join(pieces).replace(" \n", "\n").lstrip("\n")
