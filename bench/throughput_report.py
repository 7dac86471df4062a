"""Tables of the throughput benchmark: rows, ours / peer ratios, the targets, the results file."""

import datetime
import re
from pathlib import Path

import torch

# Which peer row each of our rows is compared with (same network, same parameter budget).
PAIRS = {
    ("ours", "lstm", "post"): ("plain", "lstm", "post"),
    ("ours", "attention", "post"): ("plain", "attention", "post"),
    ("ours", "mlstm", "pre"): ("official", "mlstm", "pre"),
    ("ours", "slstm", "post"): ("official", "slstm", "post"),
}


def key(row: dict) -> tuple:
    return row["impl"], row["model"], row["block"], row["context"], row["precision"]


def find(results: list[dict], *wanted) -> dict | None:
    """The measured row with this key; None if it failed or was not run."""
    for r in results:
        if key(r) == wanted:
            return None if "error" in r else r
    return None


def add_ratios(results: list[dict]) -> None:
    for r in results:
        peer = PAIRS.get(key(r)[:3])
        other = find(results, *peer, *key(r)[3:]) if peer and "error" not in r else None
        if other:
            r["vs"] = f"{r['tokens_per_s'] / other['tokens_per_s']:.2f}x {other['impl']}"


def table(results: list[dict], peak: dict) -> str:
    columns = ["model", "block", "implementation", "context", "precision", "params", "tokens/s"]
    columns += ["step", "MFU", "step memory", "ours / peer"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in results:
        cells = [r["label"], r["block"], r["impl"], str(r["context"]), r["precision"]]
        if "error" in r:
            cells += ["", f"fails: {r['error'][:120]}", "", "", "", ""]
        else:
            cells += [
                f"{r['params'] / 1e6:.2f}M",
                f"{r['tokens_per_s']:,.0f}",
                f"{r['step_s'] * 1e3:,.0f} ms",
                f"{r['flops'] / r['step_s'] / peak[r['precision']]:.0%}",
                f"{r['peak_mib']:,.0f} MiB",
                r.get("vs", ""),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results: list[dict], peak: dict) -> str:
    """The targets as ratios of rows of this run. `bound` is the most the ratio could be if our
    step ran at 100% of the matmul peak (its counted FLOPs / peak) while the peer's did not
    change: where the bound is below the goal, no kernel work can reach it."""
    base = min(r["context"] for r in results)
    longest = max(r["context"] for r in results)
    mlstm, slstm = ("ours", "mlstm", "pre"), ("ours", "slstm", "post")
    lstm, attention = ("ours", "lstm", "post"), ("ours", "attention", "post")
    checks = [
        ("mLSTM vs official mLSTM", (*mlstm, base), (*PAIRS[mlstm], base), 2.0),
        (f"mLSTM context {longest} vs {base}", (*mlstm, longest), (*mlstm, base), 0.8),
        ("sLSTM vs official sLSTM (vanilla)", (*slstm, base), (*PAIRS[slstm], base), 4.0),
        ("LSTM vs plain nn.LSTM", (*lstm, base), (*PAIRS[lstm], base), 0.9),
        ("Transformer vs plain SDPA", (*attention, base), (*PAIRS[attention], base), 0.9),
    ]
    lines = [
        "| target | goal | float32 | bound | bf16-mixed | bound |",
        "|---|---|---|---|---|---|",
    ]
    for name, ours, peer, goal in checks:
        cells = [name, f">= {goal}"]
        for precision in ("float32", "bf16-mixed"):
            a, b = find(results, *ours, precision), find(results, *peer, precision)
            if a and b and a is not b:
                ideal = a["flops"] / peak[precision]
                same_model = ours[:3] == peer[:3]
                cells += [f"{a['tokens_per_s'] / b['tokens_per_s']:.2f}"]
                cells += ["" if same_model else f"{b['step_s'] / ideal:.2f}"]
            else:
                cells += ["not measured", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, report: str, machine: str, peak: dict, args) -> Path:
    cfg = args.cfg
    today = datetime.date.today().isoformat()
    slug = re.sub(r"[^a-z0-9]+", "-", machine.lower()).strip("-")
    path = out / f"{today}-{slug}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    peaks = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peak.items())
    path.write_text(
        f"# Training throughput, {today}\n\n"
        f"Machine: {machine}; PyTorch {torch.__version__}; {cfg['threads']} threads; "
        f"measured matmul peak {peaks} (MFU is against the row's precision).\n\n"
        f"Configuration: d_model {cfg['d']}, {cfg['layers']} blocks, {cfg['heads']} heads, "
        f"batch {cfg['batch']}, vocabulary {cfg['vocab']}; one step = forward, cross-entropy, "
        f"backward, AdamW. Median of {args.steps} timed steps after {args.warmup} warm-up "
        f"steps, each row in a fresh process. Command: `make bench`.\n\n{report}\n"
    )
    return path
