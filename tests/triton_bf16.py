"""A fixture for the Triton kernel tests: bfloat16 products under Triton's interpreter."""

import pytest


@pytest.fixture
def bf16_products(monkeypatch):
    """The kernels launched as on CUDA, where bfloat16 inputs get bfloat16 products (CPU
    tensors get float32 ones, see `dot_settings`). Triton's interpreter multiplies bfloat16
    tl.dot operands as their raw 16-bit patterns (it does not support bfloat16 arithmetic,
    triton-lang/triton#11584), so it is made to widen them to float32 first, which is exact:
    the products are then of bfloat16 values, summed in float32 as on the GPU."""
    import triton.language as tl
    from triton.runtime.interpreter import InterpreterBuilder

    from xlstm_exp.models.triton import mlstm_chunkwise, slstm_recurrence

    mlstm_launches = mlstm_chunkwise.mlstm_launches
    slstm_launches = slstm_recurrence.slstm_launches
    monkeypatch.setattr(
        mlstm_chunkwise, "mlstm_launches", lambda *args: mlstm_launches(*args[:4], on_cuda=True)
    )
    monkeypatch.setattr(
        slstm_recurrence, "slstm_launches", lambda *args: slstm_launches(*args[:2], on_cuda=True)
    )
    create_dot = InterpreterBuilder.create_dot

    def widened(builder, x):
        return builder.cast_impl(x, tl.float32) if x.dtype.scalar == tl.bfloat16 else x

    def dot_of_numbers(self, a, b, *rest):
        return create_dot(self, widened(self, a), widened(self, b), *rest)

    monkeypatch.setattr(InterpreterBuilder, "create_dot", dot_of_numbers)
