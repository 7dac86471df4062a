"""Where WikiText comes from: a Hub id or a local folder in the Hub's layout, via `datasets`.

Every failure names ``data.path`` and ``data.name`` and says what to change; nothing falls back
to other data. Without network the Hub is refused within seconds instead of after the retries
`datasets` makes before giving up.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import datasets
from huggingface_hub import constants as hub_constants

from xlstm_exp.user_error import UserError

TEXT = "text"  # the column holding one line of the original file per row
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
PROBE_SECONDS = 5.0
MIRROR_HINT = (
    "point data.path at a local folder in the Hub's layout, a copy of Salesforce/wikitext "
    "(absolute, or relative to the directory you launch from), and data.name at one of its "
    "configs that has the splits you use, e.g. data.path=/data/wikitext data.name=wikitext-2-v1"
)


class DataSourceError(UserError):
    """The configured data cannot be read as asked."""


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the Hub's endpoint opens within ``timeout`` seconds.

    The probe runs in a daemon thread, so a name lookup that hangs is bounded too.
    """
    url = urlsplit(hub_constants.ENDPOINT)
    address = (url.hostname or "", url.port or (443 if url.scheme == "https" else 80))
    outcome: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(outcome and outcome[0])


def _behind_proxy() -> bool:
    """A proxy carries the Hub's traffic, so a direct probe would say nothing."""
    return any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))


class WikiTextSource:
    """One config of a Hub-layout dataset, its splits streamed with `datasets`.

    ``path`` is a Hub id or a folder (relative paths resolve against the current directory,
    the launch directory since Hydra runs with ``chdir: false``); ``name`` is the config.
    """

    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name
        self.what = f"data.path={path!r} (data.name={name!r})"
        folder = Path(path).expanduser().absolute()
        self.is_local = folder.is_dir()
        if not self.is_local and (path.startswith((".", "/", "~")) or path.count("/") > 1):
            raise DataSourceError(f"data.path={path!r}: no such folder ({folder}); {MIRROR_HINT}")
        self.location = str(folder) if self.is_local else path
        if not self.is_local and not datasets.config.HF_HUB_OFFLINE and not _behind_proxy():
            if not hub_reachable():
                raise DataSourceError(
                    f"cannot load {self.what} from the Hugging Face Hub: "
                    f"{hub_constants.ENDPOINT} is unreachable (HF_HUB_OFFLINE=1 uses a copy in "
                    f"the Hugging Face cache, if any); {MIRROR_HINT}"
                )
        try:
            self.builder = datasets.load_dataset_builder(self.location, name)
        except ConnectionError as err:
            offline = datasets.config.HF_HUB_OFFLINE
            raise DataSourceError(
                f"cannot load {self.what} from the Hugging Face Hub "
                f"({'offline mode is on' if offline else 'no connection'}: {err}); {MIRROR_HINT}"
            ) from err
        except (ValueError, FileNotFoundError) as err:  # unknown config, no data files, ...
            raise DataSourceError(f"cannot load {self.what} from {self.location}: {err}") from err

    def files(self, split: str) -> list[str]:
        """The data files of a split (``train``, ``val`` or ``test``)."""
        data_files = self.builder.config.data_files or {}
        hub_split = HUB_SPLITS[split]
        if hub_split not in data_files:
            raise DataSourceError(
                f"{self.what} has no {hub_split!r} split (it has {sorted(data_files)}); "
                f"choose a data.name whose config has one"
            )
        return [str(file) for file in data_files[hub_split]]

    def fingerprint(self, split: str) -> dict:
        """What identifies a split's content: its files (with a Hub revision in their URLs;
        local ones with size and modification time)."""
        files = self.files(split)
        if self.is_local:
            stats = [Path(file).stat() for file in files]
            files = [[f, s.st_size, s.st_mtime_ns] for f, s in zip(files, stats, strict=True)]
        return {"path": self.location, "name": self.name, "split": split, "files": files}

    def stream(self, split: str) -> datasets.IterableDataset:
        """The split as a streamed `datasets.IterableDataset` of Arrow tables."""
        self.files(split)  # a missing split is reported with its config
        try:
            dataset = self.builder.as_streaming_dataset(split=HUB_SPLITS[split])
        except ValueError as err:
            raise DataSourceError(f"cannot stream {self.what}: {err}") from err
        if dataset.column_names is not None and TEXT not in dataset.column_names:
            raise DataSourceError(
                f"{self.what} split {HUB_SPLITS[split]!r} has no {TEXT!r} column "
                f"(columns: {dataset.column_names}; files: {self.files(split)})"
            )
        return dataset.with_format("arrow")

    def row_groups(self, split: str, rows_per_group: int, epoch: int = 0) -> Iterator[list[str]]:
        """The split's rows in order, ``rows_per_group`` at a time (its files in the order
        `datasets` gives them for ``epoch``); an empty split is an error."""
        dataset = self.stream(split)
        dataset.set_epoch(epoch)
        empty = True
        try:
            for table in dataset.iter(batch_size=rows_per_group):
                empty = False
                yield table.column(TEXT).to_pylist()
        except (OSError, ValueError) as err:  # Arrow's errors derive from these
            raise DataSourceError(
                f"cannot read split {HUB_SPLITS[split]!r} of {self.what} "
                f"({self.files(split)}): {err}"
            ) from err
        if empty:
            raise DataSourceError(
                f"split {HUB_SPLITS[split]!r} of {self.what} is empty: {self.files(split)}"
            )

    def rows(self, split: str) -> Iterator[str]:
        """The split's rows in order, one line of text each."""
        for group in self.row_groups(split, rows_per_group=1024):
            yield from group
