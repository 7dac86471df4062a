"""The table a run prints when it ends: what was trained, how long, how well it scores, and where
its files are."""

from pathlib import Path

from xlstm_exp.readable import readable_count, readable_duration


def split_scores(metrics: dict, split: str) -> str:
    line = f"loss {metrics[f'{split}/loss']:.4f}  ppl {metrics[f'{split}/ppl']:.2f}"
    if f"{split}/word_ppl" in metrics:
        line += (
            f"  word ppl {metrics[f'{split}/word_ppl']:.2f}  "
            f"bits/byte {metrics[f'{split}/bpb']:.4f}"
        )
    references = [
        f"{label} {metrics[f'{split}/{name}']:.2f}"
        for name, label in (("floor_ppl", "true-entropy floor"), ("unigram_ppl", "unigram"))
        if f"{split}/{name}" in metrics
    ]
    if references:
        line += f"  ({', '.join(references)})"
    if f"{split}/norm_acc" in metrics:
        line += (
            f"  answer acc {metrics[f'{split}/acc']:.3f}  sequence acc "
            f"{metrics[f'{split}/seq_acc']:.3f}  normalised {metrics[f'{split}/norm_acc']:.3f}"
        )
    return line


def summary_rows(metrics: dict, output_dir: Path) -> list[tuple[str, str]]:
    """(label, value) rows of the final table, each where the run has it."""
    rows = []
    if "model" in metrics:
        rows.append(("model", f"{metrics['model']} / {metrics['block']} block"))
    if "params" in metrics:
        params = f"{metrics['params']:,}"
        if metrics.get("params_non_embedding") is not None:
            params += f" ({metrics['params_non_embedding']:,} without embedding and head)"
        rows.append(("parameters", params))
    if "ckpt_path" in metrics:  # eval.py: a checkpoint scored, not a run trained
        trained = f"{metrics['ckpt_path']}"
        if metrics.get("global_step") is not None and metrics.get("train/tokens") is not None:
            trained += (
                f" ({metrics['global_step']:,} steps, "
                f"{readable_count(metrics['train/tokens'])} tokens)"
            )
        rows.append(("checkpoint", trained))
    elif "wall_time_s" in metrics:
        rows.append(
            (
                "trained",
                f"{metrics['global_step']:,} steps, {readable_count(metrics['train/tokens'])} "
                f"tokens, {readable_duration(metrics['wall_time_s'])} "
                f"({readable_count(metrics['train/tokens_per_s'])} tok/s)",
            )
        )
    for split in ("val", "test"):
        if f"{split}/loss" in metrics:
            rows.append((split, split_scores(metrics, split)))
        if f"{split}/stateful_ppl" in metrics:
            rows.append(
                (
                    f"{split} stream",
                    f"loss {metrics[f'{split}/stateful_loss']:.4f}  "
                    f"ppl {metrics[f'{split}/stateful_ppl']:.2f} "
                    f"(as one stream, {metrics[f'{split}/stateful_method']})",
                )
            )
    rows.append(("metrics", str(output_dir / "metrics.json")))
    if metrics.get("best_checkpoint"):
        rows.append(("best weights", metrics["best_checkpoint"]))
    if metrics.get("wandb_run"):
        rows.append(("W&B run", metrics["wandb_run"]))
    return rows


def summary(metrics: dict, output_dir: Path) -> str:
    rows = summary_rows(metrics, output_dir)
    width = max(len(label) for label, _ in rows)
    return "summary:\n" + "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)
