"""The sweep summary over seeds and learning rates, on hand-written job folders with known numbers
(no training): best lr, mean ± std, n with a failed job left out, ranking and Welch's t-test."""

import csv
import json
import math
import statistics

import pytest
import yaml
from scipy import stats

from xlstm_exp.report import write_report
from xlstm_exp.sweep_summary import curve_band, job_seed_lr, significance_note, summarize

BASE = ["experiment=wt2_cpu"]


def write_job(sweep, number, overrides, metrics=None, config=None, error=None):
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if config is not None:
        (job / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        (job / "error.txt").write_text(error)


def metrics(model, block, seed, lr, val, test, test_ppl, steps=3):
    return {
        "model": model,
        "block": block,
        "data": "wikitext2",
        "seed": seed,
        "lr": lr,
        "params": 1000,
        "val/loss": val,
        "val/ppl": math.exp(val),
        "test/loss": test,
        "test/ppl": test_ppl,
        "val/history": [[1000 * (i + 1), 100.0 * seed + 10 * i] for i in range(steps)],
    }


# (model, block, extra overrides, lr as typed, lr, seed) -> (val loss, test loss, test ppl);
# None: the job failed. lstm: best lr 3e-3 by val loss (5.0 < 5.1) although 1e-3 tests better.
# mlstm: best lr 1e-3 (4.65 < 4.8), where seed 3 failed. By test loss lstm ranks first (4.6 <
# 4.8), by val loss mlstm would.
JOBS = {
    ("lstm", "post", (), "1e-3", 1e-3, 1): (5.0, 4.0, 50.0),
    ("lstm", "post", (), "1e-3", 1e-3, 2): (5.1, 4.0, 50.0),
    ("lstm", "post", (), "1e-3", 1e-3, 3): (5.2, 4.1, 55.0),
    ("lstm", "post", (), "3e-3", 3e-3, 1): (4.8, 4.4, 130.0),
    ("lstm", "post", (), "3e-3", 3e-3, 2): (4.9, 4.5, 150.0),
    ("lstm", "post", (), "3e-3", 3e-3, 3): (5.3, 4.9, 200.0),
    ("mlstm", "pre", (), "1e-3", 1e-3, 1): (4.6, 4.7, 100.0),
    ("mlstm", "pre", (), "1e-3", 1e-3, 2): (4.7, 4.9, 110.0),
    ("mlstm", "pre", (), "1e-3", 1e-3, 3): None,
    ("mlstm", "pre", (), "3e-3", 3e-3, 1): (4.7, 4.2, 70.0),
    ("mlstm", "pre", (), "3e-3", 3e-3, 2): (4.8, 4.2, 70.0),
    ("mlstm", "pre", (), "3e-3", 3e-3, 3): (4.9, 4.2, 70.0),
    ("lstm", "post", ("model.num_layers=4",), "1e-3", 1e-3, 1): (5.5, 5.6, 270.0),
    ("lstm", "post", ("model.num_layers=4",), "1e-3", 1e-3, 2): (5.6, 5.8, 330.0),
}


@pytest.fixture
def sweep(tmp_path):
    for number, ((model, block, extra, typed_lr, lr, seed), result) in enumerate(JOBS.items()):
        overrides = [*BASE, f"model={model}", *extra, f"seed={seed}", f"optimizer.lr={typed_lr}"]
        if number % 2:  # the order typed must not split a configuration
            overrides = overrides[::-1]
        config = {"seed": seed, "optimizer": {"lr": lr}}
        if result is None:
            write_job(tmp_path, number, overrides, config=config, error="Traceback\nValueError: x")
        else:
            write_job(tmp_path, number, overrides, metrics(model, block, seed, lr, *result), config)
    return tmp_path


def welch_p(a, b):
    """Welch's t-test by its formula, independently of scipy's ttest_ind."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), df)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_summary_picks_best_lr_averages_seeds_ranks_and_tests(sweep):
    write_report(sweep)
    rows = read_csv(sweep / "summary.csv")
    assert [r["config"] for r in rows] == ["lstm/post", "mlstm/pre", "lstm/post model.num_layers=4"]
    lstm, mlstm, deep = rows
    assert [float(r["lr"]) for r in rows] == [3e-3, 1e-3, 1e-3]
    assert [r["lrs_tried"] for r in rows] == ["2", "2", "1"]
    assert [(r["n"], r["failed"]) for r in rows] == [("3", "0"), ("2", "1"), ("2", "0")]
    assert all(r["rank_by"] == "test/loss" for r in rows)

    assert float(lstm["test/ppl_mean"]) == pytest.approx(160.0)
    assert float(lstm["test/ppl_std"]) == pytest.approx(math.sqrt(1300.0))  # ddof=1
    assert float(lstm["test/loss_mean"]) == pytest.approx(4.6)
    assert float(lstm["val/loss_mean"]) == pytest.approx(5.0)
    assert float(mlstm["test/ppl_mean"]) == pytest.approx(105.0)
    assert float(mlstm["test/ppl_std"]) == pytest.approx(math.sqrt(50.0))
    assert float(mlstm["val/ppl_mean"]) == pytest.approx((math.exp(4.6) + math.exp(4.7)) / 2)
    assert float(deep["test/ppl_mean"]) == pytest.approx(300.0)
    assert "val/word_ppl_mean" not in lstm  # no job reported it

    assert (lstm["significant"], lstm["p_value"]) == ("best", "")
    expected = welch_p([4.7, 4.9], [4.4, 4.5, 4.9])
    assert float(mlstm["p_value"]) == pytest.approx(expected, rel=1e-9)
    assert mlstm["significant"] == ("yes" if expected < 0.05 else "no")
    expected = welch_p([5.6, 5.8], [4.4, 4.5, 4.9])
    assert expected < 0.05 and float(deep["p_value"]) == pytest.approx(expected, rel=1e-9)
    assert deep["significant"] == "yes"

    text = (sweep / "results.md").read_text()
    assert text.index("## Summary") < text.index("## Jobs")
    assert "Welch's t-test on per-seed test loss against the best, two-sided, α = 0.05" in text
    assert "| mlstm/pre | 0.001 | 2 | 2 (1 failed) | " in text
    assert "| lstm/post | 0.003 | 2 | 3 | " in text and "160 ± 36.06" in text
    assert (sweep / "results.png").stat().st_size > 1000

    jobs = read_csv(sweep / "results.csv")
    failed = [j for j in jobs if j["status"].startswith("FAILED")]
    assert [(j["model"], j["seed"], float(j["lr"])) for j in failed] == [("mlstm", "3", 1e-3)]
    assert [j["seed"] for j in jobs[:3]] == ["1", "2", "3"]


def test_summary_rows_keep_the_runs_at_the_best_lr(sweep):
    from xlstm_exp.report import collect

    summary = summarize(collect(sweep))
    assert [[run["seed"] for run in entry["runs"]] for entry in summary] == [
        [1, 2, 3],
        [1, 2],
        [1, 2],
    ]
    assert {run["lr"] for run in summary[0]["runs"]} == {3e-3}


def test_single_seed_sweep_has_blank_std_and_no_significance(tmp_path):
    for number, (model, val) in enumerate([("slstm", 4.0), ("transformer", 3.5)]):
        overrides = [f"model={model}", "seed=1"]
        write_job(tmp_path, number, overrides, metrics(model, "pre", 1, 1e-3, val, val, val * 10))
    write_report(tmp_path)
    best, other = read_csv(tmp_path / "summary.csv")
    assert (best["config"], best["significant"], best["n"]) == ("transformer/pre", "best", "1")
    assert (other["config"], other["significant"], other["p_value"]) == ("slstm/pre", "n/a", "")
    assert best["test/ppl_std"] == "" and other["val/ppl_std"] == ""
    assert float(other["test/ppl_mean"]) == pytest.approx(40.0)
    assert "| slstm/pre | 0.001 | 1 | 1 | " in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").stat().st_size > 1000


def test_seed_and_lr_come_from_metrics_then_config_then_overrides():
    typed = ["model=lstm", "seed=7", "optimizer.lr=1e-2"]
    config = {"seed": 5, "optimizer": {"lr": 0.02}}
    assert job_seed_lr({"seed": 3, "lr": 0.03}, config, typed) == (3, 0.03)
    assert job_seed_lr({"seed": None}, config, typed) == (5, 0.02)
    assert job_seed_lr({}, None, typed) == (7, 0.01)
    assert job_seed_lr({}, None, ["model=lstm"]) == (None, None)


def test_labels_stay_apart_when_the_built_block_is_the_same():
    def job(block, loss):
        return {
            "overrides": ["model=mlstm", f"block={block}"],
            "model": "mlstm",
            "block": "pre",
            "status": "ok",
            "lr": 1e-3,
            "val/loss": loss,
        }

    rows = [job("pre", 4.0), job("auto", 4.1)]  # block=auto built a pre block too
    assert [entry["config"] for entry in summarize(rows)] == [
        "mlstm/pre block=pre",
        "mlstm/pre block=auto",
    ]


def test_curve_band_aligns_by_position_and_cuts_to_the_shortest():
    tokens, mean, low, high = curve_band(
        [[[10, 5.0], [20, 4.0], [30, 3.0]], [[12, 7.0], [22, 2.0]]]
    )
    assert tokens == [11, 21] and mean == [6.0, 3.0] and low == [5.0, 2.0] and high == [7.0, 4.0]


def test_configurations_rank_within_their_data_setting():
    """Losses on different tasks do not compare: each task has its own best, and a model is
    tested against that one. Ranked across tasks, parity's models would all trail majority's."""

    def job(model, task, seed, loss):
        return {
            "overrides": [f"model={model}", f"data.task={task}", f"seed={seed}"],
            "model": model,
            "block": "post",
            "status": "ok",
            "lr": 1e-3,
            "val/loss": loss,
        }

    rows = [
        job(model, task, seed, loss + 0.01 * seed)
        for model, task, loss in [
            ("lstm", "parity", 0.69),
            ("slstm", "parity", 0.50),
            ("lstm", "majority", 0.10),
            ("slstm", "majority", 0.20),
        ]
        for seed in (1, 2, 3)
    ]
    summary = summarize(rows)
    ranked = [(e["setting"], e["model"], e["significant"]) for e in summary]
    assert ranked == [
        ("data.task=parity", "slstm", "best"),
        ("data.task=parity", "lstm", "yes"),
        ("data.task=majority", "lstm", "best"),
        ("data.task=majority", "slstm", "yes"),
    ]
    assert "against the best on the same data" in significance_note(summary)
