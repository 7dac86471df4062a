"""One kernel at one configuration: what a wrapper launches and the ahead-of-time tests compile.

The wrappers build their launches from ``Launch`` values and the compile tests enumerate the same
values, so the configurations proven to compile and fit are exactly the ones that run.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from triton import knobs
from triton.runtime.jit import JITFunction

TRITON_TYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Launch:
    """`kernel` with its compile-time constants, warp count and pipeline depth.

    `pointers` gives the element type of every pointer argument; the other runtime arguments
    are 32-bit integers, except those named in `floats`.
    """

    kernel: JITFunction
    constexprs: Mapping[str, object]
    num_warps: int
    pointers: Mapping[str, torch.dtype]
    floats: frozenset[str] = field(default_factory=frozenset)
    num_stages: int = 3  # Triton's default: loops load this many iterations ahead

    def __call__(self, grid: tuple[int, ...], *args) -> None:
        options = dict(num_warps=self.num_warps, num_stages=self.num_stages)
        self.kernel[grid](*args, **self.constexprs, **options)

    def prepare(self, grid: tuple[int, ...], *args) -> None:
        """Compile and load the kernel for these arguments without launching it, so that a
        kernel that cannot compile or fit on this device fails now (under Triton's interpreter
        there is nothing to prepare)."""
        if knobs.runtime.interpret:
            return
        options = dict(num_warps=self.num_warps, num_stages=self.num_stages)
        compiled = self.kernel.warmup(*args, grid=grid, **self.constexprs, **options)
        compiled[grid]  # loading the module checks shared memory and threads against the device

    def signature(self) -> dict[str, str]:
        """Triton's signature of the kernel's arguments, for `triton.compile`."""
        signature = {}
        for name in self.kernel.arg_names:
            if name in self.constexprs:
                signature[name] = "constexpr"
            elif name in self.pointers:
                signature[name] = "*" + TRITON_TYPES[self.pointers[name]]
            else:
                signature[name] = "fp32" if name in self.floats else "i32"
        return signature
