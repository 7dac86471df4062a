"""The synthetic corpus: its exact entropy floor, its statistics, windows and the data module."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch

from xlstm_exp.data.synthetic import SyntheticDataModule
from xlstm_exp.data.synthetic_corpus import (
    EOD,
    FIRST_NAME,
    REF,
    SyntheticProcess,
    split_documents,
)
from xlstm_exp.data.windows import IGNORE_INDEX, RandomShiftSampler, TokenWindows

# Few words and short documents, so that histories since <eod> repeat often enough to count.
TINY = SyntheticProcess(
    num_words=3, num_names=2, num_successors=2, end_prob=0.3, ref_prob=0.2, seed=7
)


@pytest.fixture(scope="module")
def default_data() -> SyntheticDataModule:
    data = SyntheticDataModule()
    data.setup("fit")
    return data


def history_ids(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """For each target t >= 1, an id of its full in-document history ``tokens[last <eod> + 1 : t]``.

    Built level by level: a history is its parent history plus one token, so equal ids mean
    equal token sequences. Documents are iid, so nothing before the last <eod> matters.
    """
    n = tokens.size
    targets = np.arange(1, n)
    last_eod = np.maximum.accumulate(np.where(tokens == EOD, np.arange(n), -1))
    depth = targets - 1 - last_eod[targets - 1]
    ids = np.zeros(n, dtype=np.int64)  # id 0: the empty history right after <eod>
    next_id = 1
    for level in range(1, depth.max() + 1):
        pos = targets[depth == level]
        _, child = np.unique(ids[pos - 1] * vocab_size + tokens[pos - 1], return_inverse=True)
        ids[pos] = next_id + child
        next_id += child.max() + 1
    return ids[1:]


def test_floor_matches_brute_force_conditional_entropy() -> None:
    tokens = TINY.generate(2_000_000, stream=0)
    history = history_ids(tokens, TINY.vocab_size)
    _, h_index, h_count = np.unique(history, return_inverse=True, return_counts=True)
    pairs = history * TINY.vocab_size + tokens[1:]
    _, p_index, p_count = np.unique(pairs, return_inverse=True, return_counts=True)
    # In-sample plug-in NLL -log p_hat(x_t | history), from counts alone.
    nll = np.log(h_count[h_index] / p_count[p_index])
    # Only histories seen >= 1000 times: the plug-in's downward bias there is bounded below.
    selected = h_count[h_index] >= 1000
    assert selected.mean() > 0.7, "the check must cover most of the corpus"

    brute = nll[selected].mean()
    analytic = TINY.target_entropies(tokens)[selected].mean()
    # Tolerance from the sample: 4 standard errors plus the plug-in bias (Miller-Madow:
    # (outcomes - 1) / 2 per history, over the selected count). About 0.2% here.
    std_error = nll[selected].std() / math.sqrt(selected.sum())
    chosen = np.unique(history[selected])
    outcomes = np.unique(pairs[selected]).size
    bias = (outcomes - chosen.size) / (2 * selected.sum())
    assert abs(brute - analytic) < 4 * std_error + bias, (brute, analytic, std_error, bias)
    assert abs(brute - analytic) < 0.02 * analytic


def test_row_entropies_match_dense_rows() -> None:
    process = SyntheticProcess()
    last = process.vocab_size - 1
    for prev in [EOD, FIRST_NAME, process.first_word, process.first_word + 123, last]:
        row = process.transition_row(prev)
        assert row.sum() == pytest.approx(1.0, abs=1e-12)
        dense = -(row[row > 0] * np.log(row[row > 0])).sum()
        assert process.row_entropies[prev] == pytest.approx(dense, rel=1e-12)
    assert process.row_entropies[REF] == 0.0
    assert process.row_entropies[EOD] == pytest.approx(math.log(process.num_names))


def chi_square(observed: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson statistic and degrees of freedom; cells expecting < 10 counts are pooled."""
    assert observed[probs == 0].sum() == 0, "a token the row forbids was emitted"
    expected = observed.sum() * probs
    big = expected >= 10
    obs = np.append(observed[big], observed[~big & (probs > 0)].sum())
    exp = np.append(expected[big], expected[~big & (probs > 0)].sum())
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    return stat, int(keep.sum()) - 1


def test_next_token_frequencies_match_rows(default_data: SyntheticDataModule) -> None:
    process = default_data.process
    tokens = default_data.tokens("train").numpy()
    prev, nxt = tokens[:-1], tokens[1:]
    is_name = (prev >= FIRST_NAME) & (prev < process.first_word)
    cases = {
        "eod": (prev == EOD, EOD),
        "names": (is_name, FIRST_NAME),  # every name has the same row: pool them
        "top word": (prev == process.first_word, process.first_word),
        "rank-20 word": (prev == process.first_word + 20, process.first_word + 20),
    }
    for label, (mask, row_token) in cases.items():
        observed = np.bincount(nxt[mask], minlength=process.vocab_size)
        assert observed.sum() > 2000, label
        stat, dof = chi_square(observed, process.transition_row(row_token))
        assert stat < dof + 5 * math.sqrt(2 * dof), (label, stat, dof)


def test_ref_recalls_the_document_name(default_data: SyntheticDataModule) -> None:
    process = default_data.process
    tokens = default_data.tokens("val").numpy()
    names_seen = 0
    for doc in split_documents(tokens):
        if doc.size < 2:
            continue
        name = doc[1]
        assert FIRST_NAME <= name < process.first_word
        after_ref = doc[1:][doc[:-1] == REF]
        assert np.all(after_ref == name)
        # Names occur only where the process puts them: opening the document or after <ref>.
        positions = np.flatnonzero((doc >= FIRST_NAME) & (doc < process.first_word))
        assert np.all((positions == 1) | (doc[positions - 1] == REF))
        names_seen += after_ref.size
    assert names_seen > 100


