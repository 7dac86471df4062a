"""A trained model from either form it leaves training in: a Lightning `.ckpt` that train.py
wrote, or a folder that export.py wrote (`config.json`, `model.safetensors`, `tokenizer.json`,
`training.json`). eval.py, generate.py, export.py and the lm-eval adapter all load through here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn

from xlstm_exp.checkpoint import TOKENIZER_KEY, load_checkpoint, run_config
from xlstm_exp.data.tokenization import START_TOKENS
from xlstm_exp.from_config import build_data, build_model
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models.language_model import LanguageModel
from xlstm_exp.user_error import UserError

TOKENIZER_FILE = "tokenizer.json"
# The run's resolved config, steps and tokens trained, and its metrics: what the folder came from.
TRAINING_FILE = "training.json"


@dataclasses.dataclass
class TrainedModel:
    model: nn.Module  # in eval mode, on the CPU
    source: Path  # the checkpoint file or the folder
    run_config: DictConfig | None  # the training run's config (None: a folder without one)
    tokenizer: Tokenizer | None  # None: the run's built-in data defines the vocabulary
    global_step: int | None = None
    train_tokens: int | None = None
    metrics: dict | None = None  # the run's metrics.json, as far as known
    checkpoint: dict | None = None  # the `.ckpt`'s contents (None for a folder)

    @property
    def vocab_size(self) -> int:
        return stored_vocab_size({"state_dict": self.model.state_dict()})

    def text_tokenizer(self) -> Tokenizer:
        """The tokenizer, or for built-in data one that writes and reads its vocabulary as
        whitespace-separated words (`vocabulary_tokenizer`)."""
        if self.tokenizer is not None:
            return self.tokenizer
        if self.run_config is None:
            raise UserError(f"{self.source} has no {TOKENIZER_FILE}; export the model again")
        return vocabulary_tokenizer(build_data(self.run_config.data))


def load_trained(path: str | Path) -> TrainedModel:
    """The model at `path`: a folder export.py wrote, or a checkpoint file train.py wrote."""
    source = Path(str(path)).expanduser()
    if source.is_dir():
        return load_folder(source.resolve())
    checkpoint = load_checkpoint(source)
    trained = OmegaConf.create(run_config(checkpoint, source))
    module = LanguageModelingModule(build_model(trained, stored_vocab_size(checkpoint))[0])
    module.load_state_dict(checkpoint["state_dict"])
    tokenizer = checkpoint.get(TOKENIZER_KEY)
    metrics_file = source.resolve().parent.parent / "metrics.json"  # <run>/checkpoints/x.ckpt
    return TrainedModel(
        model=module.model.eval(),
        source=source.resolve(),
        run_config=trained,
        tokenizer=Tokenizer.from_str(tokenizer) if tokenizer else None,
        global_step=checkpoint.get("global_step"),
        train_tokens=checkpoint.get("train_tokens"),
        metrics=run_metrics(metrics_file),
        checkpoint=checkpoint,
    )


def stored_vocab_size(checkpoint: dict) -> int:
    """The vocabulary of a checkpoint's weights: the rows of its (first) token embedding, in a
    LanguageModel or in a model of its own `_target_` (the seed API's stacks)."""
    return next(
        tensor.shape[0]
        for name, tensor in checkpoint["state_dict"].items()
        if name.endswith("embedding.weight")
    )


def load_folder(folder: Path) -> TrainedModel:
    model = LanguageModel.from_pretrained(folder)
    tokenizer_file = folder / TOKENIZER_FILE
    tokenizer = None
    if tokenizer_file.is_file():
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as error:  # tokenizers raises a bare Exception for malformed JSON
            raise UserError(f"{tokenizer_file} cannot be read ({error}); export again") from error
    training = read_json(folder / TRAINING_FILE) or {}
    config = training.get("run_config")
    return TrainedModel(
        model=model,
        source=folder,
        run_config=OmegaConf.create(config) if config else None,
        tokenizer=tokenizer,
        global_step=training.get("global_step"),
        train_tokens=training.get("train_tokens"),
        metrics=training.get("metrics"),
    )


def run_metrics(file: Path) -> dict | None:
    """The run's metrics.json, if there is a readable one: only the model card shows them, so
    a missing or damaged file must not stop eval.py or generate.py."""
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def read_json(file: Path) -> dict | None:
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except ValueError as error:
        raise UserError(f"{file} is not valid JSON ({error}); export the model again") from error


def vocabulary_tokenizer(datamodule) -> Tokenizer:
    """A `tokenizers` word-level tokenizer over a built-in vocabulary (synthetic corpus, formal
    languages, MQAR): each id's string as the data module decodes it, words split on whitespace.
    Ids whose string is empty or taken get a `<id>` name, so every id has one."""
    vocab: dict[str, int] = {}
    for index in range(datamodule.vocab_size):
        word = datamodule.decode([index]).strip()
        vocab[word if word and word not in vocab and " " not in word else f"<{index}>"] = index
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=next(iter(vocab))))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # decoding joins with spaces
    return tokenizer


def start_token_id(tokenizer: Tokenizer) -> int:
    """The token every training stream began with (BPE: `<|endoftext|>`, word: `<eos>`; built-in
    data: id 0, its end of document), which a scored text is conditioned on first."""
    for token in START_TOKENS.values():
        if (index := tokenizer.token_to_id(token)) is not None:
            return index
    return 0
