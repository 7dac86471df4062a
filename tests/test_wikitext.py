"""The WikiText data module, driven through its real loading code on a tiny generated mirror in
the Hub's layout (no network): streaming, exact evaluation counts, the tokenizer cache, resuming
mid-epoch and the error messages."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import time
from collections import Counter
from itertools import chain
from pathlib import Path

import datasets
import pytest
import torch
from wikitext_mirror import B, T, all_blocks, fit, make, rank_blocks, rows_of, tiny_mirror

from xlstm_exp.data import tokenization, wikitext_source
from xlstm_exp.data.text_counts import as_line, text_counts
from xlstm_exp.data.tokenization import BOS
from xlstm_exp.data.wikitext import WikiTextDataModule
from xlstm_exp.data.wikitext_source import DataSourceError
from xlstm_exp.data.windows import IGNORE_INDEX

ROOT = Path(__file__).resolve().parents[1]
REAL_MIRROR = ROOT.parent / "shared" / "data" / "wikitext"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_mirror(tmp_path_factory.mktemp("mirror"))


def test_counts_follow_the_wikitext_convention() -> None:
    rows = ["", " = A b = \n", " x  y\tz \n", "no newline", " café \n"]
    assert [as_line(row) for row in rows][::3] == ["\n", "no newline\n"]
    # words + one end-of-line per row, blank rows included; bytes of the original file
    assert text_counts(rows) == {
        "rows": 5,
        "words": 1 + 5 + 4 + 3 + 2,
        "bytes": 1 + 10 + 9 + 11 + 8,
    }


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_evaluation_scores_every_token_exactly_once(mirror, tmp_path, kind) -> None:
    data = make(mirror, tmp_path, kind)
    for split, hub_split in [("val", "validation"), ("test", "test")]:
        rows = rows_of(mirror, "tiny-v1", hub_split)
        stream = data.tokens(split)
        batches = list(getattr(data, f"{split}_dataloader")())
        assert batches and all(x.shape == y.shape == (B, T) for x, y in batches[:-1])
        inputs, targets = (torch.cat([b[i].flatten() for b in batches]) for i in (0, 1))
        scored = targets != IGNORE_INDEX
        # In order, non-overlapping: the targets are the stream after its start token, once.
        assert torch.equal(targets[scored], stream[1:])
        assert torch.equal(inputs[scored], stream[:-1])
        again = list(getattr(data, f"{split}_dataloader")())
        assert all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            for a, b in zip(batches, again, strict=True)
        )
        counts = data.eval_counts(split)
        assert counts["tokens"] == int(scored.sum()) == stream.numel() - 1
        assert counts["words"] == sum(len(row.split()) + 1 for row in rows)
        assert counts["bytes"] == len("".join(as_line(row) for row in rows).encode())
        assert sorted(data.tokenizer.get_vocab().values()) == list(range(data.vocab_size))
        if kind == "word":  # one token per word: ppl and word_ppl coincide
            assert counts["tokens"] == counts["words"]
            text = data.decode(stream)  # words by spaces, <eos> as newlines
            assert text.split() == "".join(rows).split() and text.count("\n") == len(rows) + 1
        else:  # byte-level BPE gives the text back exactly
            assert data.decode(stream) == BOS + "".join(as_line(row) for row in rows)


@pytest.mark.skipif(not REAL_MIRROR.is_dir(), reason="no local WikiText mirror")
def test_real_wikitext2_word_level_matches_published_sizes(tmp_path) -> None:
    data = make(REAL_MIRROR, tmp_path, name="wikitext-2-v1")
    assert data.vocab_size == 33_278  # the published WikiText-2 vocabulary, <eos> included
    assert data.eval_counts("val") == {"tokens": 217_646, "words": 217_646, "bytes": 1_120_382}
    assert data.eval_counts("test") == {"tokens": 245_569, "words": 245_569, "bytes": 1_254_982}


def test_tokenizer_cache_is_reused_not_retrained(mirror, tmp_path, monkeypatch) -> None:
    first = make(mirror, tmp_path, "bpe")
    vocab, path = first.vocab_size, first.tokenizer_file
    stamp = path.stat().st_mtime_ns
    assert path.parent == tmp_path and not list(tmp_path.glob("*.tmp"))

    def refuse(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(tokenization, "train_tokenizer", refuse)
    second = make(mirror, tmp_path, "bpe")
    assert second.vocab_size == vocab and path.stat().st_mtime_ns == stamp
    assert second.tokens("val").tolist() == first.tokens("val").tolist()
    for changed in [{"vocab_size": 280}, {"sample_rows": 50}]:  # part of the key: a new file
        other = make(mirror, tmp_path, "bpe", tokenizer=changed)
        assert other.tokenizer_file != path
        with pytest.raises(AssertionError, match="retrained"):
            other.setup()


def build_vocab(mirror: Path, cache: Path, queue: multiprocessing.Queue) -> None:
    queue.put(make(mirror, cache, "bpe").vocab_size)


def test_concurrent_jobs_train_once_and_share_the_cache(mirror, tmp_path, monkeypatch) -> None:
    trainings = tmp_path / "trainings"
    train = tokenization.train_tokenizer

    def slow_train(*args):
        with trainings.open("a") as log:
            log.write("trained\n")
        time.sleep(0.5)  # long enough for the other job to reach the cache meanwhile
        return train(*args)

    monkeypatch.setattr(tokenization, "train_tokenizer", slow_train)
    context = multiprocessing.get_context("fork")  # the children inherit the patch
    queue = context.Queue()
    jobs = [context.Process(target=build_vocab, args=(mirror, tmp_path, queue)) for _ in "ab"]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=60)
    assert [job.exitcode for job in jobs] == [0, 0]
    assert trainings.read_text() == "trained\n"
    assert queue.get(timeout=5) == queue.get(timeout=5) == make(mirror, tmp_path, "bpe").vocab_size


def test_a_truncated_tokenizer_cache_is_rebuilt_and_reported(mirror, tmp_path, caplog) -> None:
    """Before, it stopped the run with an error telling the user to delete the file."""
    first = make(mirror, tmp_path)
    path, vocab = first.tokenizer_file, first.tokenizer.get_vocab()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    again = make(mirror, tmp_path)
    assert again.tokenizer.get_vocab() == vocab and path.read_bytes() == whole
    logged = [r for r in caplog.records if r.name == tokenization.log.name]
    (warning,) = [r.getMessage() for r in logged if r.levelname == "WARNING"]
    assert warning.startswith(f"tokenizer cache {path} was unreadable")


def test_train_split_is_streamed_in_shuffled_blocks_of_the_whole_split(mirror, tmp_path) -> None:
    data = make(mirror, tmp_path)
    loader = data.train_dataloader()
    assert isinstance(data.source.stream("train"), datasets.IterableDataset)  # streamed
    rows = rows_of(mirror, "tiny-v1", "train")
    ids = [data.start_id, *tokenization.encode_lines(data.tokenizer, [as_line(r) for r in rows])]
    expected = Counter(tuple(ids[i : i + T + 1]) for i in range(0, len(ids) - T, T))
    epochs = [list(loader), list(loader)]
    assert all_blocks(epochs[0]) == expected == all_blocks(epochs[1])
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(*epochs, strict=True)), (
        "each epoch reshuffles"
    )


def test_ranks_and_workers_read_disjoint_parts(mirror, tmp_path) -> None:
    stream = make(mirror, tmp_path, "bpe").train_dataloader().dataset
    parts = [list(stream.row_groups(s, 3)) for s in range(3)]
    interleaved = [parts[g % 3][g // 3] for g in range(sum(map(len, parts)))]
    assert sum(interleaved, []) == [as_line(r) for r in rows_of(mirror, "tiny-v1", "train")]
    # Two ranks of two workers each read streams 0-1 and 2-3 of four; the split has three
    # groups of rows, so rank 1 (group 2 only) runs out first and the epoch ends for both.
    context = multiprocessing.get_context("fork")
    ranks = [context.Process(target=rank_blocks, args=(r, mirror, tmp_path)) for r in (0, 1)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=60)
    assert [process.exitcode for process in ranks] == [0, 0]
    (steps0, seen0, *val0), (steps1, seen1, *val1) = (
        pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in (0, 1)
    )
    own = [Counter(map(tuple, chain(stream.blocks(s, 4), stream.blocks(s + 1, 4)))) for s in (0, 2)]
    assert not seen0 - own[0] and seen1 == own[1], "each rank reads its own streams only"
    # The same number of steps: rank 1 read all of its part, rank 0 was cut short.
    assert steps0 == steps1 and seen0.total() < own[0].total()
    # Validation: the same number of batches, every target of the split scored once in all.
    scored = make(mirror, tmp_path, "bpe").eval_counts("val")["tokens"]
    assert val0[0] == val1[0] and val0[1] + val1[1] == scored


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PendingDeprecationWarning")
@pytest.mark.parametrize("near_end", [False, True])
def test_resume_mid_epoch_continues_with_the_next_batch(mirror, tmp_path, near_end) -> None:
    options = dict(num_workers=2, batch_size=2)
    stream = make(mirror, tmp_path, **options).train_dataloader().dataset
    per_worker = [-(-sum(1 for _ in stream.blocks(w, 2)) // 2) for w in (0, 1)]
    per_epoch = sum(per_worker)
    # Near the end, the worker with fewer batches has run out: the other one goes on alone.
    assert 2 * min(per_worker) < per_epoch - 3
    total, stop = per_epoch + 10, per_epoch - 3 if near_end else per_epoch // 2
    straight = fit(make(mirror, tmp_path, **options), total, tmp_path / "straight").seen
    first = fit(make(mirror, tmp_path, **options), stop, tmp_path / "first").seen
    ckpt = tmp_path / "first" / "last.ckpt"
    resumed = fit(make(mirror, tmp_path, **options), total, tmp_path / "resumed", ckpt).seen
    assert first == straight[:stop] and resumed == straight[stop:]
    assert len(set(straight[:per_epoch])) == per_epoch  # an epoch has no repeated batch


def test_offline_hub_fails_fast_naming_data_path(tmp_path) -> None:
    code = (
        "from xlstm_exp.data.wikitext import WikiTextDataModule\n"
        f"WikiTextDataModule(tokenizer={{'cache_dir': {str(tmp_path)!r}}}).vocab_size\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and time.monotonic() - started < 30
    message = result.stderr.splitlines()[-1]
    assert "DataSourceError" in message and "data.path='Salesforce/wikitext'" in message
    assert "offline mode" in message and "local folder" in message


def test_unreachable_hub_is_refused_without_retrying(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(wikitext_source, "hub_reachable", lambda: False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    data = WikiTextDataModule(path="Salesforce/wikitext", tokenizer={"cache_dir": str(tmp_path)})
    with pytest.raises(DataSourceError, match="data.path='Salesforce/wikitext'.*unreachable"):
        data.vocab_size  # noqa: B018 (opening the data is lazy)


@pytest.mark.parametrize(
    ("options", "split", "expected"),
    [
        ({"name": "nope"}, "train", "data.name='nope'.*tiny-v1"),  # lists the configs
        ({"name": "notrain-v1"}, "train", "no 'train' split"),
        ({"name": "emptyval-v1"}, "val", "empty.*emptyval-v1/validation-00000-of-00001.parquet"),
        ({"path": "./no/such/folder"}, "train", "no such folder"),
    ],
)
def test_bad_local_data_is_an_error_naming_it(mirror, tmp_path, options, split, expected) -> None:
    data = make(mirror, tmp_path, **options)
    with pytest.raises(DataSourceError, match=expected):
        data.eval_counts("val") if split == "val" else data.vocab_size  # noqa: B018


def test_relative_path_resolves_against_the_launch_directory(mirror, tmp_path, monkeypatch):
    monkeypatch.chdir(mirror.parent)
    data = make(f"./{mirror.name}", tmp_path)
    assert data.eval_counts("test")["words"] == sum(
        len(row.split()) + 1 for row in rows_of(mirror, "tiny-v1", "test")
    )


def test_configs_compose_and_build(mirror, tmp_path) -> None:
    from helpers import compose_train
    from hydra.utils import instantiate

    for data, tokenizer in [("wikitext2", "word"), ("wikitext103", "bpe")]:
        overrides = [f"data={data}", f"tokenizer={tokenizer}", f"data.path={mirror}"]
        overrides += ["data.name=tiny-v1", f"tokenizer.cache_dir={tmp_path}"]
        if tokenizer == "bpe":
            overrides.append("tokenizer.vocab_size=300")
        module = instantiate(compose_train(overrides, tmp_path).data)
        assert module.tokenizer_spec.kind == tokenizer and module.vocab_size > 0
        assert module.seed == 1234 and module.context_length == 128
