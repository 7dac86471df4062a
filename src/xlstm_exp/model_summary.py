"""The model a run trains, as a table of its modules and their parameters, printed once when
fitting starts. Lightning's own summary lists every submodule of the LightningModule, the
torchmetrics objects included; this lists the model only, block by block."""

from lightning.pytorch.callbacks import Callback
from torch import nn

from xlstm_exp import console
from xlstm_exp.models.blocks import ResidualBlock


def module_rows(model: nn.Module) -> list[tuple[str, str, int]]:
    """(name, kind, parameters) of the model's children that hold parameters, with module lists
    opened up so that each block has its row. Shared weights (a tied head) count once, at their
    first module."""
    seen: set[int] = set()

    def own(module: nn.Module) -> int:
        fresh = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        return sum(p.numel() for p in fresh)

    def kind(module: nn.Module) -> str:
        if isinstance(module, ResidualBlock):
            return f"{module.kind} block, {type(module.mixer).__name__}"
        return type(module).__name__

    rows = []
    for name, child in model.named_children():
        parts = child.named_children() if isinstance(child, nn.ModuleList) else [("", child)]
        for index, part in parts:
            if next(part.parameters(), None) is None:
                continue
            label = f"{name}.{index}" if index else name
            rows.append((label, kind(part), own(part)))
    return rows


def summary_table(model: nn.Module) -> str:
    rows = [(name, kind, f"{count:,}") for name, kind, count in module_rows(model)]
    total = sum(p.numel() for p in model.parameters())
    rows.append(("total", "", f"{total:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"  {name:<{widths[0]}}  {kind:<{widths[1]}}  {count:>{widths[2]}}"
        for name, kind, count in rows
    )


class ParameterSummary(Callback):
    """Prints `summary_table` of the LightningModule's `model` when fitting starts."""

    def on_fit_start(self, trainer, pl_module) -> None:
        console.info("model:\n" + summary_table(pl_module.model))
