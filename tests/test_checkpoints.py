"""Checkpoints: exact resume after pre-emption, evaluation from a checkpoint, bad files."""

import csv
import json
import math
import os
import subprocess

import pytest
import torch
import torch.nn.functional as F
from helpers import CONF, TINY, compose_train, model_from_checkpoint, run_script, windowed_loss
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from wikitext_mirror import tiny_mirror

from xlstm_exp import lm
from xlstm_exp.generate import generate
from xlstm_exp.run import run_job, train

pytestmark = pytest.mark.slow

RESUMABLE = [
    *[o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))],
    "trainer.max_steps=10",
    "trainer.val_check_interval=5",
    "trainer.log_every_n_steps=1",
    "logger=csv",
    "model.dropout=0.1",  # exercises the restored random state
    "data.train_tokens=60000",  # one epoch is longer than the run: the resume is mid-epoch
]


def train_losses(run_dir) -> dict[int, float]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    return {int(r["step"]): float(r["train/loss"]) for r in rows}


class StepClock:
    """A clock for the training loop's step timer that advances 10 ms per reading, so that
    throughput is a count of timer readings, the same on any machine."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


def test_preempted_run_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(lm, "perf_counter", StepClock())
    straight = train(compose_train(RESUMABLE, tmp_path / "straight"))
    preempt = ["+callbacks.signal._target_=helpers.SignalAtStep", "+callbacks.signal.step=4"]
    stopped = train(compose_train([*RESUMABLE, *preempt], tmp_path / "stopped"))
    checkpoint = stopped["preempted_checkpoint"]
    assert checkpoint.endswith("preempted.ckpt") and os.path.isfile(checkpoint)
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 4

    resumed = train(compose_train([*RESUMABLE, f"ckpt_path={checkpoint}"], tmp_path / "resumed"))
    expected, got = train_losses(tmp_path / "straight"), train_losses(tmp_path / "resumed")
    assert sorted(got) == list(range(4, 10)), "the resumed run continues at step 5"
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], abs=1e-6), f"step {step}"
    assert resumed["val/loss"] == pytest.approx(straight["val/loss"], abs=1e-6)
    assert resumed["global_step"] == straight["global_step"] == 10
    # Throughput counts the seconds before the pre-emption too: the same speed, not the tokens
    # of both halves over the seconds of the second (which would be 10/6 of it).
    speed = straight["train/tokens_per_s"]
    assert resumed["train/tokens"] == straight["train/tokens"]
    assert resumed["train/tokens_per_s"] == pytest.approx(speed, rel=0.2)
    # Resuming a finished run trains nothing and keeps its throughput.
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    finished = train(compose_train([*RESUMABLE, f"ckpt_path={last}"], tmp_path / "finished"))
    assert finished["global_step"] == 10
    assert finished["train/tokens_per_s"] == pytest.approx(resumed["train/tokens_per_s"])


def test_bad_checkpoints_fail_with_a_message_naming_the_file(tmp_path):
    missing = tmp_path / "missing.ckpt"
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        train(compose_train([*TINY, f"ckpt_path={missing}"], tmp_path / "a"))
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:500])
    for bad in [truncated, tmp_path / "garbage.ckpt"]:
        if not bad.exists():
            bad.write_bytes(b"not a checkpoint")
        with pytest.raises(ValueError, match=bad.name):
            train(compose_train([*TINY, f"ckpt_path={bad}"], tmp_path / bad.stem))


def test_eval_py_scores_a_checkpoint_from_its_own_config(tmp_path):
    # train.py reports the best checkpoint's numbers (here the final weights, whose last
    # validation it reuses); eval.py scores that checkpoint afresh.
    trained = train(compose_train([*TINY, "model=slstm", "block=post"], tmp_path / "run"))
    best = tmp_path / "run" / "checkpoints" / f"best-step{trained['best_step']}.ckpt"
    out = tmp_path / "eval"
    result = run_script("eval.py", f"ckpt_path={best}", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["model"], metrics["block"]) == ("slstm", "post")
    assert metrics["val/ppl"] == pytest.approx(trained["val/ppl"], rel=1e-5)
    assert metrics["test/ppl"] == pytest.approx(trained["test/ppl"], rel=1e-5)
    assert metrics["params"] == trained["params"]


def test_eval_py_stateful_scores_the_stream(tmp_path):
    train(compose_train([*TINY, "model=mlstm"], tmp_path / "run"))
    out = tmp_path / "eval"
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    stateful = ["eval.stateful=true", "eval.window=16"]
    result = run_script("eval.py", f"ckpt_path={ckpt}", *stateful, f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val/stateful_method"] == "state carried across windows of 16"
    assert "as one stream" in result.stdout
    # With the state carried from window to window, a split is scored as by one forward over
    # the whole of it.
    model, data = model_from_checkpoint(ckpt)
    for split in ("val", "test"):
        tokens = data.tokens(split)
        with torch.no_grad():
            logits = model(tokens[None, :-1])[0]
        stream = F.cross_entropy(logits.float(), tokens[1:]).item()
        assert metrics[f"{split}/stateful_loss"] == pytest.approx(stream, rel=1e-5), split
        assert metrics[f"{split}/stateful_ppl"] == pytest.approx(math.exp(stream), rel=1e-4)
    # A state dropped between windows would score each window alone: far outside that
    # tolerance (6e-4 relative on val), but only just, as a model trained for 4 steps barely
    # reads what came before its window. With windows of the context length (32), the changes
    # of the windows' losses happen to cancel in their sum (5e-6); hence windows of 16.
    tokens = data.tokens("val")
    assert abs(windowed_loss(model, tokens, 16) / metrics["val/stateful_loss"] - 1) > 1e-4


def run_generate(*args: str) -> subprocess.CompletedProcess:
    return run_script("generate.py", *args)


def test_a_preempted_job_of_a_sweep_stops_the_sweep(tmp_path):
    """A sweep's jobs run in one process, so SIGTERM or Ctrl-C is meant for all of them. Before,
    the pre-empted job was checkpointed and the sweep started the next one."""
    preempt = ["+callbacks.signal._target_=helpers.SignalAtStep", "+callbacks.signal.step=2"]
    cfg = compose_train([*RESUMABLE, *preempt, "hydra.mode=MULTIRUN"], tmp_path / "0")
    with pytest.raises(SystemExit) as stopped:
        run_job(cfg)
    assert stopped.value.code == 143
    assert (tmp_path / "0" / "checkpoints" / "preempted.ckpt").is_file()


def sampled_in_process(capsys, *overrides: str) -> str:
    """What `generate.py <overrides>` prints, sampled in this process."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("generate", overrides=list(overrides))
    capsys.readouterr()
    generate(cfg)
    return capsys.readouterr().out


