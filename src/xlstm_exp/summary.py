"""The lines a run prints when it ends: what was trained and how well it scores."""

from pathlib import Path


def split_line(metrics: dict, split: str) -> str:
    line = f"{split}: loss {metrics[f'{split}/loss']:.4f}  ppl {metrics[f'{split}/ppl']:.2f}"
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


def summary(metrics: dict, output_dir: Path) -> str:
    lines = [f"{metrics['model']} / {metrics['block']} block, {metrics['params']:,} parameters"]
    for split in ("val", "test"):
        if f"{split}/loss" in metrics:
            lines.append(split_line(metrics, split))
        if f"{split}/stateful_ppl" in metrics:
            lines.append(
                f"{split} as one stream ({metrics[f'{split}/stateful_method']}): "
                f"loss {metrics[f'{split}/stateful_loss']:.4f}  "
                f"ppl {metrics[f'{split}/stateful_ppl']:.2f}"
            )
    if "train/tokens_per_s" in metrics:
        lines.append(
            f"{metrics['train/tokens_per_s']:.0f} train tokens/s, {metrics['wall_time_s']:.0f} s"
        )
    lines.append(f"metrics in {output_dir / 'metrics.json'}")
    return "\n".join(lines)
