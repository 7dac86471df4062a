"""Keep freed memory in the process on Linux/glibc, so training steps reuse it.

glibc serves every allocation above 32 MiB with a fresh mmap and returns it to the system when
freed. On a CPU, a training step's activations are mostly that large, so each step page-faults
all of its memory in again (what that costs: bench/results/2026-11-29-bench-comment-figures.md).
The cost of keeping it is that the process holds on to its peak memory.
"""

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Switch glibc from mmap-per-large-block to reusing its heap; False where not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        # A trim threshold of -1 reads as SIZE_MAX inside glibc: never give the heap back.
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))
    except (OSError, AttributeError):
        return False
