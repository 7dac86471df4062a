"""What a run prints: each message once, no dependency noise, a progress line people read, the
model as a table of its blocks, and a final summary table; the same lines in the run's log."""

import logging
import re
import warnings
from types import SimpleNamespace

import pytest
import torch
from helpers import ENV, TINY, run_script

from xlstm_exp import progress
from xlstm_exp.console_noise import DROPPED_WARNINGS, route_dependency_output
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.model_summary import module_rows
from xlstm_exp.models import LanguageModel
from xlstm_exp.readable import readable_count, readable_duration

NOISE = ["💡", "litlogger", "LeafSpec", "anonymous setting", "SumMetric", "limit_val_batches"]


@pytest.mark.slow
def test_a_run_prints_each_line_once_without_noise_and_with_readable_progress(tmp_path):
    tiny = [o for o in TINY if o != "logger=none"]
    options = [
        "logger=wandb",
        "callbacks.progress_bar.every_n_steps=2",
        f"hydra.run.dir={tmp_path}",
    ]
    result = run_script("train.py", *tiny, *options, env={**ENV, "WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    # W&B frames its own report with bare "wandb:" lines; every other line is said once.
    lines = [line for line in console.splitlines() if line.strip() not in ("", "wandb:")]
    repeated = sorted({line for line in lines if lines.count(line) > 1})
    assert repeated == [], repeated
    assert [noise for noise in NOISE if noise in console] == []
    step = r"step \d/4  tokens [\d.]+k?  loss \d+\.\d{3}  [\d.]+k? tok/s  ETA \d+s"
    assert re.search(rf"^\[train\] {step}$", result.stdout, re.M), result.stdout
    assert re.search(rf"^\[val\]   {step}  val ppl \d+\.\d\d$", result.stdout, re.M)
    assert re.search(r"^  blocks\.1 +pre block, MLSTMMixer +[\d,]+$", result.stdout, re.M)
    for label in ["model", "parameters", "trained", "val", "test", "metrics", "best weights"]:
        assert re.search(rf"^  {label} +\S", result.stdout, re.M), label
    assert re.search(r"^  W&B run +\S+offline-run-", result.stdout, re.M)
    # The run's log keeps the same messages, with their time and source.
    log = (tmp_path / "train.log").read_text()
    assert re.search(rf"\[xlstm_exp\]\[INFO\] - \[train\] {step}$", log, re.M)
    assert "Seed set to 1234" in log and log.count("`Trainer.fit` stopped") == 1


@pytest.mark.parametrize(
    ("value", "shown"),
    [(16234, "16.2k"), (2.5e6, "2.50M"), (999.7, "1.00k"), (130, "130"), (4.5, "4.5"), (0, "0")],
)
def test_counts_read_with_three_digits_and_a_suffix(value, shown):
    assert readable_count(value) == shown


def test_durations_read_in_hours_minutes_seconds():
    assert [readable_duration(s) for s in (9, 65, 3599.6, 7380)] == [
        "9s",
        "1m05s",
        "1h00m",
        "2h03m",
    ]


def test_eta_is_the_mean_step_time_times_the_steps_left(monkeypatch):
    clock = iter([100.0, 130.0])
    monkeypatch.setattr(progress, "perf_counter", lambda: next(clock))
    throughput = progress.Throughput()
    throughput.start(step=10)  # resumed at step 10; 20 steps took 30 s
    assert throughput.eta(step=30, max_steps=130) == pytest.approx(150.0)
    assert progress.Throughput().eta(step=30, max_steps=130) is None  # not started


def test_the_model_table_counts_every_parameter_once_block_by_block():
    model = LanguageModel(100, 32, 2, 2, mixer="mlstm", slstm_at=[1], tie_weights=True)
    rows = module_rows(model)
    assert [(name, kind) for name, kind, _ in rows] == [
        ("embedding", "Embedding"),
        ("blocks.0", "pre block, MLSTMMixer"),
        ("blocks.1", "post block, SLSTMMixer"),
        ("norm", "LayerNorm"),
        ("head", "Linear"),
    ]
    assert rows[-1][2] == 0, "the tied head's weight was counted with the embedding"
    assert sum(count for *_, count in rows) == sum(p.numel() for p in model.parameters())
    assert rows[1][2] == sum(p.numel() for p in model.blocks[0].parameters())


def test_dependency_records_reach_the_root_handlers_once_and_the_advert_never(monkeypatch):
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [Keep()])
    lightning = logging.getLogger("lightning.pytorch")
    own = logging.StreamHandler()
    monkeypatch.setattr(lightning, "handlers", [own])
    monkeypatch.setattr(lightning, "propagate", False)
    monkeypatch.setattr(logging, "captureWarnings", lambda capture: None)
    route_dependency_output()
    assert lightning.handlers == [] and lightning.propagate
    logging.getLogger("lightning.pytorch.utilities").warning("GPU available: False")
    logging.getLogger("lightning.pytorch.utilities").warning(
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"
    )
    assert records == ["GPU available: False"]


def test_only_the_named_dependency_warning_is_ignored(monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    monkeypatch.setattr(logging, "captureWarnings", lambda capture: None)
    message, module = DROPPED_WARNINGS[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        route_dependency_output()
        warnings.warn_explicit(message, DeprecationWarning, "_pytree.py", 21, module=module)
        warnings.warn_explicit(message, DeprecationWarning, "ours.py", 1, module="xlstm_exp.x")
        warnings.warn_explicit("another", DeprecationWarning, "_pytree.py", 22, module=module)
    assert [(str(w.message), w.filename) for w in caught] == [
        (message, "ours.py"),
        ("another", "_pytree.py"),
    ]


def test_the_live_bar_shows_the_same_readable_fields_as_the_log_lines():
    module = LanguageModelingModule(LanguageModel(20, 8, 1, 1, mixer="lstm"))
    module.train_tokens = 1024
    metrics = {"train/loss": 4.9087, "train/tokens_per_s": 16234.0, "val/ppl": 46.634}
    trainer = SimpleNamespace(
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
        state=SimpleNamespace(fn="fit"),
        max_steps=300,
        global_step=50,
    )
    bar = progress.ReadableRichProgressBar()
    shown = {"tokens": "1.02k", "loss": "4.909", "tok/s": "16.2k", "val ppl": "46.63"}
    assert bar.get_metrics(trainer, module) == shown  # the bar draws the step itself
    fields = progress.progress_fields(trainer, module, progress.Throughput(), validated=False)
    assert progress.progress_line("[train]", fields) == (
        "[train] step 50/300  tokens 1.02k  loss 4.909  16.2k tok/s"
    )
