"""Triton kernels for the xLSTM cells (forward and backward), optional at install and run time.

Importing this package never needs Triton: the kernel modules load on first use of
``mlstm_chunkwise_triton`` or ``slstm_recurrent_triton``; ask ``triton_available()`` first.
On CPU tensors the kernels run through Triton's interpreter (``TRITON_INTERPRET=1``, set before
Triton is imported), which is slow and meant for tests.
"""

import importlib
from typing import Any

__all__ = ["mlstm_chunkwise_triton", "slstm_recurrent_triton", "triton_available"]

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


def __getattr__(name: str) -> Any:
    if name in _KERNELS:
        return getattr(importlib.import_module(_KERNELS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
