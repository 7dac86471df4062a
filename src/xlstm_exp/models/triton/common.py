"""What both Triton kernels share: their matrix-product device function and its settings."""

import torch
import triton
import triton.language as tl


def dot_settings(dtype: torch.dtype, on_cuda: bool, tf32: bool | None = None) -> dict:
    """The BF16 and PRECISION arguments of `dot` for inputs of `dtype`; float32 products use
    TF32 on CUDA when `tf32` says so (None: when ``torch.get_float32_matmul_precision()``
    allows it)."""
    if tf32 is None:
        tf32 = torch.get_float32_matmul_precision() != "highest"
    return {
        # Triton 3.9's interpreter (CPU tensors) multiplies bfloat16 operands as raw integers.
        "BF16": dtype == torch.bfloat16 and on_cuda,
        # bfloat16 products ignore PRECISION: one value keeps them one compiled kernel.
        "PRECISION": "tf32" if on_cuda and (tf32 or dtype == torch.bfloat16) else "ieee",
    }


@triton.jit
def dot(a, b, BF16: tl.constexpr, PRECISION: tl.constexpr):
    """A matrix product accumulated in float32: bf16 operands for bf16 inputs, float32 ones
    (at PRECISION, "ieee" or "tf32") otherwise."""
    if BF16:
        out = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    else:
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision=PRECISION)
    return out


@triton.jit
def logsigmoid(x):
    # log1p is not in triton.language; the absolute error of log(1 + e) stays below 1e-7.
    return tl.minimum(x, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(x)))
