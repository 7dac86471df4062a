"""End-to-end runs of train.py as a user types them (subprocesses, a few seconds each)."""

import json
import math
import re

import pytest
from helpers import ENV, TINY, model_from_checkpoint, run_script, windowed_loss

pytestmark = pytest.mark.slow


def test_single_run_writes_metrics_and_respects_the_floor(tmp_path):
    result = run_script("train.py", "model=lstm", "block=post", *TINY, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in [
        "model",
        "block",
        "data",
        "params",
        "params_non_embedding",
        "val/loss",
        "val/ppl",
        "train/tokens_per_s",
        "wall_time_s",
        "val/floor_ppl",
    ]:
        assert key in metrics, key
    assert (metrics["model"], metrics["block"], metrics["data"]) == ("lstm", "post", "synthetic")
    assert metrics["global_step"] == 4
    # The reported loss, recomputed in plain torch from the checkpoint of the weights it scores:
    # the mean NLL over every target of the validation split, each window of 32 targets
    # predicted from its own 32 inputs (3,999 targets: 124 windows and one of 31). A mean over
    # batches, padding counted as targets or another checkpoint's weights are all further off.
    best = tmp_path / "checkpoints" / f"best-step{metrics['best_step']}.ckpt"
    model, data = model_from_checkpoint(best)
    loss = windowed_loss(model, data.tokens("val"), 32)
    assert metrics["val/loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(math.exp(loss), rel=1e-4)
    assert metrics["val/floor_ppl"] == pytest.approx(data.floor_ppl("val"), rel=1e-9)
    saved = (tmp_path / "config.yaml").read_text()
    assert "${" not in saved and "model:" in saved, "the resolved config is saved"
    assert re.search(
        r"^  val +loss \d+\.\d{4}  ppl [\d.]+  \(true-entropy floor", result.stdout, re.M
    )


def test_run_without_evaluation_still_writes_metrics(tmp_path):
    """limit_val_batches=0 (no validation, as benchmarks run) is a complete run, not a crash."""
    no_eval = ["trainer.limit_val_batches=0", "test=false", f"hydra.run.dir={tmp_path}"]
    result = run_script("train.py", "model=lstm", "block=post", *TINY, *no_eval)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "val/loss" not in metrics
    assert metrics["global_step"] == 4 and metrics["train/tokens"] > 0


def test_multirun_makes_one_output_dir_per_job(tmp_path):
    result = run_script(
        "train.py", "-m", "model=lstm,transformer", *TINY, f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(tmp_path.glob("*/metrics.json"), key=lambda p: p.parent.name)
    assert [p.parent.name for p in runs] == ["0", "1"]
    assert [json.loads(p.read_text())["model"] for p in runs] == ["lstm", "transformer"]


@pytest.mark.parametrize(
    ("override", "valid"), [("model=foo", "transformer"), ("block=middle", "post")]
)
def test_unknown_option_lists_the_choices(override, valid):
    result = run_script("train.py", override)
    assert result.returncode != 0
    assert "Available options" in result.stderr and valid in result.stderr
    assert "Traceback" not in result.stderr


def test_wandb_offline_run_records_config_and_metrics_under_a_token_budget(tmp_path):
    tiny = [o for o in TINY if o != "logger=none"]
    env = {**ENV, "WANDB_MODE": "offline"}
    budget = ["max_tokens=1024", "trainer.log_every_n_steps=1"]  # 8 x 32 tokens a step: 4 steps
    run_dir = f"hydra.run.dir={tmp_path}"
    result = run_script("train.py", "logger=wandb", *tiny, *budget, run_dir, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["global_step"] == 4
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    # The offline record holds the run's name, config keys and metric names as plain strings.
    record = run_file.read_bytes()
    for text in [
        b"mlstm-pre-synthetic",
        b"d_model",
        b"val/ppl",
        b"train/loss",
        b"grad_norm",
        b"lr/pg1",
    ]:
        assert text in record, text
