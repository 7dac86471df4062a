"""The result file of ``bench/gpu.sh run``: ``<date>-<gpu>.md`` from what its stages left.

Standard library only: it runs on the GPU machine after the stages, whatever they installed or
failed to, and writes whatever tables are there, so a failed or timed-out stage still leaves
the others' rows.

    python3 bench/gpu_result.py slug "NVIDIA H100 80GB HBM3"      # -> h100-80gb-hbm3
    python3 bench/gpu_result.py run --work DIR --out DIR --gpu "<nvidia-smi line>" --seconds 401
"""

import argparse
import datetime
import re
from pathlib import Path

# What each table stage of `gpu.sh run` timed; its folder under --work holds gpu_kernels.py's
# markdown.
TABLES = {
    "kernels": "mLSTM and sLSTM kernels",
    "train-step": "Training step of the ~77M models",
}

# pytest's closing line, bare (-q) or between `=` signs: `3 failed, 9 passed in 80.12s`.
PYTEST_SUMMARY = re.compile(
    r"^=*\s*(\d+ (?:passed|failed|errors?|skipped)\b.* in [\d.]+s[^=]*?)\s*=*$", re.M
)


def slug(gpu_name: str) -> str:
    """A file-name form of a GPU's name: `NVIDIA H200` -> `h200` (the vendor says nothing the
    model does not)."""
    words = re.sub(r"^nvidia\s+", "", gpu_name.strip().lower())
    return re.sub(r"[^a-z0-9]+", "-", words).strip("-") or "unknown-gpu"


def result_name(gpu_name: str, suffix: str = "") -> str:
    return f"{datetime.date.today()}-{slug(gpu_name)}{suffix}.md"


def read_stages(path: Path) -> list[list[str]]:
    """gpu.sh's stage log: one `name, limit s, took s, exit` line (tab-separated) a stage."""
    if not path.is_file():
        return []
    return [line.split("\t") for line in path.read_text().splitlines() if line.count("\t") == 3]


def exit_text(code: str) -> str:
    # timeout(1) exits 124 when its limit ended the command, 137 when it had to kill it.
    return {"0": "ok", "124": "timed out", "137": "killed at its limit"}.get(code, f"exit {code}")


def tests_summary(log: Path) -> str:
    """pytest's last summary line (`12 passed, 1 failed in 80.12s`), or why there is none."""
    if not log.is_file():
        return "not run"
    found = PYTEST_SUMMARY.findall(log.read_text())
    return found[-1] if found else "no pytest summary (stopped early? see gpu-run.log)"


def table_body(folder: Path, keep_header: bool) -> list[str]:
    """The markdown of one table stage less its title line; with `keep_header` false, only its
    sections (from the first `## `), as the first stage's header already gives versions."""
    reports = sorted(folder.glob("*.md"))
    if not reports:
        return []
    lines = reports[-1].read_text().splitlines()
    if keep_header:
        return lines[2:] if lines and lines[0].startswith("# ") else lines
    first = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    return lines[first:]


def run_report(work: Path, gpu: str, seconds: int, bound: int) -> str:
    stages = read_stages(work / "stages.tsv")
    failed = [f"{name} ({exit_text(code)})" for name, _, _, code in stages if code != "0"]
    name = gpu.split(",")[0].strip() or "unknown GPU"
    lines = [
        f"# GPU run, {datetime.date.today()}: {name}",
        "",
        f"- card (nvidia-smi name, driver, memory, max SM clock): {gpu or 'not read'}",
        f"- command: `bench/gpu.sh run`, {seconds} s end to end (bound {bound} s); "
        f"failed stages: {', '.join(failed) or 'none'}",
        f"- tests/test_triton_kernels.py on the GPU: {tests_summary(work / 'tests.log')}",
        "",
        "| stage | limit s | took s | result |",
        "|---|---|---|---|",
        *(f"| {n} | {limit} | {took} | {exit_text(code)} |" for n, limit, took, code in stages),
    ]
    first = True
    for stage, what in TABLES.items():
        body = table_body(work / stage, keep_header=first)
        if body:
            lines += ["", *body]
            first = False
        else:
            lines += ["", f"## {what}: no table (see gpu-run.log, stage `{stage}`)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("slug", help="print a GPU name's file-name form").add_argument("gpu")
    run = commands.add_parser("run", help="write <date>-<gpu>.md into --out")
    run.add_argument("--work", type=Path, required=True, help="the folder the stages wrote in")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--gpu", default="", help="nvidia-smi's csv line: name, driver, ...")
    run.add_argument("--seconds", type=int, required=True, help="the run's time so far")
    run.add_argument("--bound", type=int, default=480, help="the run's time bound, seconds")
    args = parser.parse_args()
    if args.command == "slug":
        print(slug(args.gpu))
        return
    path = args.out / result_name(args.gpu.split(",")[0])
    path.write_text(run_report(args.work, args.gpu, args.seconds, args.bound))
    print(path.read_text())
    print(f"written to {path}")


if __name__ == "__main__":
    main()
