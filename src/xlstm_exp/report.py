"""Results of a multirun: `python -m xlstm_exp.report <sweep_dir>` -> results.md/.csv/.png.

Reads what each job wrote (`metrics.json`, or `error.txt` for a job that failed), so the table
can be rebuilt at any time and a failed job shows as a FAILED row beside the others.
"""

import argparse
import csv
import json
import math
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

COLUMNS = [
    ("job", "job"),
    ("model", "model"),
    ("block", "block"),
    ("params", "params"),
    ("params_non_embedding", "non-emb params"),
    ("val/ppl", "val ppl"),
    ("test/ppl", "test ppl"),
    ("val/word_ppl", "val word ppl"),
    ("test/word_ppl", "test word ppl"),
    ("test/bpb", "test bpb"),
    ("train/tokens", "tokens"),
    ("train/tokens_per_s", "tokens/s"),
    ("wall_time_s", "wall s"),
    ("status", "status"),
]


def job_number(job: Path, sweep_dir: Path) -> int:
    number = job.relative_to(sweep_dir).parts[0].split("_")[0]
    return int(number) if number.isdigit() else -1


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders of a sweep (those Hydra wrote a `.hydra/` into), in job order. Older sweeps
    named them after their overrides, where a path nested them deeper: any depth counts."""
    jobs = (p.parent for p in sweep_dir.rglob(".hydra") if p.parent != sweep_dir)
    return sorted(jobs, key=lambda job: job_number(job, sweep_dir))


def collect(sweep_dir: Path) -> list[dict]:
    rows = []
    for job in job_dirs(sweep_dir):
        metrics_file, error_file = job / "metrics.json", job / "error.txt"
        if metrics_file.is_file():
            row = {**json.loads(metrics_file.read_text()), "status": "ok"}
        else:
            error = error_file.read_text().strip() if error_file.is_file() else "no metrics.json"
            overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
            choices = dict(o.split("=", 1) for o in overrides if "=" in o)
            row = {
                "model": choices.get("model", "?"),
                "block": choices.get("block", "?"),
                "status": f"FAILED: {error.splitlines()[-1] if error else '?'}",
            }
        rows.append({"job": job_number(job, sweep_dir), **row})
    return rows


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "/")


def write_tables(rows: list[dict], sweep_dir: Path) -> None:
    present = [(key, title) for key, title in COLUMNS if any(key in row for row in rows)]
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([key for key, _ in present])
        writer.writerows([[row.get(key, "") for key, _ in present] for row in rows])
    lines = [
        "| " + " | ".join(title for _, title in present) + " |",
        "|" + "---|" * len(present),
        *("| " + " | ".join(cell(row.get(key)) for key, _ in present) + " |" for row in rows),
    ]
    (sweep_dir / "results.md").write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], sweep_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4))
    done = [row for row in rows if row["status"] == "ok"]
    for row in done:
        history = row.get("val/history", [])
        if history:
            curves.plot(
                [h[0] for h in history],
                [h[1] for h in history],
                "o-",
                label=f"{row['model']}/{row['block']}",
            )
    curves.set(xlabel="training tokens seen", ylabel="validation perplexity", yscale="log")
    if done:
        curves.legend(fontsize=8)
    labels = [f"{row['model']}/{row['block']}" for row in done]
    values = [row.get("test/ppl", math.nan) for row in done]
    bars.barh(labels, values)
    bars.set(xlabel="test perplexity")
    fig.tight_layout()
    fig.savefig(sweep_dir / "results.png", dpi=120)
    plt.close(fig)


def write_report(sweep_dir: Path) -> list[dict]:
    """Write results.md, results.csv and results.png into `sweep_dir`; returns the rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    if not rows:
        raise FileNotFoundError(f"{sweep_dir} holds no job folders of a Hydra multirun")
    write_tables(rows, sweep_dir)
    plot(rows, sweep_dir)
    return rows


def log_to_wandb(rows: list[dict], sweep_dir: Path, project: str) -> None:
    """The results table and plot as one more W&B run in the sweep's group."""
    import wandb

    keys = [key for key, _ in COLUMNS if any(key in row for row in rows)]
    table = wandb.Table(columns=keys, data=[[cell(row.get(key)) for key in keys] for row in rows])
    run = wandb.init(
        project=project, group=sweep_dir.name, job_type="report", name="results", dir=str(sweep_dir)
    )
    run.log({"results": table, "results_plot": wandb.Image(str(sweep_dir / "results.png"))})
    run.finish()


class SweepReport(Callback):
    """Hydra callback: at the end of a multirun, write the results into the sweep folder (and
    to W&B when the jobs logged there). `python -m xlstm_exp.report` rebuilds them any time."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not job_dirs(sweep_dir):
            return  # e.g. a sweeper that ran its jobs elsewhere
        rows = write_report(sweep_dir)
        print(f"sweep results: {sweep_dir / 'results.md'}")
        wandb_logger = (config.get("logger") or {}).get("wandb")
        if wandb_logger is not None:
            log_to_wandb(rows, sweep_dir, wandb_logger.project)


def main() -> None:
    parser = argparse.ArgumentParser(description="Tabulate and plot the jobs of a multirun.")
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args()
    write_report(args.sweep_dir)
    print((args.sweep_dir / "results.md").read_text())


if __name__ == "__main__":
    main()
