"""GPU benchmark of the project's Triton kernels against the official xLSTM kernels, one run.

Three sections, side by side in the same run on the same card:

1. mLSTM chunkwise kernels, forward + backward in bf16: ours (Triton and PyTorch), the official
   ``mlstm_kernels`` Triton kernels, and flash attention (SDPA) as the reference point;
2. the sLSTM recurrence, forward + backward: ours (Triton, bf16 and float32; PyTorch), the
   official ``xlstm`` sLSTM cell (CUDA and vanilla backends), and cuDNN's ``nn.LSTM``;
3. one full training step (forward, cross-entropy, backward, fused AdamW) of our xLSTM[1:0],
   the official ``xLSTMLarge`` and a GPT of the same width and depth.

The cases of sections 1 and 2 are in ``gpu_cell_cases.py``, those of section 3 in
``gpu_train_step.py``; this script runs them and writes the report.

Each row is the median of the timed repeats after warm-ups (CUDA events on a GPU,
``time.perf_counter`` on a CPU). A failing row reports its error and the run goes on; the
official packages' kernels run in child processes, so that one that crashes (the official
``triton_xl_chunk`` is known to break Triton 3.6's compiler) or wrecks the CUDA context takes no
other row with it. The markdown tables (``gpu_report.py``) are rewritten after every row.

    python bench/gpu_kernels.py --out "$OUT"            # on a GPU: writes gpu-<date>.md
    python bench/gpu_kernels.py --sections train        # one section (bench/gpu.sh times the
                                                        # kernels and the training step apart)
    python bench/gpu_kernels.py --device cpu --quick    # seconds: checks the script's logic
"""

import argparse
import datetime
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from gpu_cell_cases import Case, mlstm_cases, official_slstm_cell, slstm_cases, triton_usable
from gpu_report import SECTIONS, Outcome, environment, report, short_error
from gpu_train_step import train_cases

FULL = dict(
    mlstm=dict(B=8, NH=4, DH=256, S=(2048, 8192), torch_S=2048, attn_NH=8, attn_DH=64),
    slstm=dict(B=8, NH=4, DH=128, S=2048, slow_S=512),
    train=dict(vocab=50304, d=512, layers=8, heads=4, gpt_heads=8, B=8, S=2048),
    warmup=3,
    repeats=10,
)
QUICK = dict(
    mlstm=dict(B=2, NH=2, DH=32, S=(128, 256), torch_S=128, attn_NH=4, attn_DH=16),
    slstm=dict(B=2, NH=2, DH=16, S=64, slow_S=32),
    train=dict(vocab=512, d=64, layers=2, heads=2, gpt_heads=4, B=2, S=128),
    warmup=1,
    repeats=2,
)


def median_ms(step: Callable[[], object], device: torch.device, warmup: int, repeats: int):
    for _ in range(warmup):
        step()
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    torch.cuda.synchronize()
    events = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)


def unmet(case: Case, device: torch.device) -> list[str]:
    have = {"cuda": device.type == "cuda", "triton": triton_usable(device)}
    return [need for need in case.needs if not have[need]]


