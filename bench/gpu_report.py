"""The markdown report of ``gpu_kernels.py``: what a row measured, and the tables of a run.

Kept apart from the runner so that the report's layout can change without touching how the rows
are run (child processes, time budget).
"""

import datetime
import importlib.metadata
import os
import sys
from dataclasses import dataclass

import torch
from gpu_cell_cases import Case

SECTIONS = {
    "mlstm": "1. mLSTM chunkwise kernels: forward + backward",
    "slstm": "2. sLSTM recurrence: forward + backward",
    "train": "3. Training step: forward, cross-entropy, backward, fused AdamW step",
}


@dataclass
class Outcome:
    """What a row measured, or why it has no time."""

    ms: float | None = None
    tokens_per_s: float | None = None
    params: int | None = None
    peak_gib: float | None = None
    note: str = ""
    error: str = ""


def short_error(err: BaseException | str) -> str:
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else "error")[:160]


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def report(cases: list[Case], outcomes: dict[int, Outcome], header: list[str]) -> str:
    """The header, then one table per section that has cases (a run may time a few sections)."""
    lines = header[:]
    for section, title in SECTIONS.items():
        if not any(case.section == section for case in cases):
            continue
        train = section == "train"
        lines += ["", f"## {title}", ""]
        columns = ["case", "config", "ms", "tokens/s", "vs first", "peak GiB"]
        columns += ["params"] if train else []
        lines += ["| " + " | ".join(columns + ["notes"]) + " |", "|---" * (len(columns) + 1) + "|"]
        first: dict[str, float] = {}  # the ratio's base: a config's first row with a time
        for i, case in enumerate(cases):
            if case.section != section:
                continue
            out = outcomes.get(i, Outcome(error="not run yet"))
            ratio = None
            if out.ms is not None:
                ratio = out.ms / first.setdefault(case.config, out.ms)
            cells = [
                case.name,
                case.config,
                fmt(out.ms, ".2f"),
                fmt(out.tokens_per_s, ",.0f"),
                fmt(ratio, ".3g"),
                fmt(out.peak_gib, ".1f"),
            ]
            cells += [fmt(out.params, ",")] if train else []
            note = "; ".join(x for x in (out.note, out.error) if x).replace("|", "\\|")
            lines.append("| " + " | ".join(cells + [note]) + " |")
    return "\n".join(lines) + "\n"


def environment(device: torch.device, sizes: dict) -> list[str]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        card = (
            f"{props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB"
        )
    else:
        card = f"CPU dry run ({os.cpu_count()} cores): no Triton, no CUDA rows"
    clock = "CUDA events" if device.type == "cuda" else "time.perf_counter"
    return [
        f"# GPU benchmark: Triton kernels, {datetime.date.today()}",
        "",
        f"- card: {card}",
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}), triton {version('triton')}, "
        f"xlstm {version('xlstm')}, mlstm_kernels {version('mlstm_kernels')}",
        f"- each row: median of {sizes['repeats']} after {sizes['warmup']} warm-ups ({clock}); "
        "`vs first`: the time over that of the section's first timed row of the same config",
        f"- command: `python bench/gpu_kernels.py {' '.join(sys.argv[1:])}`",
    ]
