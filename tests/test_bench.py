"""The throughput benchmark: its plain references and a smoke run of the harness."""

import re
import subprocess
import sys

import pytest
from helpers import ENV, ROOT

sys.path.insert(0, str(ROOT / "bench"))
from plain_models import PlainLM  # noqa: E402

from xlstm_exp.models import LanguageModel  # noqa: E402


@pytest.mark.parametrize("mixer", ["lstm", "attention"])
def test_plain_references_are_the_same_networks_as_ours(mixer):
    """Equal parameter shapes, so a throughput gap is overhead, not a different model."""
    ours = LanguageModel(8192, 256, 4, 4, mixer=mixer, block="post")
    plain = PlainLM(8192, 256, 4, 4, mixer)
    shapes = sorted(tuple(p.shape) for p in ours.parameters())
    assert shapes == sorted(tuple(p.shape) for p in plain.parameters())


@pytest.mark.slow
def test_quick_benchmark_writes_a_table_with_ratios_and_loop_overhead(tmp_path):
    rows = "ours-(mlstm-pre|lstm-post)|plain-lstm"
    command = [sys.executable, "bench/throughput.py", "--quick", "--steps", "1", "--warmup", "1"]
    command += ["--no-bf16", "--contexts", "16", "--only", rows, "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (report,) = tmp_path.glob("*.md")
    text = report.read_text()
    assert re.search(r"\| lstm \| post \| ours \| 16 \| float32 \| [\d.]+M \| [\d,]+ \|", text)
    assert re.search(r"\| \d+\.\d\dx plain \|", text)
    assert re.search(r"overhead [+-]\d+\.\d%", text)
    assert re.search(r"\| LSTM vs plain nn.LSTM \| >= 0.9 \| \d+\.\d\d \|", text)


# --- bench/gpu.sh: the one-call GPU run and sweep ------------------------------------------


def gpu_sh_plans() -> dict[str, object]:
    """BOUND, KILL_S and the stage plans of bench/gpu.sh, as the script sets them."""
    text = (ROOT / "bench/gpu.sh").read_text()
    values = dict(re.findall(r"^(BOUND|KILL_S)=(\d+)$", text, re.M))
    plans = {
        name: [(stage, int(ends)) for stage, ends in re.findall(r"([\w-]+):(\d+)", body)]
        for name, body in re.findall(r"^(RUN_PLAN|SWEEP_PLAN)=\((.*)\)$", text, re.M)
    }
    return {"BOUND": int(values["BOUND"]), "KILL_S": int(values["KILL_S"]), **plans}


def test_gpu_sh_is_valid_bash_and_its_stages_end_inside_eight_minutes():
    assert subprocess.run(["bash", "-n", str(ROOT / "bench/gpu.sh")]).returncode == 0
    plans = gpu_sh_plans()
    assert plans["BOUND"] == 480
    for plan in (plans["RUN_PLAN"], plans["SWEEP_PLAN"]):
        ends = [end for _, end in plan]
        assert plan[0][0] == "install" and ends == sorted(ends)
        # The last stage may run KILL_S past its end before timeout(1) kills it.
        assert ends[-1] + plans["KILL_S"] <= plans["BOUND"]
    run = dict(plans["RUN_PLAN"])
    assert list(run) == ["install", "tests", "kernels", "train-step", "report"]
    assert run["train-step"] - run["kernels"] >= 120  # the ~77M step keeps time of its own


def test_gpu_sweep_plan_fits_its_share_of_the_call():
    from gpu_sweep import (
        EVALUATE_S,
        MODELS,
        SETUP_S,
        START_S,
        TABLES_S,
        TOKENS_PER_S,
        batch_tokens,
        plan,
    )

    sweep = dict(gpu_sh_plans()["SWEEP_PLAN"])
    seconds = sweep["sweep"] - sweep["install"] - gpu_sh_plans()["KILL_S"]  # the least it gets
    p = plan(seconds, len(MODELS), TOKENS_PER_S, batch_tokens())
    assert batch_tokens() == 32 * 256
    assert START_S + TABLES_S + len(MODELS) * (SETUP_S + p.max_time_s + EVALUATE_S) <= seconds
    assert p.steps % 2 == 0 and p.val_every * 2 == p.steps and p.tokens == p.steps * 32 * 256
    assert 2_000_000 < p.tokens < 20_000_000  # one to a few passes over WikiText-2's train split
    assert plan(2 * seconds, len(MODELS), TOKENS_PER_S, batch_tokens()).tokens > 2 * p.tokens
    with pytest.raises(ValueError, match="no training time"):
        plan(100, len(MODELS), TOKENS_PER_S, batch_tokens())


def test_gpu_sweep_overrides_compose_for_every_model():
    from gpu_sweep import MODELS, TOKENS_PER_S, batch_tokens, overrides, plan
    from helpers import compose_train

    p = plan(420, len(MODELS), TOKENS_PER_S, batch_tokens())
    minutes, seconds = divmod(p.max_time_s, 60)
    settings = [o for o in overrides(p, "/data/wikitext") if not o.startswith("model=")]
    for model in MODELS:
        cfg = compose_train([*settings, f"model={model}"])
        assert cfg.trainer.max_time == f"00:00:{minutes:02d}:{seconds:02d}"
        assert cfg.max_tokens == p.tokens and cfg.trainer.val_check_interval == p.val_every
        assert list(cfg.logger) == ["csv"] and cfg.stop_early is False


def test_gpu_result_keeps_what_each_stage_left(tmp_path):
    from gpu_result import run_report, slug

    assert slug("NVIDIA H200") == "h200" and slug("NVIDIA H100 80GB HBM3") == "h100-80gb-hbm3"
    (tmp_path / "stages.tsv").write_text(
        "install\t30\t4\t0\ntests\t146\t146\t124\nkernels\t150\t90\t0\n"
    )
    (tmp_path / "tests.log").write_text("....F\n1 failed, 4 passed in 80.12s (0:01:20)\n")
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels/gpu-x.md").write_text("# title\n\n- torch 2.11\n\n## 1. mLSTM\n\n| a |\n")
    text = run_report(tmp_path, "NVIDIA H200, 580.1, 143771 MiB, 1980 MHz", 401, 480)
    assert text.startswith("# GPU run, ") and ": NVIDIA H200\n" in text.splitlines()[0] + "\n"
    assert "401 s end to end (bound 480 s); failed stages: tests (timed out)" in text
    assert "1 failed, 4 passed in 80.12s (0:01:20)" in text
    assert "| tests | 146 | 146 | timed out |" in text and "- torch 2.11\n\n## 1. mLSTM" in text
    assert "## Training step of the ~77M models: no table" in text


@pytest.mark.slow
def test_quick_gpu_benchmark_runs_on_a_cpu(tmp_path):
    command = [sys.executable, "bench/gpu_kernels.py", "--device", "cpu", "--quick"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)], cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (report,) = tmp_path.glob("*.md")
    text = report.read_text()
    assert text.count("\n## ") == 3 and "skipped: needs cuda, triton" in text
    assert re.search(r"\| GPT, SDPA flash \(NH=4\) \| .* \| [\d.]+ \| [\d,]+ \|", text)