def test_generate_py_continues_a_prompt_reproducibly(tmp_path, capsys):
    train(compose_train([*TINY, "model=slstm", "block=post"], tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    args = [f"ckpt_path={ckpt}", "prompt='<eod> Leli'", "max_new_tokens=12"]
    first = run_generate(*args, "seed=3", f"hydra.run.dir={tmp_path}/g")
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.startswith("<eod> Leli") and len(first.stdout.split()) == 2 + 12
    # The same seed samples the same text again (here in-process, which is quicker).
    assert sampled_in_process(capsys, *args, "seed=3") == first.stdout
    assert sampled_in_process(capsys, *args, "seed=4") != first.stdout
    bad = run_generate(*args[:1], "prompt=notaword", f"hydra.run.dir={tmp_path}/b")
    assert bad.returncode != 0 and "not in the synthetic vocabulary" in bad.stderr


def test_generate_py_from_a_wikitext_checkpoint_needs_only_path_and_prompt(tmp_path):
    mirror = tiny_mirror(tmp_path / "mirror")
    wikitext = [
        "data=wikitext2",
        f"data.path={mirror}",
        "data.name=tiny-v1",
        "data.context_length=32",
        "data.batch_size=4",
        "tokenizer.vocab_size=300",
        f"tokenizer.cache_dir={tmp_path / 'c'}",
    ]
    tiny = [o for o in TINY if not o.startswith("data.")]
    train(compose_train([*tiny, *wikitext], tmp_path / "run"))
    (tmp_path / "c").rename(tmp_path / "moved")  # the checkpoint carries its tokenizer
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = run_generate(
        f"ckpt_path={ckpt}", "prompt='The river'", "max_new_tokens=8", f"hydra.run.dir={tmp_path}/g"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("The river") and len(result.stdout) > len("The river\n")