def run_case(case: Case, device: torch.device, sizes: dict) -> Outcome:
    if missing := unmet(case, device):
        return Outcome(error=f"skipped: needs {', '.join(missing)}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    bench = None
    try:
        bench = case.build()
        ms = median_ms(bench.step, device, sizes["warmup"], sizes["repeats"])
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        return Outcome(ms, bench.tokens / ms * 1e3, bench.params, peak, bench.note)
    except Exception as err:  # a failing row is reported in its table, the run goes on
        return Outcome(error=short_error(err))
    finally:
        del bench
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run_group(group: str, indices: list[int], args, remaining: float) -> dict[int, Outcome]:
    """Run a group's rows in a child process; rows it never reported get its exit status."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        results = Path(f.name)
    cmd = [sys.executable, __file__, "--device", args.device, "--group", group]
    cmd += ["--sections", args.sections, "--results", str(results)]
    cmd += ["--quick"] if args.quick else []
    # A session of its own: a timeout also ends the child's compilers.
    child = subprocess.Popen(cmd, start_new_session=True)
    try:
        code = child.wait(timeout=remaining)
        failure = (
            f"child process killed by signal {-code}"
            if code < 0
            else f"child process exited with {code}"
            if code
            else "child process gave no result"
        )
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        failure = f"timed out after {remaining:.0f} s"
    done = {}
    for line in results.read_text().splitlines():
        row = json.loads(line)
        index = row.pop("index")
        done[index] = Outcome(**row)
    results.unlink()
    return {i: done.get(i, Outcome(error=failure)) for i in indices}


def child_main(args, cases: list[Case], device, sizes: dict) -> None:
    for i, case in enumerate(cases):
        if case.group == args.group:
            outcome = run_case(case, device, sizes)
            with open(args.results, "a") as f:
                f.write(json.dumps({"index": i, **asdict(outcome)}) + "\n")


def run_all(cases: list[Case], args, device: torch.device, sizes: dict) -> None:
    """Run every row (deferred ones last, groups in child processes) within the time budget,
    rewriting the markdown report after each."""
    start = time.monotonic()
    header = environment(device, sizes)
    suffix = ("-cpu" if device.type == "cpu" else "") + ("-quick" if args.quick else "")
    path = args.out / f"gpu-{datetime.date.today()}{suffix}.md"
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes: dict[int, Outcome] = {}
    printed: set[int] = set()
    order = sorted(range(len(cases)), key=lambda i: cases[i].deferred)
    for i in order:
        if i in outcomes:  # ran with its group
            continue
        case = cases[i]
        remaining = args.budget - (time.monotonic() - start)
        if remaining <= 0:
            outcomes[i] = Outcome(error=f"skipped: time budget of {args.budget:.0f} s spent")
        elif case.group and not unmet(case, device):
            members = [j for j, c in enumerate(cases) if c.group == case.group]
            print(f"--- child process for {case.group}: rows {members}", flush=True)
            outcomes.update(run_group(case.group, members, args, min(case.timeout, remaining)))
        else:
            outcomes[i] = run_case(case, device, sizes)
        for j in sorted(set(outcomes) - printed):
            out, c = outcomes[j], cases[j]
            result = f"{out.ms:.2f} ms" if out.ms is not None else out.error
            print(
                f"[{time.monotonic() - start:5.0f} s] {c.name} | {c.config}: {result}", flush=True
            )
        printed.update(outcomes)
        path.write_text(report(cases, outcomes, header))
    print("\n" + path.read_text())
    print(f"written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repeats")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("OUT", tempfile.gettempdir())),
        help="folder for gpu-<date>.md (default: $OUT, else the temporary folder)",
    )
    parser.add_argument(
        "--prebuild",
        action="store_true",
        help="only compile the official sLSTM CUDA kernel for the benchmark's config and exit "
        "(bench/gpu.sh runs this beside the tests, so the benchmark finds it compiled)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=float("inf"),
        help="seconds after which no further case starts",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"the sections to time, comma-separated (default: all of {', '.join(SECTIONS)})",
    )
    # A child process runs one group's rows and appends their outcomes to --results.
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args()

    device = torch.device(args.device)
    sizes = QUICK if args.quick else FULL
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    makers = {
        "mlstm": lambda: mlstm_cases(sizes["mlstm"], device, dtype),
        "slstm": lambda: slstm_cases(sizes["slstm"], device, dtype),
        "train": lambda: train_cases(sizes["train"], device),
    }
    chosen = args.sections.split(",")
    if unknown := set(chosen) - set(makers):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(makers)}")
    cases = [case for section in makers if section in chosen for case in makers[section]()]
    if args.prebuild:
        cfg = sizes["slstm"]
        official_slstm_cell("cuda", cfg["B"], cfg["NH"], cfg["DH"], dtype)
        return
    if args.group:
        child_main(args, cases, device, sizes)
        return

    run_all(cases, args, device, sizes)


if __name__ == "__main__":
    main()
