"""A sweep summarised over seeds and learning rates, as architecture comparisons report it.

Jobs whose overrides differ only in `seed=` and `optimizer.lr=` are one configuration. Each
configuration is shown at its own best learning rate, so no model is judged at a learning rate
tuned for another, as mean ± std over seeds, with Welch's t-test against the best configuration
of its data setting (its `data.*` overrides, e.g. one formal task or one MQAR context length:
losses on different data do not compare): seeds of two models are independent samples whose
spread need not be equal.
"""

import math
import statistics

from scipy import stats

SEED_KEY, LR_KEY = "seed", "optimizer.lr"
ALPHA = 0.05
# Summarised where the jobs report them (word ppl and bpb only on WikiText, accuracies on task
# data, test/* when tested).
METRICS = [
    "val/loss",
    "test/loss",
    "val/ppl",
    "test/ppl",
    "val/word_ppl",
    "test/word_ppl",
    "val/bpb",
    "test/bpb",
    "val/norm_acc",
    "test/norm_acc",
]
# The columns of results.md: losses rank and test but would crowd it, summary.csv holds them.
SHOWN = [
    ("val/ppl", "val ppl"),
    ("test/ppl", "test ppl"),
    ("val/word_ppl", "val word ppl"),
    ("test/word_ppl", "test word ppl"),
    ("val/bpb", "val bpb"),
    ("test/bpb", "test bpb"),
    ("val/norm_acc", "val norm acc"),
    ("test/norm_acc", "test norm acc"),
]


def override_key(override: str) -> str:
    # `+seed=1` and `++optimizer.lr=...` set the same values as their plain forms.
    return override.partition("=")[0].lstrip("+~")


def config_overrides(overrides: list[str]) -> tuple[str, ...]:
    """What makes a job's configuration: its overrides less seed and learning rate, as a set
    (the order they were typed in does not change the config)."""
    return tuple(sorted({o for o in overrides if override_key(o) not in (SEED_KEY, LR_KEY)}))


def data_setting(key: tuple[str, ...]) -> str:
    """The `data.*` overrides of a configuration: the data it is ranked on."""
    return " ".join(o for o in key if override_key(o).startswith("data."))


def _first(*values):
    return next((v for v in values if v is not None), None)


def _as(kind, value):
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        return None  # e.g. `seed=null` as typed


def job_seed_lr(metrics: dict, config: dict | None, overrides: list[str]) -> tuple:
    """A job's (seed, lr): from its metrics.json, else its config.yaml (which a job that failed
    usually wrote before failing), else what was typed on the command line."""
    config = config or {}
    optimizer = config.get("optimizer") if isinstance(config.get("optimizer"), dict) else {}
    typed = {override_key(o): o.partition("=")[2] for o in overrides if "=" in o}
    seed = _first(metrics.get("seed"), config.get("seed"), typed.get(SEED_KEY))
    lr = _first(metrics.get("lr"), optimizer.get("lr"), typed.get(LR_KEY))
    return _as(int, seed), _as(float, lr)


def _finished(row: dict) -> bool:
    return row.get("status") == "ok"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None  # ddof=1


def _order(value: float | None) -> tuple:
    # Diverged (NaN) and unknown values sort after every real one.
    return (value is None or math.isnan(value), value or 0.0)


def _has(entry: dict, metric: str) -> bool:
    value = entry.get(f"{metric}_mean")
    return value is not None and not math.isnan(value)


