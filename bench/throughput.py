"""Training throughput of the project's models against the peers, side by side in one run.

Every row is one training step (forward, cross-entropy, backward, AdamW step) of one model at the
benchmark's configuration, timed in a fresh subprocess (so peak memory is that model's own):
tokens/s from the median of the timed steps after warm-up, model FLOPs utilisation from the
matmul FLOPs PyTorch counts in one step against the machine's measured matmul peak, and step
memory: the peak resident memory above what the process holds once the model is built. Ratios
are ours / peer for the pairs that compute the same network.

    python bench/throughput.py --out bench/results   # all rows; writes <date>-<machine>.md
    python bench/throughput.py --quick               # tiny configuration: a smoke test
"""

import argparse
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from loop_overhead import training_loop_step_seconds
from throughput_report import PAIRS, add_ratios, find, table, targets, write_report
from torch.utils.flop_counter import FlopCounterMode

from xlstm_exp.allocator import keep_freed_memory

BENCH = Path(__file__).resolve().parent
# The peers live outside the project's environment (make bench installs them there).
sys.path.insert(0, str(BENCH.parent / ".bench" / "peers"))

FULL = {"vocab": 8192, "d": 256, "layers": 4, "heads": 4, "batch": 8, "threads": 2}
QUICK = {"vocab": 8192, "d": 32, "layers": 2, "heads": 4, "batch": 2, "threads": 2}
LONG_CONTEXTS = (1024, 4096)

# (label, implementation, model, block); `ours` models are the project's LanguageModel.
OURS = [
    ("lstm", "ours", "lstm", "post"),
    ("lstm", "ours", "lstm", "pre"),
    ("slstm", "ours", "slstm", "post"),
    ("slstm", "ours", "slstm", "pre"),
    ("mlstm", "ours", "mlstm", "pre"),
    ("mlstm", "ours", "mlstm", "post"),
    ("xlstm[3:1]", "ours", "xlstm", "pre"),
    ("transformer", "ours", "attention", "post"),
    ("transformer", "ours", "attention", "pre"),
]
PEERS = [
    ("lstm", "plain", "lstm", "post"),
    ("transformer", "plain", "attention", "post"),
    ("mlstm", "official", "mlstm", "pre"),
    ("slstm", "official", "slstm", "post"),
    ("mlstm", "pyxlstm", "mlstm", "-"),
    ("slstm", "pyxlstm", "slstm", "-"),
]
# The long contexts: chunkwise mLSTM is linear in the context, attention and the official
# parallel mLSTM quadratic.
LONG = [
    ("mlstm", "ours", "mlstm", "pre"),
    ("mlstm", "official", "mlstm", "pre"),
    ("transformer", "ours", "attention", "post"),
    ("transformer", "plain", "attention", "post"),
]


