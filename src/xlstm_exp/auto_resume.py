"""`ckpt_path=auto`: resume a run from the newest checkpoint in its own folder, or start it.

A run folder is `hydra.run.dir`, a new timestamped folder unless given, so a restarted command
finds its earlier checkpoints only when it names the same folder: `python train.py <overrides>
hydra.run.dir=<run dir> ckpt_path=auto` (a requeued SLURM job of `hydra/launcher=slurm_requeue`
gets both by itself)."""

from pathlib import Path

from xlstm_exp import console
from xlstm_exp.checkpoint import first_line, load_checkpoint
from xlstm_exp.user_error import UserError

AUTO = "auto"
# Where conf/callbacks/default.yaml puts a run's checkpoints, under `paths.output_dir`.
CHECKPOINT_FOLDER = "checkpoints"
# The checkpoints that hold the state of the latest training step reached: the one written on
# SIGTERM or Ctrl-C, and last.ckpt (each validation, and periodically between them).
RESUMABLE = ("preempted.ckpt", "last.ckpt")


def newest_resumable(folder: Path) -> Path | None:
    """The most recently written of the folder's RESUMABLE files that loads (a corrupt one is
    skipped with a warning); None when there is none."""
    present = [folder / name for name in RESUMABLE if (folder / name).is_file()]
    # A stable sort: on equal times the pre-emption checkpoint, written last in a run, wins.
    for path in sorted(present, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        try:
            load_checkpoint(path)
        except UserError as error:
            reason = first_line(error.__cause__ or error)
            console.warning(f"ckpt_path=auto: skipping {path}, which cannot be read ({reason})")
            continue
        return path
    return None


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """`ckpt_path` as given; for `auto`, the newest resumable checkpoint of the run's folder, or
    None (train from the start) when there is none."""
    if ckpt_path != AUTO:
        return ckpt_path
    folder = output_dir / CHECKPOINT_FOLDER
    found = newest_resumable(folder)
    if found is None:
        console.info(
            f"ckpt_path=auto: no checkpoint to resume in {folder}, training from the start (to "
            "resume a run, pass its folder as hydra.run.dir)"
        )
        return None
    console.info(f"ckpt_path=auto: resuming {found}")
    return str(found)
