"""sLSTM recurrence in Triton, forward and backward (Beck et al. 2024, arXiv 2405.04517, App. A.2).

Same semantics as ``slstm_recurrent`` in ``xlstm_exp.models.slstm``. One launch runs the whole
sequence (device code in ``slstm_kernels``). The forward writes a float32 tape per step (the four
gate pre-activations with their recurrent part, and c, n, m, h after the step); the backward walks
it in reverse and writes the float32 gate gradients, from which one batched matrix product gives
dR = sum_t h_{t-1}ᵀ dgates_t, so no program holds a DH x DH accumulator per gate.

Per step, with the stabiliser m held constant (it carries no gradient):
  i', f' = exp(ĩ - m_t), exp(log σ(f̃) + m_{t-1} - m_t),  c_t = f' c_{t-1} + i' tanh(z̃),
  n_t = f' n_{t-1} + i',  h_t = σ(õ) c_t / n_t.
The recurrent products take bfloat16 operands (float32 accumulation) for bfloat16 CUDA inputs
and float32 operands otherwise (TF32 on CUDA when ``torch.get_float32_matmul_precision()``
allows it).
"""

import math

import torch
import triton
from torch import Tensor

from xlstm_exp.models.slstm import SLSTMState
from xlstm_exp.models.triton import SLSTM_MAX_HEAD_DIM
from xlstm_exp.models.triton.common import dot_settings
from xlstm_exp.models.triton.launch import Launch
from xlstm_exp.models.triton.slstm_kernels import slstm_backward_kernel, slstm_forward_kernel

BLOCK_B = 16  # batch rows per program: tl.dot's minimum, which keeps the most programs
MAX_RESIDENT = 64  # largest (padded) head dim whose R stays on chip
STREAM_TILE = 32  # R tile of larger heads, streamed through the chip every step


def slstm_launches(
    head_dim: int, dtype: torch.dtype, on_cuda: bool = True, tf32: bool | None = None
) -> tuple[Launch, Launch]:
    """The forward and backward kernels as launched for inputs of `dtype` and `head_dim` (see
    `dot_settings` for `tf32`)."""
    padded = max(16, triton.next_power_of_2(head_dim))
    resident = padded <= MAX_RESIDENT
    dots = dot_settings(dtype, on_cuda, tf32)
    # With bfloat16 products R is only ever read as bfloat16: pass it so, halving each step's
    # reads of it.
    r_dtype = torch.bfloat16 if dots["BF16"] else torch.float32
    tile = padded if resident else STREAM_TILE
    constexprs = dict(RESIDENT=resident, TILE=tile, BLOCK_B=BLOCK_B, **dots)
    num_warps = 4 if tile <= 32 and resident else 8
    num_stages = 3 if resident else 2
    f32 = torch.float32
    forward = dict(i_ptr=dtype, f_ptr=dtype, z_ptr=dtype, o_ptr=dtype, r_ptr=r_dtype, h_ptr=dtype)
    forward.update(gates_ptr=f32, states_ptr=f32)
    backward = dict(dh_ptr=dtype, r_ptr=r_dtype, gates_ptr=f32, states_ptr=f32)
    backward.update(dg_ptr=f32, carry_ptr=f32)
    return (
        Launch(slstm_forward_kernel, constexprs, num_warps, forward, num_stages=num_stages),
        Launch(slstm_backward_kernel, constexprs, num_warps, backward, num_stages=num_stages),
    )


class _SLSTMRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, i, f, z, o, R, init):
        B, NH, S, DH = i.shape
        forward, backward = slstm_launches(DH, i.dtype, i.is_cuda)
        i, f, z, o = (x.contiguous() for x in (i, f, z, o))
        ctx.r_dtype = R.dtype
        R = R.to(forward.pointers["r_ptr"]).contiguous()
        f32 = dict(device=i.device, dtype=torch.float32)
        states = torch.empty(B, NH, S + 1, 4, DH, **f32)
        if init is None:
            # m = -inf: the first step gets m_1 = ĩ_1, as in the reference.
            states[:, :, 0] = 0.0
            states[:, :, 0, 2] = -math.inf
        else:
            states[:, :, 0] = torch.stack(init, dim=2)
        gates = torch.empty(B, NH, S, 4, DH, **f32)
        h = torch.empty_like(i)
        grid = (NH, triton.cdiv(B, BLOCK_B))
        forward(grid, i, f, z, o, R, h, gates, states, B, NH, S, DH)
        if any(ctx.needs_input_grad):
            # A backward that cannot compile or fit fails here, where backend=auto can still
            # fall back, not in the middle of loss.backward(). (gates and states stand in for
            # the float32 buffers of the same layout the backward allocates.)
            backward.prepare(grid, h, R, gates, states, gates, states, B, NH, S, DH)
        ctx.save_for_backward(R, gates, states)
        ctx.backward_launch, ctx.grid = backward, grid
        final = tuple(x.clone() for x in states[:, :, S].unbind(2))
        ctx.mark_non_differentiable(*final)
        return h, *final

    @staticmethod
    def backward(ctx, dh, *_):
        R, gates, states = ctx.saved_tensors
        B, NH, S, _, DH = gates.shape
        dg = torch.empty_like(gates)
        carry = torch.zeros(B, NH, 2, 2, DH, device=dh.device, dtype=torch.float32)
        ctx.backward_launch(ctx.grid, dh.contiguous(), R, gates, states, dg, carry, B, NH, S, DH)
        dR = torch.einsum("bnsk,bnsgj->gnkj", states[:, :, :S, 3], dg).to(ctx.r_dtype)
        di, df, dz, do = (x.to(dh.dtype) for x in dg.unbind(3))
        return di, df, dz, do, dR, None


def slstm_recurrent_triton(
    i: Tensor,
    f: Tensor,
    z: Tensor,
    o: Tensor,
    R: Tensor,
    state: SLSTMState | tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, SLSTMState]:
    """Stabilised sLSTM over a sequence; returns h ``(B, NH, S, DH)`` and the final state.

    i, f, z, o: gate pre-activations ``(B, NH, S, DH)`` of one dtype (float32, bfloat16 or
    float16), DH at most ``SLSTM_MAX_HEAD_DIM``; R ``(4, NH, DH, DH)``: recurrent weights per gate
    (i, f, z, o) and head, applied as ``h_{t-1} @ R[g]``. h comes back in i's dtype, the state in
    float32 and detached. Gradients reach i, f, z, o and R but not an initial state, so one that
    requires grad is refused (use ``slstm_recurrent`` for that).
    """
    if i.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"slstm_recurrent_triton supports float32/bfloat16/float16, not {i.dtype}")
    if any(x.dtype != i.dtype for x in (f, z, o)):
        raise ValueError("slstm_recurrent_triton needs i, f, z and o of one dtype")
    if i.shape[-1] > SLSTM_MAX_HEAD_DIM:
        raise ValueError(
            f"slstm_recurrent_triton serves head dims up to {SLSTM_MAX_HEAD_DIM}, not {i.shape[-1]}"
        )
    if i.shape[2] == 0:
        raise ValueError("slstm_recurrent_triton needs at least one time step")
    if state is not None and any(x.requires_grad for x in state):
        raise ValueError(
            "slstm_recurrent_triton does not propagate gradients into the initial state; "
            "pass a detached state or use slstm_recurrent"
        )
    init = None if state is None else tuple(x.float() for x in state)
    h, c, n, m, h_last = _SLSTMRecurrence.apply(i, f, z, o, R, init)
    return h, SLSTMState(c, n, m, h_last)
