"""The full training loop's time per step: `train.py` itself (Lightning, the data pipeline,
logging, callbacks) at the benchmark's configuration, timed step by step by `StepClock`."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def training_loop_step_seconds(cfg: dict, context: int, steps: int, warmup: int) -> float:
    """Median seconds between consecutive training steps of `python train.py model=mlstm
    block=pre` (the bare-step row this is compared with builds the same model)."""
    with tempfile.TemporaryDirectory() as out:
        clock = Path(out) / "steps.json"
        tokens = (steps + warmup + 2) * cfg["batch"] * (context + 1)
        overrides = [
            "model=mlstm",
            "block=pre",
            f"model.d_model={cfg['d']}",
            f"model.num_layers={cfg['layers']}",
            f"model.num_heads={cfg['heads']}",
            f"model.vocab_size={cfg['vocab']}",
            f"data.context_length={context}",
            f"data.batch_size={cfg['batch']}",
            f"data.train_tokens={tokens}",
            "data.val_tokens=2000",
            f"trainer.max_steps={steps + warmup + 1}",
            "trainer.limit_val_batches=0",
            "test=false",
            "logger=csv",
            f"paths.output_dir={out}",
            "hydra.run.dir=" + out,
            "+callbacks.step_clock._target_=step_clock.StepClock",
            f"+callbacks.step_clock.path={clock}",
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": str(cfg["threads"]),
            "WANDB_MODE": "disabled",
        }
        done = subprocess.run(
            [sys.executable, str(BENCH.parent / "train.py"), *overrides],
            capture_output=True,
            text=True,
            env=env,
            cwd=out,
        )
        if done.returncode:
            raise RuntimeError(f"train.py failed:\n{done.stderr[-2000:]}")
        times = json.loads(clock.read_text())
    intervals = [b - a for a, b in zip(times, times[1:], strict=False)]
    return statistics.median(intervals[warmup:])
