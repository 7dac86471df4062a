"""Checkpoint-and-stop on SIGTERM/SIGINT, so a pre-empted job can resume where it stopped."""

import signal
import threading
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from xlstm_exp import console


class PreemptionCheckpoint(Callback):
    """Write `<dirpath>/<filename>` when a cluster pre-empts the job (SIGTERM) or on a first
    Ctrl-C, after the training step in progress has finished; resume with
    `ckpt_path=<that file>`. A second Ctrl-C interrupts at once.

    Lightning itself turns SIGTERM into a `SIGTERMException` at the end of the current step;
    Ctrl-C is caught here so that it, too, stops at a step boundary rather than mid-update.
    """

    def __init__(self, dirpath: str, filename: str = "preempted.ckpt"):
        self.path = Path(dirpath) / filename
        self.saved = False
        self._interrupted = False
        self._previous_sigint = None

    def _on_sigint(self, signum: int, frame) -> None:
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True
        console.info("Ctrl-C: checkpointing after this step (again to abort at once)")

    def _save(self, trainer) -> None:
        trainer.save_checkpoint(self.path)
        self.saved = True
        console.info(f"resumable checkpoint written to {self.path}")

    def on_fit_start(self, trainer, pl_module) -> None:
        # Handlers can only be set from the main thread (not, e.g., from a notebook worker).
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._interrupted and not self.saved:
            self._save(trainer)
            trainer.should_stop = True

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and not self.saved:
            self._save(trainer)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