def best_lr(jobs: list[dict]):
    """The learning rate with the lowest mean `val/loss` over its finished seeds."""
    by_lr: dict = {}
    for job in jobs:
        if _finished(job) and job.get("val/loss") is not None:
            by_lr.setdefault(job.get("lr"), []).append(job["val/loss"])
    if by_lr:
        return min(by_lr, key=lambda lr: (_order(_mean(by_lr[lr])), lr or 0.0))
    tried = {job.get("lr") for job in jobs} - {None}
    return tried.pop() if len(tried) == 1 else None


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's unequal-variance t-test; None when a side has fewer than two
    values (no variance to estimate) or the test is undefined (e.g. no spread on either side)."""
    if len(a) < 2 or len(b) < 2:
        return None
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def _labels(groups: list[tuple[tuple, str]]) -> list[str]:
    """`model/block` plus the overrides that tell the configurations apart. Model and block
    overrides are left out, the built model/block says them, unless that leaves two alike
    (e.g. block=auto building the same block as block=pre)."""
    order: list[str] = []
    for key, _ in groups:
        order += [override_key(o) for o in key if override_key(o) not in order]
    valued = [{override_key(o): o for o in key} for key, _ in groups]
    differing = [k for k in order if len({v.get(k) for v in valued}) > 1]
    for skip in ({"model", "block"}, set()):
        labels = [
            " ".join([base] + [v[k] for k in differing if k not in skip and k in v])
            for (_, base), v in zip(groups, valued, strict=True)
        ]
        if len(set(labels)) == len(labels):
            break
    return labels


def summarize(rows: list[dict]) -> list[dict]:
    """One row per configuration; data settings in the order the sweep ran them, best first
    within each. `rows` are the per-job rows of `report.collect` (with `overrides`, `seed`,
    `lr`, `status` and the metrics). Each summary row holds `config` (its label), `model`,
    `block`, `overrides`, `setting` (its `data.*` overrides), `lr` (best), `lrs_tried`, `n`
    (finished seeds at that lr), `failed` (failed jobs at that lr), `<metric>_mean`/`_std` for
    the METRICS present, `rank_by`, `p_value` and `significant` against the best of its
    setting, and `runs`: the finished jobs at that lr."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault(config_overrides(row.get("overrides") or []), []).append(row)

    groups, summary = [], []
    for key, jobs in grouped.items():
        lr = best_lr(jobs)
        tried = {job.get("lr") for job in jobs} - {None}
        # A job whose lr is unknown can only have run at the lr when the configuration had one.
        at_lr = [j for j in jobs if j.get("lr") == lr or (j.get("lr") is None and len(tried) < 2)]
        runs = [j for j in at_lr if _finished(j)]
        built = runs or jobs  # a configuration of failed jobs only: what its overrides chose
        model = "/".join(dict.fromkeys(str(j.get("model", "?")) for j in built))
        block = "/".join(dict.fromkeys(str(j.get("block", "?")) for j in built))
        failed = len([j for j in (at_lr if runs else jobs) if not _finished(j)])
        entry = {
            "model": model,
            "block": block,
            "overrides": " ".join(key),
            "setting": data_setting(key),
            "lr": lr,
            "lrs_tried": len(tried) or 1,
            "n": len(runs),
            "failed": failed,
            "runs": runs,
        }
        for metric in METRICS:
            values = [j[metric] for j in runs if j.get(metric) is not None]
            if values:
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean(values), _std(values)
        groups.append((key, f"{model}/{block}"))
        summary.append(entry)
    for entry, label in zip(summary, _labels(groups), strict=True):
        entry["config"] = label

    # Test loss ranks when every configuration that finished was tested; mixing the two would
    # compare unlike numbers.
    finished = [entry for entry in summary if entry["n"]]
    tested = finished and all("test/loss_mean" in entry for entry in finished)
    rank_by = "test/loss" if tested else "val/loss"
    settings = list(dict.fromkeys(entry["setting"] for entry in summary))
    summary.sort(key=lambda e: (settings.index(e["setting"]), _order(e.get(f"{rank_by}_mean"))))
    best = {}
    for entry in summary:
        if entry["setting"] not in best:
            best[entry["setting"]] = entry if _has(entry, rank_by) else None

    def losses(entry: dict) -> list[float]:
        return [j[rank_by] for j in entry["runs"] if j.get(rank_by) is not None]

    for entry in summary:
        entry["rank_by"] = rank_by
        top = best[entry["setting"]]
        if entry is top:
            entry["p_value"], entry["significant"] = None, "best"
            continue
        p = welch_p(losses(entry), losses(top)) if top else None
        entry["p_value"] = p
        entry["significant"] = "n/a" if p is None else ("yes" if p < ALPHA else "no")
    return [{"config": entry.pop("config"), **entry} for entry in summary]


def significance_note(summary: list[dict]) -> str:
    """The line results.md states the significance test with."""
    split = summary[0]["rank_by"].split("/")[0] if summary else "test"
    against = "the best"
    if len({entry["setting"] for entry in summary}) > 1:
        against = "the best on the same data (its `data.*` overrides)"
    return f"Welch's t-test on per-seed {split} loss against {against}, two-sided, α = {ALPHA:g}"


def csv_columns(summary: list[dict]) -> list[str]:
    """summary.csv's columns: every key of the rows but `runs`, metrics only where present."""
    fixed = ["config", "model", "block", "overrides", "setting", "lr", "lrs_tried", "n", "failed"]
    metrics = [
        f"{metric}_{stat}"
        for metric in METRICS
        if any(f"{metric}_mean" in entry for entry in summary)
        for stat in ("mean", "std")
    ]
    return fixed + metrics + ["rank_by", "p_value", "significant"]


def curve_band(histories: list[list]) -> tuple[list, list, list, list]:
    """Tokens seen, and mean, min and max over seeds of validation perplexity, point by point.
    Seeds are aligned by position and cut to the shortest, so every point averages all seeds."""
    histories = [h for h in histories if h]
    if not histories:
        return [], [], [], []
    length = min(len(h) for h in histories)
    points = [[h[i] for h in histories] for i in range(length)]
    tokens = [statistics.fmean(p[0] for p in at) for at in points]
    ppl = [[p[1] for p in at] for at in points]
    return tokens, [statistics.fmean(v) for v in ppl], [min(v) for v in ppl], [max(v) for v in ppl]
