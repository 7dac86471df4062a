"""Triton kernels for the xLSTM cells (forward and backward), optional at install and run time.

Importing this package never needs Triton: the kernel modules load on first use of
``mlstm_chunkwise_triton`` or ``slstm_recurrent_triton``; ask ``triton_available()`` first.
On CPU tensors the kernels run through Triton's interpreter (``TRITON_INTERPRET=1``, set before
Triton is imported), which is slow and meant for tests.
"""

import importlib
import subprocess
from typing import Any

__all__ = [
    "MLSTM_CHUNK_SIZES",
    "SLSTM_MAX_HEAD_DIM",
    "kernel_failure",
    "mlstm_chunkwise_triton",
    "slstm_recurrent_triton",
    "triton_available",
]

# The mLSTM kernel's tiles are chunk_size x chunk_size; these are the ones it is compiled and
# tested for.
MLSTM_CHUNK_SIZES = (16, 32, 64, 128)
# The largest sLSTM head dim the kernel's launch configurations cover.
SLSTM_MAX_HEAD_DIM = 256

# RuntimeErrors Triton raises from its toolchain and the CUDA driver rather than as its own
# exception types: an MLIR lowering that fails for this GPU, a module the driver cannot load or
# launch, no C compiler for the launcher it builds on first use. Matched by message, since
# PyTorch raises RuntimeError for ordinary bugs too.
_TOOLCHAIN_MESSAGES = ("PassManager::run failed", "Triton Error [CUDA]: ", "Failed to find C")

_KERNELS = {
    "mlstm_chunkwise_triton": ".mlstm_chunkwise",
    "slstm_recurrent_triton": ".slstm_recurrence",
}


def triton_available() -> bool:
    """Whether Triton can be imported."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def kernel_failure(error: Exception) -> str | None:
    """`"<type>: <line>"` when `error` is Triton failing to compile or launch a kernel on this
    device, None for anything else (bad arguments, out of memory, bugs), which must propagate.

    Counted: `CompilationError` (the front end refuses the kernel), `OutOfResources` (shared
    memory, registers or threads beyond the device's), `PTXASError` (the assembler fails),
    `CalledProcessError` (building the launcher fails, e.g. no Python headers), and the
    toolchain and driver RuntimeErrors above, except the driver's out-of-memory. Needs Triton.
    """
    from triton.compiler.errors import CompilationError
    from triton.runtime.errors import OutOfResources, PTXASError

    lines = str(error).strip().splitlines() or [""]
    if isinstance(error, CompilationError):
        # Its message starts with the kernel's source; what went wrong is the last line.
        return f"{type(error).__name__}: {lines[-1]}"
    toolchain = (
        isinstance(error, RuntimeError)
        and lines[0].startswith(_TOOLCHAIN_MESSAGES)
        and "out of memory" not in lines[0]
    )
    if toolchain or isinstance(error, OutOfResources | PTXASError | subprocess.CalledProcessError):
        return f"{type(error).__name__}: {lines[0]}"
    return None


def __getattr__(name: str) -> Any:
    if name in _KERNELS:
        return getattr(importlib.import_module(_KERNELS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
