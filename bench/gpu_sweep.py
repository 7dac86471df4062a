"""`bench/gpu.sh sweep`: a first GPU perplexity table, `experiment=wt2_gpu` for the four models
inside one call of a few minutes.

Every model trains on the same number of tokens (a fixed-budget comparison, each with its whole
cosine schedule): what the slowest model is assumed to train in its share of the time
(`--tokens-per-s`). Lightning's `trainer.max_time` caps each job's fit at that share, so a model
slower than assumed stops early instead of taking the next model's time; its row's `tokens` then
shows fewer tokens than the others'. The sweep's own tables (`xlstm_exp.report`) are written
whatever happened, so a timed-out sweep still reports its finished jobs.

    python3 bench/gpu_sweep.py --data <WikiText folder> --seconds 420 --out "$OUT"
    python3 bench/gpu_sweep.py --data <WikiText folder> --seconds 420 --dry-run  # plan, command
"""

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from gpu_result import result_name

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("lstm", "slstm", "mlstm", "transformer")
# Training tokens/s of the slowest of the four ~20M models (the sLSTM's sequential steps,
# Lightning's per-step work) on an H100/H200: assumed, not measured; what it was derived from is
# in bench/results/2026-11-29-bench-comment-figures.md. The sweep's `tokens/s` column gives the
# number to use next time.
TOKENS_PER_S = 100_000
# Seconds, estimated, that are not training steps. Once a sweep: Python, torch, Lightning and
# Hydra imports; and the tables at the end (kept out of the sweep's own time limit).
START_S = 15
TABLES_S = 10
# Each job, before its fit: the tokenizer (built by the first job, read from its cache after),
# the validation and test splits tokenized, the model built and moved to the GPU.
SETUP_S = 15
# Each job, inside its fit but not training: Triton compiles at the first steps, two
# validations of the whole split, checkpoint writes.
FIT_EXTRA_S = 25
# Each job, after its fit: the best checkpoint validated again and the test split scored.
EVALUATE_S = 15


@dataclass(frozen=True)
class Plan:
    job_s: float  # each model's share of the sweep
    max_time_s: int  # trainer.max_time: the cap on one job's fit
    steps: int  # optimizer steps of each model
    tokens: int  # training tokens of each model (max_tokens)
    val_every: int  # trainer.val_check_interval: validated halfway and at the end


def batch_tokens() -> int:
    """Tokens of one optimizer step, as the experiment's config sets them."""
    data = yaml.safe_load((ROOT / "conf/experiment/wt2_gpu.yaml").read_text())["data"]
    return data["batch_size"] * data["context_length"]


