"""Which kernels the xLSTM cells run on: the PyTorch forms or the Triton kernels."""

import os

import torch

from xlstm_exp.models.triton import triton_available

BACKENDS = ("auto", "torch", "triton")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def use_triton(backend: str, device: torch.device) -> bool:
    """`auto` takes Triton on a CUDA device when it is importable, PyTorch otherwise; `triton`
    insists on it (on a CPU only under Triton's interpreter, TRITON_INTERPRET=1, as tests do)."""
    if backend == "torch":
        return False
    if backend == "auto":
        return device.type == "cuda" and triton_available()
    if not triton_available():
        raise RuntimeError(
            "model.backend=triton needs Triton (pip install triton); use backend=auto or torch"
        )
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"model.backend=triton runs on CUDA devices, not {device.type}; use backend=auto, "
            "which falls back to the PyTorch kernels"
        )
    return True
