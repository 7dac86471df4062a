"""Tokenizers trained with Hugging Face `tokenizers` on a train split, cached on disk.

Both kinds encode one line at a time, newline included, so a split's token stream is the
concatenation of its lines' encodings:

- ``word``: the whitespace words of the line and an end-of-line token ``<eos>`` (the classic
  setup of the tokenized WikiText ``-v1`` configs); exactly `count_words` tokens per line.
- ``bpe``: byte-level BPE; the newline is an ordinary byte, so decoding gives the text back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import tokenizers
from filelock import FileLock
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from xlstm_exp.user_error import UserError

log = logging.getLogger(__name__)

EOL = "<eos>"  # word-level end of line
UNK = "<unk>"  # word-level out-of-vocabulary word (also a word of the -v1 configs)
BOS = "<|endoftext|>"  # BPE: begins a token stream (a newline is a byte there, not a token)
# Every token stream begins with this token, so that its first real token is a target too.
START_TOKENS = {"word": EOL, "bpe": BOS}
# Part of every cache key: bump it when a recipe below changes.
RECIPE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    """The ``tokenizer`` config group: what to train and where to cache it."""

    kind: str = "bpe"
    vocab_size: int | None = 8192  # None: every train word (word only)
    min_frequency: int = 1  # a merge or word needs this many occurrences
    sample_rows: int | None = None  # train on the first rows of the split only (None: all)
    cache_dir: str = ".cache/tokenizers"  # relative to the directory the run starts in

    def __post_init__(self) -> None:
        if self.kind not in START_TOKENS:
            raise UserError(f"tokenizer.kind={self.kind!r}; expected one of {list(START_TOKENS)}")
        least = {"bpe": 257, "word": 2}[self.kind]  # the 256 bytes and BOS; UNK and EOL
        if (self.vocab_size is None and self.kind == "bpe") or (self.vocab_size or least) < least:
            raise UserError(
                f"tokenizer.vocab_size={self.vocab_size} must be at least {least} for {self.kind}"
            )
        if self.sample_rows is not None and self.sample_rows < 1:
            raise UserError(
                f"tokenizer.sample_rows={self.sample_rows} must be positive or null (all rows)"
            )

    @classmethod
    def from_config(cls, config: Mapping | None) -> TokenizerSpec:
        """From a dict or DictConfig; an unknown key is an error, not silently ignored."""
        options = dict(config or {})
        known = {field.name for field in dataclasses.fields(cls)}
        if unknown := sorted(set(options) - known):
            raise UserError(f"unknown tokenizer keys {unknown}; expected some of {sorted(known)}")
        return cls(**options)

    @property
    def start_token(self) -> str:
        return START_TOKENS[self.kind]


def new_tokenizer(kind: str, vocab: dict[str, int] | None = None) -> Tokenizer:
    """An untrained tokenizer of ``kind`` (or a word-level one over ``vocab``)."""
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        return tokenizer
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Replace("\n", f" {EOL} ")
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Words joined by spaces, one line per <eos> (the stream's first token has no space).
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.WordPiece(prefix=" ", cleanup=False),
            decoders.Replace(f" {EOL}", "\n"),
            decoders.Replace(EOL, "\n"),
        ]
    )
    return tokenizer


def train_tokenizer(spec: TokenizerSpec, lines: Iterable[str]) -> Tokenizer:
    """Train a tokenizer of ``spec.kind`` on ``lines`` (each ending in a newline)."""
    tokenizer = new_tokenizer(spec.kind)
    if spec.kind == "bpe":
        trainer = trainers.BpeTrainer(
            vocab_size=spec.vocab_size,
            min_frequency=spec.min_frequency,
            special_tokens=[BOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(lines, trainer)
        return tokenizer
    limit = spec.vocab_size or 2**31 - 1  # the trainer's own default keeps only 30,000 words
    trainer = trainers.WordLevelTrainer(
        vocab_size=limit, min_frequency=spec.min_frequency, show_progress=False
    )
    tokenizer.train_from_iterator(lines, trainer)
    # UNK and EOL first, then the words by frequency. Not the trainer's special tokens: it gives
    # a special token that is also a word of the text two ids (one unused), and registers it as
    # an added token, cut out of raw text ("<unk>s" -> "<unk>", "s") unlike whitespace words.
    vocab = {UNK: 0, EOL: 1}
    for word in sorted(tokenizer.get_vocab(), key=tokenizer.token_to_id):
        if len(vocab) >= limit:
            break
        vocab.setdefault(word, len(vocab))
    return new_tokenizer("word", vocab)


def cache_file(spec: TokenizerSpec, source: Mapping, label: str) -> Path:
    """The cache file for ``spec`` trained on ``source`` (a JSON-able description of the data,
    e.g. its files with sizes and modification times): a hash of everything it depends on."""
    key = {
        "recipe": RECIPE_VERSION,
        "tokenizers": tokenizers.__version__,
        "spec": {k: v for k, v in dataclasses.asdict(spec).items() if k != "cache_dir"},
        "source": source,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe_label = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return Path(spec.cache_dir).expanduser().absolute() / f"{safe_label}-{spec.kind}-{digest}.json"


def read_cached(path: Path, start_token: str) -> tuple[Tokenizer | None, str | None]:
    """The tokenizer cached at ``path``, or None and why it cannot be used (None: no file)."""
    if not path.exists():
        return None, None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for malformed JSON
        return None, f"unreadable ({err})"
    if tokenizer.token_to_id(start_token) is None:
        return None, f"not written by this recipe (no {start_token!r} token)"
    return tokenizer, None


def train_and_cache(
    spec: TokenizerSpec, path: Path, lines: Callable[[], Iterable[str]]
) -> Tokenizer:
    """Train a tokenizer on ``lines()`` and write it to ``path`` whole or not at all: to a
    temporary file first, then renamed, so that a job reading the cache never sees half of it."""
    started = time.perf_counter()
    tokenizer = train_tokenizer(spec, lines())
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tokenizer.save(str(temporary))
        os.replace(temporary, path)
    except Exception as err:  # tokenizers raises a bare Exception for a failed write too
        temporary.unlink(missing_ok=True)
        raise UserError(
            f"cannot write the tokenizer cache {path} ({err}); make tokenizer.cache_dir="
            f"{spec.cache_dir} writable or point it elsewhere"
        ) from err
    log.info(
        "trained the %s tokenizer (%d tokens) in %.1f s; cached at %s",
        spec.kind,
        tokenizer.get_vocab_size(),
        time.perf_counter() - started,
        path,
    )
    return tokenizer


def load_or_train(spec: TokenizerSpec, path: Path, lines: Callable[[], Iterable[str]]) -> Tokenizer:
    """The tokenizer cached at ``path``, trained on ``lines()`` first if absent or unusable.

    Concurrent jobs (a sweep) serialise on a lock file, so one trains while the others wait and
    then read its result. A cache entry that cannot be used (a file truncated when a disk filled
    up or a job was killed while copying it) is trained again, with a warning: it is only a
    cache of what the train split gives.
    """
    tokenizer, _ = read_cached(path, spec.start_token)  # the usual case needs no lock
    if tokenizer is not None:
        return tokenizer
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        # Another job may have built or repaired the entry while this one waited.
        tokenizer, problem = read_cached(path, spec.start_token)
        if tokenizer is not None:
            return tokenizer
        tokenizer = train_and_cache(spec, path, lines)
    if problem:
        # Logged by the job that rebuilt it, which under DDP need not be rank zero.
        log.warning("tokenizer cache %s was %s; trained it again", path, problem)
    return tokenizer


def encode_lines(tokenizer: Tokenizer, lines: Sequence[str]) -> list[int]:
    """The concatenated token ids of ``lines`` (each ending in a newline)."""
    return [i for encoding in tokenizer.encode_batch_fast(list(lines)) for i in encoding.ids]


def encode_text(tokenizer: Tokenizer, text: str) -> list[int]:
    """The token ids of ``text`` as the data modules encode theirs: line by line (a byte-level
    BPE pre-tokenizes a run of newlines and spaces differently inside one long string)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return encode_lines(tokenizer, [line for line in lines if line])
