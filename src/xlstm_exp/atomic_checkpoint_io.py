"""Checkpoint files that are whole or absent, never truncated, even when the disk fills up."""

import contextlib
import errno
import io
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

MIB = 2**20


class CheckpointDiskFullError(OSError):
    """The disk filled up while a checkpoint was written. Its message names the folder, the
    space the checkpoint needs and the earlier checkpoints there, all of them intact."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes every checkpoint of the trainer (best, last, periodic, pre-emption) to a temporary
    file beside its final name, syncs it to disk and renames it onto that name. A rename within
    a folder is atomic, so a reader (a resume, eval.py) sees the old file or the new one; a
    failed write removes the temporary file and leaves the old one as it was.

    Lightning's own writer stages the file in the system's temp folder; moving it across file
    systems is a copy, which a full disk leaves truncated under the final name. Local paths
    only, as the run folders are."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        # Serialised first: a failed write can then say how much space the checkpoint needs.
        torch.save(checkpoint, buffer)
        write_atomically(buffer.getbuffer(), Path(path))


def write_atomically(data: memoryview, path: Path) -> None:
    """`path` holds `data` afterwards, or, on any error, what it held before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
    written = 0
    try:
        # Not tempfile.mkstemp: its files are private (0600); a checkpoint gets the mode of any
        # file the user creates, as Lightning's did.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            while written < len(data):  # os.write may write less than it is given
                written += os.write(descriptor, data[written:])
            os.fsync(descriptor)  # the data on disk before the name points at it
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):  # the error that got here is the one to report
            os.unlink(temporary)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            message = disk_full_message(path, len(data), written)
            raise CheckpointDiskFullError(errno.ENOSPC, message) from error
        raise


def disk_full_message(path: Path, needed: int, written: int) -> str:
    folder = path.parent
    free = shutil.disk_usage(folder).free
    earlier = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    advice = (
        f"The checkpoints already in the folder are intact (newest first): "
        f"{', '.join(p.name for p in earlier)}. Free some space and resume from one of them "
        "(ckpt_path=auto with the same hydra.run.dir resumes the newest)"
        if earlier
        else "No earlier checkpoint is in the folder; free some space and run again"
    )
    return (
        f"no space left on the device of {folder}: checkpoint {path.name} needs {needed:,} "
        f"bytes ({needed / MIB:.1f} MiB), {free / MIB:.1f} MiB are free; the disk filled "
        f"after {written:,} bytes, which were removed. {advice}"
    )
