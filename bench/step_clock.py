"""A Lightning callback that writes the wall-clock time at the end of every training step.

The intervals between consecutive steps are what the full training loop costs per step: data
loading, forward, backward, optimizer, logging, callbacks and progress display included.
"""

import json
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class StepClock(Callback):
    def __init__(self, path: str):
        self.path = Path(path)
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.path.write_text(json.dumps(self.times))
