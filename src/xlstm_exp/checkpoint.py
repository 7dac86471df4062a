"""Reading checkpoints without unpickling arbitrary objects, with errors that name the file."""

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from xlstm_exp.user_error import UserError

# Where a checkpoint keeps the resolved run config, so eval.py can rebuild the model from the
# checkpoint alone.
CONFIG_KEY = "xlstm_exp_config"
# The data's tokenizer (a `tokenizers` JSON string), so generate.py needs no data files.
TOKENIZER_KEY = "tokenizer"
EXAMPLE = "e.g. ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """No file at `ckpt_path`; still a FileNotFoundError for callers that catch that."""


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents, loaded with `weights_only=True` (tensors and plain Python
    containers only), on the CPU."""
    if not str(path).strip():
        raise UserError(f"ckpt_path is empty; give the checkpoint file, {EXAMPLE}")
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"ckpt_path={path}: no such checkpoint file; give an existing one, {EXAMPLE}"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(
            f"ckpt_path={path} cannot be read (truncated, corrupt or not a checkpoint of this "
            f"framework: {first_line(error)}); give a checkpoint that train.py wrote, {EXAMPLE}"
        ) from error


def first_line(error: BaseException) -> str:
    """What failed, in the first line of a loading error: PyTorch's advice that follows (to
    unpickle with weights_only=False) is not advice to take for a file of unknown origin."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def run_config(checkpoint: dict, path: str | Path) -> dict:
    """The resolved run config the checkpoint carries, to rebuild its model from."""
    if not checkpoint.get(CONFIG_KEY):
        raise UserError(
            f"ckpt_path={path} carries no run config, so train.py did not write it; give a "
            f"checkpoint that train.py wrote, {EXAMPLE}"
        )
    return checkpoint[CONFIG_KEY]


def flatten(config: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_model(checkpoint: dict, model: nn.Module, requested: Mapping, path) -> None:
    """Stop before loading weights into a model of another shape, naming the config keys
    (model, block, data, tokenizer) where the requested run differs from the checkpoint's."""
    stored = {
        name.removeprefix("model."): tuple(tensor.shape)
        for name, tensor in checkpoint.get("state_dict", {}).items()
        if name.startswith("model.")
    }
    if stored == {name: tuple(t.shape) for name, t in model.state_dict().items()}:
        return
    trained = flatten(checkpoint.get(CONFIG_KEY) or {})
    asked = flatten(requested)
    sections = ("model.", "block.", "data.", "tokenizer.")
    differing = [
        f"{key}={asked.get(key)} (checkpoint: {trained.get(key)})"
        for key in sorted(set(asked) | set(trained))
        if key.startswith(sections) and asked.get(key) != trained.get(key)
    ]
    detail = "; ".join(differing) or "its parameters differ in name or shape"
    raise UserError(
        f"ckpt_path={path} holds another model than the one requested: {detail}. The "
        "checkpoint carries its own model: drop the overrides of these keys"
    )
