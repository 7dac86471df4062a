"""Progress display: a live rich bar on a terminal, plain log lines otherwise."""

import sys

from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar


class PlainProgress(ProgressBar):
    """One line every `every_n_steps` training steps and one per validation, for log files and
    CI where a live bar would write thousands of redraws."""

    def __init__(self, every_n_steps: int = 50):
        super().__init__()
        self.every_n_steps = every_n_steps
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _line(self, trainer, prefix: str) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        metrics = self.get_metrics(trainer, trainer.lightning_module)
        shown = "  ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in metrics.items()
            if k != "v_num"
        )
        # Outside training (eval.py, the final scoring) there is no step to count.
        fitting = trainer.state.fn == "fit"
        step = f" step {trainer.global_step}/{trainer.max_steps}" if fitting else ""
        print(f"{prefix}{step}  {shown}", flush=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._line(trainer, "[train]")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._line(trainer, "[val]  ")


def progress_bar(every_n_steps: int = 50) -> Callback:
    """The progress callback that suits where output goes."""
    if sys.stdout.isatty():
        return RichProgressBar()
    return PlainProgress(every_n_steps)