@pytest.mark.slow
def test_gpu_sweep_trains_and_tabulates_a_tiny_sweep(tmp_path):
    """The sweep's overrides run through train.py: one tiny model on a CPU, the rest of the
    sweep (four models, the GPU, the real data) left out by later overrides."""
    from wikitext_mirror import generated_rows, write_mirror

    splits = {"train": generated_rows(1, 15), "validation": generated_rows(2, 3)}
    mirror = write_mirror(
        tmp_path / "wiki", {"wikitext-2-v1": {**splits, "test": splits["validation"]}}
    )
    tiny = ["model=mlstm", "trainer.accelerator=cpu", "trainer.precision=32-true"]
    tiny += ["model.target_params=null", "model.d_model=32", "data.context_length=16"]
    tiny += ["data.batch_size=4", "data.num_workers=0", "max_tokens=128"]
    tiny += ["trainer.val_check_interval=1", f"tokenizer.cache_dir={tmp_path}"]
    command = [sys.executable, "bench/gpu_sweep.py", "--data", str(mirror), "--seconds", "420"]
    command += [
        "--gpu",
        "NVIDIA H200",
        "--out",
        str(tmp_path),
        "--sweep-dir",
        str(tmp_path / "sweep"),
    ]
    done = subprocess.run(
        [*command, "--", *tiny], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (report,) = tmp_path.glob("*-h200-wt2_gpu.md")
    text = report.read_text()
    assert "Sweep: finished" in text and "+trainer.max_time=00:00:01:" in text
    assert re.search(r"\| 0 \| mlstm \| pre \| .* \| 128 \| .* \| ok \|", text)
    assert (tmp_path / report.name.replace(".md", "-summary.csv")).is_file()
