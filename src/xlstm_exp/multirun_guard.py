"""Stop a multirun whose jobs would relaunch the whole sweep (Lightning #11617)."""

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher


class MultirunRelaunchError(RuntimeError):
    """A multirun whose jobs cannot start: it stops the sweep instead of failing job by job."""


def refuse_relaunch_in_multirun(trainer: L.Trainer) -> None:
    """Stop a multirun job whose strategy (`ddp`, `fsdp`) would start its other processes the way
    Lightning does under Hydra: by running this script's command line again. In a multirun that
    command is the whole sweep (`-m ...`), so each of them would start every job of the sweep
    (Lightning #11617). Processes started by a cluster (SLURM tasks) are not relaunched."""
    launcher = trainer.strategy.launcher
    relaunches = (
        isinstance(launcher, _SubprocessScriptLauncher)
        and launcher.num_processes > 1
        and not launcher.cluster_environment.creates_processes_externally
    )
    if relaunches and HydraConfig.get().mode == RunMode.MULTIRUN:
        devices = launcher.num_processes
        raise MultirunRelaunchError(
            f"a multirun (-m) cannot start {type(trainer.strategy).__name__} on {devices} devices "
            "itself: Lightning would start the other processes by running the command line "
            "again, which would run the whole sweep again in each of them. Either run each job "
            "as a single run (without -m), or sweep with a launcher that starts one process per "
            "device, e.g. on SLURM: -m hydra/launcher=submitit_slurm "
            f"hydra.launcher.tasks_per_node={devices} hydra.launcher.gpus_per_node={devices}. "
            "Sweeps of single-device jobs (trainer.devices=1) run as usual. See README, Training."
        )
