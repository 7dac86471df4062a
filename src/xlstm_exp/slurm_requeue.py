"""The launcher of `hydra/launcher=slurm_requeue`: SLURM jobs that resume themselves when they
are requeued (see conf/hydra/launcher/slurm_requeue.yaml)."""

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from xlstm_exp.auto_resume import AUTO


def with_auto_resume(overrides: Sequence[str]) -> list[str]:
    """A job's overrides with `ckpt_path=auto` added, unless they set `ckpt_path` already."""
    keys = {override.split("=", 1)[0].lstrip("+~") for override in overrides}
    return list(overrides) if "ckpt_path" in keys else [*overrides, f"ckpt_path={AUTO}"]


class RequeueingSlurmLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher, every job of which resumes from its own folder.

    A requeued job, by submitit after a time limit (the plugin's `checkpoint` resubmits the job
    with the arguments it was launched with) or by SLURM after a pre-emption, runs again with
    the same overrides and the same job folder; with `ckpt_path=auto` among those overrides it
    continues from the newest checkpoint there, and a first run, which finds none, starts."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        return super().launch([with_auto_resume(o) for o in job_overrides], initial_job_idx)
