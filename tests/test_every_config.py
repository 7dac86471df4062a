"""Every option of every config group trains: one or two steps each, end to end."""

import math

import pytest
import torch
from helpers import CONF, GROUPS, TASK_DATA, TINY, compose_train, options, task_data, tiny_task
from wikitext_mirror import tiny_mirror

from xlstm_exp.run import train

pytestmark = pytest.mark.slow

# Options whose run needs what a CPU test cannot give, and the test that covers them instead.
ELSEWHERE = {
    ("trainer", "ddp"): "test_distributed.py runs DDP in two gloo processes",
    ("trainer", "fsdp"): "Lightning's FSDP needs CUDA; test_distributed.py checks its wrapping",
    ("hparams_search", "mlstm_optuna"): "test_sweeps.py runs a two-trial search",
}
SHORT = ["trainer.max_steps=2", "trainer.val_check_interval=2", "max_tokens=null"]


def wikitext(tmp_path) -> list[str]:
    """The WikiText data on the tests' tiny mirror, instead of TINY's built-in corpus keys."""
    mirror = tiny_mirror(tmp_path / "mirror")
    return [
        *(o for o in TINY if not o.startswith("data.")),
        f"data.path={mirror}",
        "data.name=tiny-v1",
        "data.context_length=16",
        "data.batch_size=4",
        "data.num_workers=0",
        "tokenizer.vocab_size=300",
        "tokenizer.sample_rows=100",
        f"tokenizer.cache_dir={tmp_path / 'cache'}",
    ]


def overrides_for(group: str, option: str, tmp_path) -> list[str]:
    picked = f"{group}={option}"
    uses_wikitext = group == "tokenizer" or (
        group in ("data", "experiment") and "wikitext" in option + experiment_data(option)
    )
    base = wikitext(tmp_path) if uses_wikitext else list(TINY)
    task = option if group == "data" and option in TASK_DATA else None
    task = task or (task_data(experiment_data(option)) if group == "experiment" else None)
    if task:
        base = tiny_task(task)
    if group == "tokenizer":
        base.append("data=wikitext2")
    if group == "experiment":
        # The experiments' sizes and budgets, cut to a test's; their trainer runs on the CPU.
        base += ["model.target_params=null", "model.d_model=16", "trainer=cpu"]
    if group == "trainer" and option == "gpu" and not torch.cuda.is_available():
        base.append("trainer.accelerator=cpu")  # bf16-mixed on the CPU, as on a GPU
    if (group, option) == ("debug", "overfit"):
        # Its one-batch epochs validate every 50 epochs: the short run validates at its end.
        base = [o for o in base if not o.startswith("trainer.val_check_interval")]
        return [picked, *base, "trainer.max_steps=2", "max_tokens=null"]
    return [picked, *base, *SHORT]


def experiment_data(option: str) -> str:
    path = CONF / "experiment" / f"{option}.yaml"
    return path.read_text() if path.exists() else ""


CASES = [(g, o) for g in GROUPS for o in options(g)]


@pytest.mark.parametrize(("group", "option"), CASES)
def test_option_trains(group, option, tmp_path):
    if (group, option) in ELSEWHERE:
        pytest.skip(ELSEWHERE[(group, option)])
    cfg = compose_train(overrides_for(group, option, tmp_path), tmp_path / "run")
    metrics = train(cfg)
    assert 1 <= metrics["global_step"] <= 2
    assert math.isfinite(metrics["val/loss"]), metrics
