"""Results of a multirun: `python -m xlstm_exp.report <sweep_dir>` -> results.md/.csv/.png and
summary.csv.

Reads what each job wrote (`metrics.json`, or `error.txt` for a job that failed), so the tables
can be rebuilt at any time and a failed job shows as a FAILED row beside the others. The summary
(`sweep_summary`) groups the jobs over seeds and learning rates.
"""

import argparse
import csv
import json
import math
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from xlstm_exp.sweep_summary import (
    SHOWN,
    csv_columns,
    curve_band,
    job_seed_lr,
    significance_note,
    summarize,
)

COLUMNS = [
    ("job", "job"),
    ("model", "model"),
    ("block", "block"),
    ("seed", "seed"),
    ("lr", "lr"),
    ("params", "params"),
    ("params_non_embedding", "non-emb params"),
    ("val/ppl", "val ppl"),
    ("test/ppl", "test ppl"),
    ("val/word_ppl", "val word ppl"),
    ("test/word_ppl", "test word ppl"),
    ("test/bpb", "test bpb"),
    ("val/norm_acc", "val norm acc"),
    ("test/norm_acc", "test norm acc"),
    ("test/seq_acc", "test seq acc"),
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


def read_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def collect(sweep_dir: Path) -> list[dict]:
    """One row per job: its metrics (or FAILED status), `overrides` (as typed), `seed`, `lr`."""
    rows = []
    for job in job_dirs(sweep_dir):
        metrics_file, error_file = job / "metrics.json", job / "error.txt"
        overrides = [str(o) for o in read_yaml(job / ".hydra" / "overrides.yaml") or []]
        if metrics_file.is_file():
            row = {**json.loads(metrics_file.read_text()), "status": "ok"}
        else:
            error = error_file.read_text().strip() if error_file.is_file() else "no metrics.json"
            choices = dict(o.split("=", 1) for o in overrides if "=" in o)
            row = {
                "model": choices.get("model", "?"),
                "block": choices.get("block", "?"),
                "status": f"FAILED: {error.splitlines()[-1] if error else '?'}",
            }
        config = read_yaml(job / "config.yaml")
        row["seed"], row["lr"] = job_seed_lr(
            row, config if isinstance(config, dict) else None, overrides
        )
        rows.append({"job": job_number(job, sweep_dir), **row, "overrides": overrides})
    return rows


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "/")


