"""Progress display: a live rich bar on a terminal, plain log lines otherwise, both with the
numbers people read: tokens seen, loss, `16.2k tok/s`, an ETA, and validation scores."""

import sys
from time import perf_counter

from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar

from xlstm_exp import console
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.readable import readable_count, readable_duration

# (logged metric, label, format) shown after a validation, where the run logs them.
VALIDATION = [
    ("val/ppl", "val ppl", "{:.2f}"),
    ("val/word_ppl", "word ppl", "{:.2f}"),
    ("val/norm_acc", "norm acc", "{:.3f}"),
]


class Throughput:
    """Seconds per optimizer step since this process started training, for the ETA (a resumed
    run counts from its resume)."""

    def __init__(self):
        self._start: tuple[float, int] | None = None

    def start(self, step: int) -> None:
        self._start = (perf_counter(), step)

    def eta(self, step: int, max_steps: int) -> float | None:
        if self._start is None or max_steps < 0 or step <= self._start[1]:
            return None
        started, first = self._start
        return (perf_counter() - started) / (step - first) * max(max_steps - step, 0)


def progress_fields(trainer, module, throughput: Throughput, validated: bool) -> dict[str, str]:
    """The progress line's fields in order: step, tokens, loss, tok/s, ETA, and after a
    validation its scores."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    fields = {}
    if trainer.state.fn == "fit":
        total = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""
        fields["step"] = f"{trainer.global_step}{total}"
        if isinstance(module, LanguageModelingModule):
            fields["tokens"] = readable_count(module.train_tokens)
    if "train/loss" in metrics:
        fields["loss"] = f"{metrics['train/loss']:.3f}"
    if "train/tokens_per_s" in metrics:
        fields["tok/s"] = readable_count(metrics["train/tokens_per_s"])
    eta = throughput.eta(trainer.global_step, trainer.max_steps)
    if trainer.state.fn == "fit" and eta is not None:
        fields["ETA"] = readable_duration(eta)
    if validated:
        for key, label, form in VALIDATION:
            if key in metrics:
                fields[label] = form.format(metrics[key])
    return fields


def progress_line(prefix: str, fields: dict[str, str]) -> str:
    """`[train] step 50/300  tokens 51.2k  loss 4.909  16.2k tok/s  ETA 1m05s`."""
    shown = [
        f"{value} tok/s" if key == "tok/s" else f"{key} {value}" for key, value in fields.items()
    ]
    return f"{prefix:<7} " + "  ".join(shown)


class PlainProgress(ProgressBar):
    """One line every `every_n_steps` training steps and one per validation, for log files and
    CI where a live bar would write thousands of redraws."""

    def __init__(self, every_n_steps: int = 50):
        super().__init__()
        self.every_n_steps = every_n_steps
        self._enabled = True
        self.throughput = Throughput()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, trainer, module, prefix: str, validated: bool) -> None:
        if self._enabled and trainer.is_global_zero:
            fields = progress_fields(trainer, module, self.throughput, validated)
            console.info(progress_line(prefix, fields))

    def on_train_start(self, trainer, pl_module) -> None:
        self.throughput.start(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._print(trainer, pl_module, "[train]", validated=False)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._print(trainer, pl_module, "[val]", validated=True)


class ReadableRichProgressBar(RichProgressBar):
    """Lightning's rich bar showing `progress_fields` instead of raw logged floats."""

    def __init__(self):
        super().__init__()
        self.throughput = Throughput()

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self.throughput.start(trainer.global_step)

    def get_metrics(self, trainer, pl_module) -> dict[str, str]:
        fields = progress_fields(trainer, pl_module, self.throughput, validated=True)
        fields.pop("step", None)  # the bar shows the step itself
        return fields


def progress_bar(every_n_steps: int = 50) -> Callback:
    """The progress callback that suits where output goes."""
    if sys.stdout.isatty():
        return ReadableRichProgressBar()
    return PlainProgress(every_n_steps)