def plan(seconds: float, models: int, tokens_per_s: float, per_step: int) -> Plan:
    """Split `seconds` between `models` jobs; the fixed costs above come off each share."""
    job_s = (seconds - START_S - TABLES_S) / models
    max_time_s = int(job_s - SETUP_S - EVALUATE_S)
    # An even number of steps: one validation halfway, one at the end.
    steps = 2 * int(tokens_per_s * (max_time_s - FIT_EXTRA_S) / per_step / 2)
    if steps < 2:
        raise ValueError(
            f"{seconds:.0f} s leave no training time for {models} models: each job needs "
            f"more than {SETUP_S + FIT_EXTRA_S + EVALUATE_S} s, and the sweep "
            f"{START_S + TABLES_S} s besides"
        )
    return Plan(job_s, max_time_s, steps, steps * per_step, steps // 2)


def overrides(p: Plan, data: str) -> list[str]:
    minutes, seconds = divmod(p.max_time_s, 60)
    return [
        "experiment=wt2_gpu",
        f"model={','.join(MODELS)}",
        "logger=csv",  # the GPU machine reaches no network, W&B's included
        f"data.path={data}",
        "data.name=wikitext-2-v1",
        f"max_tokens={p.tokens}",
        "stop_early=false",  # a fixed budget: every model trains on the same tokens
        f"trainer.val_check_interval={p.val_every}",
        f"+trainer.max_time=00:00:{minutes:02d}:{seconds:02d}",
    ]


def run(command: list[str], timeout: float) -> str:
    """Run the sweep; on a timeout end it with everything it started (data loader workers)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    child = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        code = child.wait(timeout=timeout)
        return "finished" if code == 0 else f"exit {code}"
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return f"stopped at its limit of {timeout:.0f} s"


def tables(sweep_dir: Path) -> str:
    """The sweep's results.md, rebuilt from what its jobs wrote (also after a hard stop)."""
    from xlstm_exp.report import job_dirs, write_report

    if not job_dirs(sweep_dir):
        return "No job started (see gpu-sweep.log).\n"
    write_report(sweep_dir)
    return (sweep_dir / "results.md").read_text()


def result(p: Plan, shown: str, gpu: str, outcome: str, took: float, body: str) -> str:
    return (
        f"# WikiText-2 on one GPU: four ~20M-parameter models, {gpu}\n\n"
        "`bench/gpu.sh sweep`: `experiment=wt2_gpu` (word-level WikiText-2, ~20M parameters, 4 "
        "blocks, context 256, batch 32, bf16-mixed), one seed, at a budget that fits one "
        f"8-minute call: {p.tokens:,} training tokens for each model ({p.steps} steps), "
        f"validated at steps {p.val_every} and {p.steps}, scored at the best checkpoint on "
        f"the whole validation and test splits. Each fit was capped at {p.max_time_s} s "
        "(`trainer.max_time`): a row with fewer tokens hit that cap. "
        f"Sweep: {outcome}, {took:.0f} s.\n\n"
        f"```bash\n{shown}\n```\n\n{body}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="local WikiText folder in the Hub layout")
    parser.add_argument("--seconds", type=float, required=True, help="for the whole sweep")
    parser.add_argument("--tokens-per-s", type=float, default=TOKENS_PER_S)
    parser.add_argument("--gpu", default="", help="the GPU's name, for the file name")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument("--sweep-dir", type=Path, default=Path(tempfile.gettempdir()) / "wt2_gpu")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and command")
    parser.add_argument("extra", nargs="*", help="more train.py overrides (a test's tiny sweep)")
    args = parser.parse_args()
    gpu = args.gpu or "unknown GPU"  # gpu.sh passes what nvidia-smi said, nothing without it

    try:
        p = plan(args.seconds, len(MODELS), args.tokens_per_s, batch_tokens())
    except ValueError as err:
        parser.error(str(err))
    sweep_dir = args.sweep_dir.resolve()
    settings = [*overrides(p, str(Path(args.data).resolve())), *args.extra]
    command = [sys.executable, "train.py", "-m", *settings, f"hydra.sweep.dir={sweep_dir}"]
    shown = ["python", "train.py", "-m", *overrides(p, "<WikiText folder>"), *args.extra]
    print(f"{p}\n{shlex.join(command)}", flush=True)
    if args.dry_run:
        return
    if not (Path(args.data) / "wikitext-2-v1").is_dir():
        sys.exit(f"{args.data} holds no wikitext-2-v1 folder: give a WikiText folder (Hub layout)")

    shutil.rmtree(sweep_dir, ignore_errors=True)
    start = time.monotonic()
    outcome = run(command, timeout=args.seconds - TABLES_S)
    took = time.monotonic() - start
    body = tables(sweep_dir)
    path = args.out / result_name(gpu, "-wt2_gpu")
    path.write_text(result(p, shlex.join(shown), gpu, outcome, took, body))
    for made, suffix in [("summary.csv", "-summary.csv"), ("results.png", ".png")]:
        if (sweep_dir / made).is_file():
            shutil.copy(sweep_dir / made, path.with_name(path.stem + suffix))
    print(path.read_text())
    print(f"written to {path}")


if __name__ == "__main__":
    main()
