"""Which kernels the xLSTM cells run on: the PyTorch forms or the Triton kernels, and the
fallback that keeps `auto` running where a Triton kernel cannot."""

import os
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch

from xlstm_exp.models.triton import kernel_failure, triton_available
from xlstm_exp.user_error import UserError

BACKENDS = ("auto", "torch", "triton")

Result = TypeVar("Result")

# (kernel, device) pairs that `auto` runs on their PyTorch form for the rest of the process:
# a kernel that failed once would fail, or recompile, on every later step.
_FALLEN_BACK: set[tuple[str, str]] = set()
_WARNED: set[str] = set()


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UserError(
            f"model.backend: unknown kernel backend {backend!r}; choose one of "
            f"{', '.join(BACKENDS)}"
        )
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


def warn_once(message: str) -> None:
    """Warn once per process: every layer of a model, and every step, would repeat it."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, stacklevel=2)


def run_kernel(
    kernel: str,
    backend: str,
    device: torch.device,
    triton_form: Callable[..., Result],
    torch_form: Callable[..., Result],
    *args,
    **kwargs,
) -> Result:
    """`triton_form(*args, **kwargs)` where `backend` picks Triton on `device`, else
    `torch_form(*args, **kwargs)`.

    Under `auto`, a Triton that cannot be imported or a kernel that fails to compile or launch
    on the device (`kernel_failure` says which errors those are) is warned about once, naming
    `kernel`, the device and the reason, and the PyTorch form runs instead, now and in every
    later call of `kernel` on that device. Under `triton` the error propagates.
    """
    key = (kernel, str(device))
    if backend == "auto" and key not in _FALLEN_BACK:
        if device.type == "cuda" and not triton_available():
            _fall_back(key, device, "Triton cannot be imported (pip install triton)")
    if (backend == "auto" and key in _FALLEN_BACK) or not use_triton(backend, device):
        return torch_form(*args, **kwargs)
    try:
        return triton_form(*args, **kwargs)
    except Exception as error:
        reason = kernel_failure(error) if backend == "auto" else None
        if reason is None:
            raise
    _fall_back(key, device, reason)
    return torch_form(*args, **kwargs)


def _fall_back(key: tuple[str, str], device: torch.device, reason: str) -> None:
    _FALLEN_BACK.add(key)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    warn_once(
        f"{key[0]}: the Triton kernel cannot run on {name} ({reason}); model.backend=auto runs "
        "the PyTorch form instead, here and in every later call (slower). Set model.backend="
        "torch to silence this, or model.backend=triton to see the full error"
    )