def markdown_table(titles: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(titles) + " |",
        "|" + "---|" * len(titles),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def write_csv(path: Path, keys: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        writer.writerows(
            [["" if row.get(key) is None else row[key] for key in keys] for row in rows]
        )


def summary_cells(summary: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Titles and cells of the summary table: mean ± std over seeds (std blank below two)."""
    shown = [(m, title) for m, title in SHOWN if any(f"{m}_mean" in e for e in summary)]
    titles = ["configuration", "best lr", "lrs tried", "n"] + [t for _, t in shown]
    titles += ["p", "significant"]
    cells = []
    for entry in summary:
        n = f"{entry['n']} ({entry['failed']} failed)" if entry["failed"] else str(entry["n"])
        row = [cell(entry["config"]), cell(entry["lr"]), str(entry["lrs_tried"]), n]
        for metric, _ in shown:
            mean, std = entry.get(f"{metric}_mean"), entry.get(f"{metric}_std")
            row.append(cell(mean) + (f" ± {cell(std)}" if std is not None else ""))
        p = entry["p_value"]
        cells.append(row + ["" if p is None else f"{p:.3g}", entry["significant"]])
    return titles, cells


def present_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """The COLUMNS some job reports, with the test accuracy of each group (e.g. length bucket)
    after the test accuracy."""
    groups = sorted({key for row in rows for key in row if key.startswith("test/norm_acc/")})
    columns = []
    for key, title in COLUMNS:
        columns.append((key, title))
        if key == "test/norm_acc":
            columns += [(group, f"test norm acc {group.split('/', 2)[2]}") for group in groups]
    return [(key, title) for key, title in columns if any(key in row for row in rows)]


def write_tables(rows: list[dict], summary: list[dict], sweep_dir: Path) -> None:
    present = present_columns(rows)
    write_csv(sweep_dir / "results.csv", [key for key, _ in present], rows)
    write_csv(sweep_dir / "summary.csv", csv_columns(summary), summary)
    jobs = [[cell(row.get(key)) for key, _ in present] for row in rows]
    lines = [
        "## Summary over seeds and learning rates",
        "",
        "Each configuration at its best learning rate (lowest mean validation loss over its "
        "seeds); mean ± std over seeds, n finished seeds at that rate.",
        f"{significance_note(summary)}.",
        "",
        *markdown_table(*summary_cells(summary)),
        "",
        "## Jobs",
        "",
        *markdown_table([title for _, title in present], jobs),
    ]
    (sweep_dir / "results.md").write_text("\n".join(lines) + "\n")


def plot(summary: list[dict], sweep_dir: Path) -> None:
    """Left: each configuration's validation curve at its best lr, mean over seeds with a
    min-max band. Right: test perplexity (val where untested), mean with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for entry in summary:
        tokens, mean, low, high = curve_band([run.get("val/history") for run in entry["runs"]])
        if tokens:
            (line,) = curves.plot(tokens, mean, "o-", label=f"{entry['config']} (n={entry['n']})")
            curves.fill_between(tokens, low, high, color=line.get_color(), alpha=0.2)
            drawn = True
    curves.set(xlabel="training tokens seen", ylabel="validation perplexity", yscale="log")
    curves.xaxis.set_major_formatter(EngFormatter())  # 400k, 1M: raw counts overlap
    if drawn:
        curves.legend(fontsize=8)
    split = "test" if any("test/ppl_mean" in entry for entry in summary) else "val"
    done = [entry for entry in summary if entry["n"]]
    bars.barh(
        [entry["config"] for entry in done],
        [entry.get(f"{split}/ppl_mean", math.nan) for entry in done],
        xerr=[entry.get(f"{split}/ppl_std") or 0.0 for entry in done],
        capsize=3,
    )
    bars.invert_yaxis()  # best on top, as in the table
    bars.set(xlabel=f"{split} perplexity (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(sweep_dir / "results.png", dpi=120)
    plt.close(fig)


def write_report(sweep_dir: Path) -> list[dict]:
    """Write results.md, results.csv, summary.csv and results.png into `sweep_dir`; returns the
    per-job rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    if not rows:
        raise FileNotFoundError(f"{sweep_dir} holds no job folders of a Hydra multirun")
    summary = summarize(rows)
    write_tables(rows, summary, sweep_dir)
    plot(summary, sweep_dir)
    return rows


def log_to_wandb(rows: list[dict], sweep_dir: Path, project: str) -> None:
    """The results and summary tables and the plot as one more W&B run in the sweep's group."""
    import wandb

    keys = [key for key, _ in present_columns(rows)]
    table = wandb.Table(columns=keys, data=[[cell(row.get(key)) for key in keys] for row in rows])
    titles, cells = summary_cells(summarize(rows))
    run = wandb.init(
        project=project, group=sweep_dir.name, job_type="report", name="results", dir=str(sweep_dir)
    )
    run.log(
        {
            "results": table,
            "summary": wandb.Table(columns=titles, data=cells),
            "results_plot": wandb.Image(str(sweep_dir / "results.png")),
        }
    )
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
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a folder; give the folder of a multirun")
    if not job_dirs(args.sweep_dir):
        parser.error(f"{args.sweep_dir} holds no job folders of a Hydra multirun")
    write_report(args.sweep_dir)
    print((args.sweep_dir / "results.md").read_text())


if __name__ == "__main__":
    main()
