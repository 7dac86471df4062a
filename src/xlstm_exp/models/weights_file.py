"""A model's weights as one safetensors file whose header carries a digest of the tensors.

safetensors checks the header's layout but not the bytes of the tensors: a file altered in place
(a bad copy, a hand edit) would load silently into other weights. The digest makes it an error.
"""

import hashlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from xlstm_exp.user_error import UserError

DIGEST_KEY = "xlstm_exp_sha256"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def distinct_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor (tied embeddings) once, under its first name."""
    seen: set[tuple[int, int]] = set()
    tensors = {}
    for name, tensor in model.state_dict().items():
        storage = (tensor.data_ptr(), tensor.numel())
        if storage not in seen or tensor.numel() == 0:
            seen.add(storage)
            tensors[name] = tensor.detach().cpu().contiguous()
    return tensors


def save_weights(model: nn.Module, file: Path) -> None:
    tensors = distinct_tensors(model)
    save_file(tensors, str(file), metadata={"format": "pt", DIGEST_KEY: tensor_digest(tensors)})


def load_weights(model: nn.Module, file: Path, device: str | torch.device = "cpu") -> None:
    """Load `file` into `model`, refusing a file that is unreadable, altered since it was
    written, or made for another model; every error names the file."""
    hint = "export the checkpoint again (python export.py ckpt_path=<ckpt> out=<dir>)"
    if not file.is_file():
        raise UserError(f"{file}: no such weights file; {hint}")
    try:
        with safe_open(str(file), framework="pt") as reader:
            stored_digest = (reader.metadata() or {}).get(DIGEST_KEY)
        tensors = load_file(str(file), device="cpu")
    except Exception as error:  # safetensors raises its own error type for every malformation
        raise UserError(
            f"{file} is not a readable safetensors file (truncated or corrupt: {error}); {hint}"
        ) from error
    if stored_digest is not None and tensor_digest(tensors) != stored_digest:
        raise UserError(
            f"{file}: the tensors do not match the digest in its header, so the file was altered "
            f"after it was written; {hint}"
        )
    expected = distinct_tensors(model)
    problems = sorted(set(expected) ^ set(tensors))
    problems += [
        name
        for name in sorted(set(expected) & set(tensors))
        if expected[name].shape != tensors[name].shape
    ]
    if problems:
        raise UserError(
            f"{file} holds weights of another model than its config.json describes "
            f"(differing: {', '.join(problems[:5])}); {hint}"
        )
    model.load_state_dict(tensors, strict=False)
    model.to(device)
