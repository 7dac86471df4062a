"""The tokenizer cache that parallel jobs of a sweep share: one valid entry whatever the timing,
and an entry that cannot be read (truncated) rebuilt rather than stopping every job."""

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from xlstm_exp.data import tokenization
from xlstm_exp.data.tokenization import TokenizerSpec, load_or_train
from xlstm_exp.user_error import UserError

ROOT = Path(__file__).resolve().parents[1]
NAME = "tiny-bpe.json"

# One job of a sweep, in its own process: waits for the go file, then loads or builds the
# tokenizer and prints a digest of what it got. Training takes a second, long enough for the
# other job to arrive while it holds the lock.
JOB = """
import hashlib, random, sys, time
from pathlib import Path
from xlstm_exp.data.tokenization import TokenizerSpec, load_or_train

entry, name = Path(sys.argv[1]), sys.argv[2]
cache = entry.parent
rng = random.Random(0)
words = [f"w{i}" for i in range(60)]
text = [" ".join(rng.choice(words) for _ in range(12)) + "\\n" for _ in range(300)]

def lines():
    with (cache / "trainings").open("a") as log:
        log.write(name + "\\n")
    time.sleep(1)
    return text

(cache / f"ready-{name}").touch()
while not (cache / "go").exists():
    time.sleep(0.01)
spec = TokenizerSpec(kind="bpe", vocab_size=300, cache_dir=str(cache))
tokenizer = load_or_train(spec, entry, lines)
print(hashlib.sha256(tokenizer.to_str().encode()).hexdigest())
"""


def digest(tokenizer: Tokenizer) -> str:
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()


def start_together(entry: Path, names: str) -> list[subprocess.Popen]:
    """One job per name, released at the same moment once all have started."""
    cache = entry.parent
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", JOB, str(entry), name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    deadline = time.monotonic() + 60
    while not all((cache / f"ready-{name}").exists() for name in names):
        assert time.monotonic() < deadline and all(job.poll() is None for job in jobs)
        time.sleep(0.05)
    (cache / "go").touch()
    return jobs


def test_two_jobs_at_once_over_a_truncated_entry_build_one_and_load_it(tmp_path):
    """Before, both jobs stopped with an error telling the user to delete the entry."""
    entry = tmp_path / NAME
    entry.write_text('{"version": "1.0", "truncation": null, "added_tokens": [{"id": 0, "co')
    jobs = start_together(entry, "ab")
    outputs = [job.communicate(timeout=60) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert (tmp_path / "trainings").read_text().count("\n") == 1, "built once, under the lock"
    (loaded,) = {out.strip() for out, _ in outputs}
    assert loaded == digest(Tokenizer.from_file(str(entry)))
    warnings = "".join(err for _, err in outputs)
    assert warnings.count(f"tokenizer cache {entry} was unreadable") == 1, warnings
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_an_entry_that_cannot_be_rebuilt_is_an_error_naming_it(tmp_path, monkeypatch):
    """Before, the error said to delete the file, which would not have helped here."""
    entry = tmp_path / NAME
    entry.write_text("{cut short")

    def refuse(source, target):
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(tokenization.os, "replace", refuse)
    spec = TokenizerSpec(kind="word", vocab_size=None, cache_dir=str(tmp_path))
    with pytest.raises(UserError, match=f"cannot write the tokenizer cache {entry}"):
        load_or_train(spec, entry, lambda: ["a b c\n", "b c\n"])
    assert not list(tmp_path.glob(".*.tmp"))