def test_generation_is_deterministic_and_splits_disjoint(
    default_data: SyntheticDataModule,
) -> None:
    a = SyntheticProcess(seed=5).generate(20_000, stream=1)
    assert np.array_equal(a, SyntheticProcess(seed=5).generate(20_000, stream=1))
    assert not np.array_equal(a, SyntheticProcess(seed=6).generate(20_000, stream=1))
    assert not np.array_equal(a, SyntheticProcess(seed=5).generate(20_000, stream=2))

    def complete_docs(split: str) -> set[tuple[int, ...]]:
        # The last document of a split is cut at the token budget.
        return {tuple(d) for d in split_documents(default_data.tokens(split).numpy())[:-1]}

    val, test, train = complete_docs("val"), complete_docs("test"), complete_docs("train")
    assert len(val) > 100 and len(test) > 100
    assert not val & test
    assert not (val | test) & train


def test_word_frequencies_follow_a_power_law(default_data: SyntheticDataModule) -> None:
    process = default_data.process
    tokens = default_data.tokens("train").numpy()
    counts = np.sort(np.bincount(tokens[tokens >= process.first_word] - process.first_word))
    counts = counts[::-1]
    assert 4 < counts[0] / counts[9] < 25  # pure Zipf(1.1) gives 10 ** 1.1 = 12.6
    ranks = np.arange(1, 501)
    slope = np.polyfit(np.log(ranks), np.log(counts[:500]), 1)[0]
    assert -1.6 < slope < -0.8


def test_token_windows_cover_each_target_once() -> None:
    tokens = torch.arange(100, 123)  # 22 targets: windows of 5 leave a partial last one
    windows = TokenWindows(tokens, context_length=5)
    assert len(windows) == 5 and windows.num_targets == 22
    inputs, targets = map(torch.stack, zip(*[windows[i] for i in range(len(windows))], strict=True))
    valid = targets != IGNORE_INDEX
    assert torch.equal(targets[valid], tokens[1:])
    assert torch.equal(targets[valid] - 1, inputs[valid])  # targets are inputs shifted by one
    assert valid.sum() == windows.num_targets
    assert torch.equal(valid[-1], torch.tensor([True, True, False, False, False]))
    assert torch.all(inputs[~valid] == 0)
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_random_shift_sampler_moves_boundaries() -> None:
    windows = TokenWindows(torch.arange(1001), context_length=16)
    sampler = RandomShiftSampler(windows, seed=3)
    shifts = set()
    for epoch in range(8):
        sampler.set_epoch(epoch)
        starts = list(sampler)
        assert len(starts) == len(sampler) == 1000 // 16
        targets = torch.cat([windows.window_at(s)[1] for s in starts])
        targets = targets[targets != IGNORE_INDEX]
        assert targets.unique().numel() == targets.numel() > 1000 - 2 * 16
        shifts.add(min(starts))
    assert len(shifts) > 4
    sampler.set_epoch(2)
    assert list(sampler) != list(sampler)  # without set_epoch, each iteration is a new epoch


def test_data_module_batches_and_baselines(default_data: SyntheticDataModule) -> None:
    assert SyntheticDataModule(num_words=100, num_names=8).vocab_size == 2 + 8 + 100
    data = default_data
    assert data.vocab_size == len(data.token_strings) == 2 + 64 + 4000
    inputs, targets = next(iter(data.train_dataloader()))
    assert inputs.shape == targets.shape == (16, 128)
    assert inputs.dtype == targets.dtype == torch.long

    for split, loader in [("val", data.val_dataloader()), ("test", data.test_dataloader())]:
        seen = torch.cat([t[t != IGNORE_INDEX] for _, t in loader])
        assert torch.equal(seen, data.tokens(split)[1:])  # in order, every target once

    floor, unigram = data.floor_ppl("val"), data.unigram_ppl("val")
    # Recomputed here: add-one counts from the train split only, scored on val's targets.
    counts = torch.bincount(data.tokens("train"), minlength=data.vocab_size) + 1.0
    log_probs = (counts / counts.sum()).log()[data.tokens("val")[1:]]
    assert unigram == pytest.approx(math.exp(-log_probs.double().mean().item()), rel=1e-6)
    assert 10 < floor < 60
    assert unigram > 3 * floor  # structure and memory pay off
    assert data.floor_ppl("test") == pytest.approx(floor, rel=0.05)
    text = data.decode(data.tokens("val")[:50])
    assert text.startswith("<eod> ") and "<ref>" in data.decode(data.tokens("val")[:2000])


def test_train_shift_changes_between_lightning_epochs() -> None:
    data = SyntheticDataModule(
        num_words=50,
        num_names=4,
        train_tokens=2000,
        val_tokens=300,
        test_tokens=300,
        context_length=32,
        batch_size=8,
    )
    first_inputs: dict[int, list[int]] = {}

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            first_inputs.setdefault(self.current_epoch, []).extend(batch[0][:, 0].tolist())
            return self.weight.sum() * 0

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(
        max_epochs=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Probe(), datamodule=data)
    # Same windows reshuffled would give the same multiset of first tokens every epoch.
    epochs = {tuple(sorted(v)) for v in first_inputs.values()}
    assert len(first_inputs) == 3 and len(epochs) > 1