def build(impl: str, model: str, block: str, cfg: dict, context: int):
    """The module and its token-ids -> logits function."""
    shape = (cfg["vocab"], cfg["d"], cfg["layers"], cfg["heads"], context)
    if impl != "ours":
        from peers import BUILDERS

        return BUILDERS[impl](model, *shape)
    from xlstm_exp.models import LanguageModel

    layout = {"slstm_at": "3:1", "slstm_block": "post"} if model == "xlstm" else {}
    mixer = "mlstm" if model == "xlstm" else model
    net = LanguageModel(
        cfg["vocab"], cfg["d"], cfg["layers"], cfg["heads"], mixer=mixer, block=block, **layout
    )
    return net, net


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(row: dict, cfg: dict, steps: int, warmup: int) -> dict:
    """Time training steps of one model (run in its own process)."""
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    keep_freed_memory()  # as train.py does; for every row, peers included
    module, logits_of = build(row["impl"], row["model"], row["block"], cfg, row["context"])
    baseline = rss_mib()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    tokens = torch.randint(0, cfg["vocab"], (cfg["batch"], row["context"] + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    autocast = torch.autocast("cpu", torch.bfloat16, enabled=row["precision"] == "bf16-mixed")

    def step() -> float:
        with autocast:
            logits = logits_of(inputs)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    with FlopCounterMode(display=False) as counter:
        loss = step()  # doubles as the first warm-up step
    if loss != loss:
        raise FloatingPointError("loss is NaN")
    for _ in range(warmup - 1):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {
        "params": sum(p.numel() for p in module.parameters()),
        "step_s": median,
        "tokens_per_s": cfg["batch"] * row["context"] / median,
        "flops": counter.get_total_flops(),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline,
    }


def matmul_peak(threads: int, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Best matmul FLOP/s of this machine in `dtype` at the benchmark's thread count."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def run_row(row: dict, args) -> dict:
    """One row in a fresh interpreter; failures come back as an error message."""
    command = [sys.executable, __file__, "--row", json.dumps(row), "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup)] + (["--quick"] if args.quick else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.cfg["threads"])}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.row_timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return {**row, "error": f"over {args.row_timeout} s"}
    if done.returncode == -signal.SIGKILL:
        return {**row, "error": "killed by the system (out of memory)"}
    if done.returncode:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {**row, "error": lines[-1] if lines else f"exit {done.returncode}"}
    return {**row, **json.loads(done.stdout.strip().splitlines()[-1])}


def all_rows(args) -> list[dict]:
    """Ours and peers at the base context, the long contexts for mLSTM and attention, then the
    compared pairs again under bf16 autocast (each run measures the bf16 and float32 matmul
    peaks; the results file's header gives both)."""
    base = args.contexts[0]
    specs = [(spec, base, "float32") for spec in OURS + PEERS]
    specs += [(spec, context, "float32") for context in args.contexts[1:] for spec in LONG]
    paired = set(PAIRS) | set(PAIRS.values())
    specs += [
        (spec, base, "bf16-mixed") for spec in OURS + PEERS if spec[1:] in paired and args.bf16
    ]
    rows = [
        {
            "label": label,
            "impl": impl,
            "model": model,
            "block": block,
            "context": context,
            "precision": precision,
        }
        for (label, impl, model, block), context, precision in specs
    ]
    if args.only:
        rows = [r for r in rows if re.search(args.only, f"{r['impl']}-{r['model']}-{r['block']}")]
    return rows


def machine_name() -> str:
    model = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as f:
        names = re.findall(r"model name\s*:\s*(.+)", f.read())
    if names:
        model = names[0]
    return f"{model.strip()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    parser.add_argument("--contexts", type=int, nargs="+", help="first is the base context")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--only", help="regex over implementation-model-block")
    parser.add_argument("--row-timeout", type=int, default=600, help="seconds per row")
    parser.add_argument("--out", type=Path, help="results folder (default: print only)")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="float32 rows only")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cfg = QUICK if args.quick else FULL
    if args.row:
        print(json.dumps(measure(json.loads(args.row), args.cfg, args.steps, args.warmup)))
        return
    args.contexts = args.contexts or ([16, 32] if args.quick else [256, *LONG_CONTEXTS])

    peak = {
        "float32": matmul_peak(args.cfg["threads"], torch.float32),
        "bf16-mixed": matmul_peak(args.cfg["threads"], torch.bfloat16),
    }
    machine = machine_name()
    peaks = ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peak.items())
    print(f"{machine}; matmul peak GFLOP/s: {peaks}", flush=True)
    results = []
    for row in all_rows(args):
        results.append(run_row(row, args))
        r = results[-1]
        speed = r.get("error") or f"{r['tokens_per_s']:,.0f} tokens/s"
        print(
            f"  {r['impl']:8s} {r['model']:9s} {r['block']:4s} {r['context']:5d} "
            f"{r['precision']:10s}: {speed}",
            flush=True,
        )
    add_ratios(results)
    report = table(results, peak)
    overhead = loop_overhead(results, args)
    if overhead:
        report += "\n\n" + overhead
    report += "\n\n" + targets(results, peak)
    print(report)
    if args.out:
        path = write_report(args.out, report, machine, peak, args)
        print(f"wrote {path}")


def loop_overhead(results: list[dict], args) -> str:
    """The full training loop (train.py) against the bare step of the same model."""
    context = args.contexts[0]
    bare = find(results, "ours", "mlstm", "pre", context, "float32")
    if bare is None:
        return ""
    loop = training_loop_step_seconds(args.cfg, context, args.steps, args.warmup)
    return (
        f"Training loop: `train.py model=mlstm block=pre` at the same configuration takes "
        f"{loop * 1e3:,.0f} ms per step (median interval between steps, data, logging and "
        f"callbacks included) against {bare['step_s'] * 1e3:,.0f} ms for the bare step: "
        f"overhead {loop / bare['step_s'] - 1:+.1%}."
    )


if __name__ == "__main__":
    main()
