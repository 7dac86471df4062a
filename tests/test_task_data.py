"""Task data (formal languages, MQAR): what is scored, length buckets, seeds, bad settings, the
answer accuracies, and a sweep that tabulates them."""

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import TINY, run_script

from xlstm_exp.answer_accuracy import AnswerAccuracy
from xlstm_exp.data.formal import BOS, SEP, FormalLanguageDataModule
from xlstm_exp.data.formal_tasks import TASKS
from xlstm_exp.data.mqar import MQARDataModule
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models.language_model import LanguageModel


@pytest.mark.parametrize("task", sorted(TASKS))
def test_formal_examples_score_the_answer_only_and_fall_in_their_length_bucket(task):
    data = FormalLanguageDataModule(task=task, eval_examples=200)
    assert data.answer_groups() == ["len_40-63", "len_64-127", "len_128-256"]
    first_answer = 3 + len(TASKS[task].input_symbols)
    seen = set()
    for index in range(200):
        inputs, targets, group = data.example("test", index)
        symbols = inputs.numel() - 2
        assert inputs[0] == BOS and inputs[-1] == SEP and 38 <= symbols <= 256
        assert (targets[:-1] == -100).all() and first_answer <= targets[-1] < data.vocab_size
        assert group == int(np.digitize(symbols, [64, 128])), (symbols, group)
        seen.add(group)
    assert seen == {0, 1, 2}
    train = [data.example("train", i)[0].numel() - 2 for i in range(200)]
    assert 2 <= min(train) and max(train) <= 40


def test_task_data_is_the_same_for_a_seed_and_differs_between_splits_and_seeds():
    one, again, other = (FormalLanguageDataModule(seed=s) for s in (1, 1, 2))
    rows = [torch.cat(one.example("val", i)[:2]) for i in range(5)]
    assert all(torch.equal(r, torch.cat(again.example("val", i)[:2])) for i, r in enumerate(rows))
    assert not all(
        torch.equal(r, torch.cat(other.example("val", i)[:2])) for i, r in enumerate(rows)
    )
    assert not torch.equal(one.tokens("val"), one.tokens("test"))
    mqar = [MQARDataModule(eval_examples=50, train_examples=64, seed=s) for s in (1, 1, 2)]
    assert torch.equal(mqar[0].rows("test")[0], mqar[1].rows("test")[0])
    assert not torch.equal(mqar[0].rows("test")[0], mqar[2].rows("test")[0])


def test_mqar_scores_each_pair_once_and_tests_more_pairs_when_asked():
    data = MQARDataModule(context_length=128, test_num_kv_pairs=16, eval_examples=40)
    assert data.answer_groups() == ["kv_8", "kv_16"]
    val, test = next(iter(data.val_dataloader())), next(iter(data.test_dataloader()))
    assert ((val[1] != -100).sum(1) == 8).all() and (val[2] == 0).all()
    assert ((test[1] != -100).sum(1) == 16).all() and (test[2] == 1).all()
    assert data.chance_accuracy() == 1 / 4096


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FormalLanguageDataModule(task="palindrome"), "valid names: parity, even_pairs"),
        (lambda: FormalLanguageDataModule(eval_lengths=(80, 40)), r"data.eval_lengths=\[80, 40\]"),
        (lambda: FormalLanguageDataModule(context_length=100), "data.context_length=100"),
        (lambda: MQARDataModule(context_length=64, num_kv_pairs=17), "data.num_kv_pairs=17"),
        (lambda: MQARDataModule(num_kv_pairs=4, vocab_size=8), "data.vocab_size=8"),
    ],
)
def test_impossible_task_settings_name_their_keys(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_answer_accuracy_counts_tokens_sequences_groups_and_chance():
    metric = AnswerAccuracy(chance=0.25, groups=["short", "long"])
    targets = torch.tensor([[-100, 1, 2], [-100, -100, 3], [-100, -100, -100]])
    guesses = torch.tensor([[0, 1, 0], [0, 0, 3], [0, 0, 0]])  # right: 1 of 2, 1 of 1
    metric.update(guesses, targets, torch.tensor([0, 1, 1]))
    results = {k: float(v) for k, v in metric.compute().items()}
    assert results["acc"] == pytest.approx(2 / 3)
    assert results["seq_acc"] == pytest.approx(1 / 2), "the row without answers does not count"
    assert results["norm_acc"] == pytest.approx((2 / 3 - 0.25) / 0.75)
    assert results["norm_acc/short"] == pytest.approx((1 / 2 - 0.25) / 0.75)
    assert results["norm_acc/long"] == pytest.approx(1.0)


def test_the_loss_on_answers_equals_the_full_logits_loss_at_those_positions():
    """The head runs at scored positions only; a wrong selection or order changes the loss."""
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=50, d_model=32, num_layers=1, num_heads=2, mixer="lstm")
    inputs = torch.randint(0, 50, (3, 12))
    targets = torch.full((3, 12), -100)
    targets[0, [2, 7]], targets[2, [0, 5, 11]] = torch.tensor([4, 9]), torch.tensor([1, 2, 3])
    logits, nll, count = LanguageModelingModule(model)._scores((inputs, targets))
    full = model(inputs)
    expected = F.cross_entropy(full.flatten(0, 1), targets.flatten(), reduction="sum")
    assert count == 5 and torch.allclose(logits, full[targets != -100], atol=1e-6)
    assert torch.allclose(nll, expected, atol=1e-5)


@pytest.mark.slow
def test_a_tiny_formal_sweep_writes_an_accuracy_table(tmp_path):
    tiny = [o for o in TINY if not o.startswith(("data.", "trainer.max_steps", "model.d_model"))]
    result = run_script(
        "train.py",
        "-m",
        "experiment=formal_cpu",
        "model=lstm,transformer",
        "data.task=parity",
        "data.train_examples=64",
        "data.eval_examples=24",
        "data.batch_size=8",
        "data.eval_lengths=[40,80]",
        "model.d_model=16",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        *tiny,
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["model"] for row in rows] == ["lstm", "transformer"]
    for row in rows:
        for key in ("test/norm_acc", "test/norm_acc/len_40-63", "test/norm_acc/len_64-80"):
            assert -1 <= float(row[key]) <= 1 and math.isfinite(float(row[key])), key
    table = (tmp_path / "results.md").read_text()
    assert "test norm acc len_64-80" in table and "val norm acc" in table


def test_mqar_keeps_token_ids_of_a_vocabulary_beyond_int16():
    data = MQARDataModule(vocab_size=70_000, train_examples=64, eval_examples=8)
    inputs, targets = data.rows("test")
    assert int(targets.max()) >= 2**15, "values come from the upper half, above int16's range"
    assert int(inputs.min()) >= 0 and int(targets[targets != -100].min()) >= 35_000
