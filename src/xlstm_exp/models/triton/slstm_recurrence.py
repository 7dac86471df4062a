"""sLSTM recurrence in Triton, forward and backward (Beck et al. 2024, arXiv 2405.04517, App. A.2).

Same semantics as ``slstm_recurrent`` in ``xlstm_exp.models.slstm``. One launch runs the whole
sequence: one program per (head, block of batch rows) loads the head's recurrent weights
(four DH x DH blocks, gates i, f, z, o) once, keeps them on chip and loops over time with the
states in float32 registers. The forward writes a float32 tape per step (the four gate
pre-activations with their recurrent part, and c, n, m, h after the step); the backward walks
the tape in reverse with the same program layout, accumulating dR on chip per program.

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
import triton.language as tl
from torch import Tensor

from xlstm_exp.models.slstm import SLSTMState
from xlstm_exp.models.triton.common import dot, dot_options, logsigmoid

BLOCK_B = 16  # batch rows per program: tl.dot's minimum, which keeps the most programs


@triton.jit
def _tanh(x):
    # No tanh in triton.language; this form cannot overflow (e <= 1).
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _load_r(r_ptr, head, gate, NH, DH: tl.constexpr, DHP: tl.constexpr):
    """R[gate, head] as a (DHP, DHP) float32 block, zero-padded."""
    d = tl.arange(0, DHP)
    mask = (d[:, None] < DH) & (d[None, :] < DH)
    offs = ((gate * NH + head) * DH + d[:, None]) * DH + d[None, :]
    return tl.load(r_ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _slstm_fwd_kernel(
    i_ptr, f_ptr, z_ptr, o_ptr, r_ptr, h_ptr, gates_ptr, states_ptr, B, NH, S,
    DH: tl.constexpr, DHP: tl.constexpr, BLOCK_B: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Whole sequence for one head and batch block; states slot 0 holds the initial state."""
    head, pb = tl.program_id(0), tl.program_id(1)
    rows = pb * BLOCK_B + tl.arange(0, BLOCK_B)
    d = tl.arange(0, DHP)
    mask = (rows[:, None] < B) & (d[None, :] < DH)
    bh = rows.to(tl.int64)[:, None] * NH + head
    x_base = bh * S * DH + d[None, :]  # (b, head, t, d) of the inputs and h, at t = 0
    gate_base = bh * S * 4 * DH + d[None, :]  # tape of gates (B, NH, S, 4, DH)
    state_base = bh * (S + 1) * 4 * DH + d[None, :]  # tape of states (B, NH, S + 1, 4, DH)
    r_i, r_f = _load_r(r_ptr, head, 0, NH, DH, DHP), _load_r(r_ptr, head, 1, NH, DH, DHP)
    r_z, r_o = _load_r(r_ptr, head, 2, NH, DH, DHP), _load_r(r_ptr, head, 3, NH, DH, DHP)
    # Padding lanes start from c = m = h = 0, n = 1 and stay finite, so they add nothing via R.
    c = tl.load(states_ptr + state_base, mask=mask, other=0.0)
    n = tl.load(states_ptr + state_base + DH, mask=mask, other=1.0)
    m = tl.load(states_ptr + state_base + 2 * DH, mask=mask, other=0.0)
    h = tl.load(states_ptr + state_base + 3 * DH, mask=mask, other=0.0)
    for t in range(S):
        x = x_base + t * DH
        ig = tl.load(i_ptr + x, mask=mask, other=0.0).to(tl.float32)
        fg = tl.load(f_ptr + x, mask=mask, other=0.0).to(tl.float32)
        zg = tl.load(z_ptr + x, mask=mask, other=0.0).to(tl.float32)
        og = tl.load(o_ptr + x, mask=mask, other=0.0).to(tl.float32)
        ig += dot(h, r_i, BF16, PRECISION)
        fg += dot(h, r_f, BF16, PRECISION)
        zg += dot(h, r_z, BF16, PRECISION)
        og += dot(h, r_o, BF16, PRECISION)
        log_f = logsigmoid(fg)
        m_new = tl.maximum(log_f + m, ig)
        write, decay = tl.exp(ig - m_new), tl.exp(log_f + m - m_new)
        c = decay * c + write * _tanh(zg)
        # n >= 1 by induction: m_new equals one of the two exponents, so write or decay is 1.
        n = decay * n + write
        h = tl.sigmoid(og) * c / n
        m = m_new
        tl.store(h_ptr + x, h.to(h_ptr.dtype.element_ty), mask=mask)
        g = gate_base + t * 4 * DH
        tl.store(gates_ptr + g, ig, mask=mask)
        tl.store(gates_ptr + g + DH, fg, mask=mask)
        tl.store(gates_ptr + g + 2 * DH, zg, mask=mask)
        tl.store(gates_ptr + g + 3 * DH, og, mask=mask)
        s = state_base + (t + 1) * 4 * DH
        tl.store(states_ptr + s, c, mask=mask)
        tl.store(states_ptr + s + DH, n, mask=mask)
        tl.store(states_ptr + s + 2 * DH, m, mask=mask)
        tl.store(states_ptr + s + 3 * DH, h, mask=mask)


@triton.jit
def _slstm_bwd_kernel(
    dh_ptr, r_ptr, gates_ptr, states_ptr, di_ptr, df_ptr, dz_ptr, do_ptr, dr_ptr, B, NH, S,
    DH: tl.constexpr, DHP: tl.constexpr, BLOCK_B: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Backward through time for one head and batch block; dR partial sums per program.

    The final state is returned detached, so dc, dn and the recurrent dh start at zero.
    """
    head, pb = tl.program_id(0), tl.program_id(1)
    rows = pb * BLOCK_B + tl.arange(0, BLOCK_B)
    d = tl.arange(0, DHP)
    mask = (rows[:, None] < B) & (d[None, :] < DH)
    bh = rows.to(tl.int64)[:, None] * NH + head
    x_base = bh * S * DH + d[None, :]
    gate_base = bh * S * 4 * DH + d[None, :]
    state_base = bh * (S + 1) * 4 * DH + d[None, :]
    r_i, r_f = _load_r(r_ptr, head, 0, NH, DH, DHP), _load_r(r_ptr, head, 1, NH, DH, DHP)
    r_z, r_o = _load_r(r_ptr, head, 2, NH, DH, DHP), _load_r(r_ptr, head, 3, NH, DH, DHP)
    dr_i = tl.zeros((DHP, DHP), dtype=tl.float32)
    dr_f = tl.zeros((DHP, DHP), dtype=tl.float32)
    dr_z = tl.zeros((DHP, DHP), dtype=tl.float32)
    dr_o = tl.zeros((DHP, DHP), dtype=tl.float32)
    dc = tl.zeros((BLOCK_B, DHP), dtype=tl.float32)
    dn = tl.zeros((BLOCK_B, DHP), dtype=tl.float32)
    dh_rec = tl.zeros((BLOCK_B, DHP), dtype=tl.float32)
    for tt in range(S):
        t = S - 1 - tt
        g = gate_base + t * 4 * DH
        ig = tl.load(gates_ptr + g, mask=mask, other=0.0)
        fg = tl.load(gates_ptr + g + DH, mask=mask, other=0.0)
        zg = tl.load(gates_ptr + g + 2 * DH, mask=mask, other=0.0)
        og = tl.load(gates_ptr + g + 3 * DH, mask=mask, other=0.0)
        s = state_base + t * 4 * DH  # the state before step t, then (+ 4 DH) after it
        c_prev = tl.load(states_ptr + s, mask=mask, other=0.0)
        n_prev = tl.load(states_ptr + s + DH, mask=mask, other=1.0)
        m_prev = tl.load(states_ptr + s + 2 * DH, mask=mask, other=0.0)
        h_prev = tl.load(states_ptr + s + 3 * DH, mask=mask, other=0.0)
        c = tl.load(states_ptr + s + 4 * DH, mask=mask, other=0.0)
        n = tl.load(states_ptr + s + 5 * DH, mask=mask, other=1.0)
        m = tl.load(states_ptr + s + 6 * DH, mask=mask, other=0.0)

        dh = tl.load(dh_ptr + x_base + t * DH, mask=mask, other=0.0).to(tl.float32) + dh_rec
        so = tl.sigmoid(og)
        d_og = dh * c / n * so * (1.0 - so)
        dc += dh * so / n
        dn -= dh * so * c / (n * n)
        write = tl.exp(ig - m)
        decay = tl.exp(logsigmoid(fg) + m_prev - m)
        tz = _tanh(zg)
        d_ig = (dc * tz + dn) * write
        d_zg = dc * write * (1.0 - tz * tz)
        # d log f' = d f' * f', and d log σ(f̃) / d f̃ = σ(-f̃).
        d_fg = (dc * c_prev + dn * n_prev) * decay * tl.sigmoid(-fg)
        dc *= decay
        dn *= decay

        x = x_base + t * DH
        tl.store(di_ptr + x, d_ig.to(di_ptr.dtype.element_ty), mask=mask)
        tl.store(df_ptr + x, d_fg.to(df_ptr.dtype.element_ty), mask=mask)
        tl.store(dz_ptr + x, d_zg.to(dz_ptr.dtype.element_ty), mask=mask)
        tl.store(do_ptr + x, d_og.to(do_ptr.dtype.element_ty), mask=mask)
        h_prev_t = tl.trans(h_prev)
        dr_i += dot(h_prev_t, d_ig, BF16, PRECISION)
        dr_f += dot(h_prev_t, d_fg, BF16, PRECISION)
        dr_z += dot(h_prev_t, d_zg, BF16, PRECISION)
        dr_o += dot(h_prev_t, d_og, BF16, PRECISION)
        dh_rec = dot(d_ig, tl.trans(r_i), BF16, PRECISION)
        dh_rec += dot(d_fg, tl.trans(r_f), BF16, PRECISION)
        dh_rec += dot(d_zg, tl.trans(r_z), BF16, PRECISION)
        dh_rec += dot(d_og, tl.trans(r_o), BF16, PRECISION)

    # Partial dR of this batch block: (num_batch_blocks, 4, NH, DH, DH), summed on the host.
    r_mask = (d[:, None] < DH) & (d[None, :] < DH)
    r_offs = d[:, None] * DH + d[None, :]
    base = (pb * 4 * NH + head).to(tl.int64) * DH * DH
    tl.store(dr_ptr + base + r_offs, dr_i, mask=r_mask)
    tl.store(dr_ptr + base + NH * DH * DH + r_offs, dr_f, mask=r_mask)
    tl.store(dr_ptr + base + 2 * NH * DH * DH + r_offs, dr_z, mask=r_mask)
    tl.store(dr_ptr + base + 3 * NH * DH * DH + r_offs, dr_o, mask=r_mask)


class _SLSTMRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, i, f, z, o, R, init):
        B, NH, S, DH = i.shape
        i, f, z, o, R = (x.contiguous() for x in (i, f, z, o, R))
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
        DHP = max(16, triton.next_power_of_2(DH))
        meta = dict(
            DH=DH,
            DHP=DHP,
            BLOCK_B=BLOCK_B,
            **dot_options(i),
            num_warps=4 if DHP <= 32 else 8,
        )
        grid = (NH, triton.cdiv(B, BLOCK_B))
        _slstm_fwd_kernel[grid](i, f, z, o, R, h, gates, states, B, NH, S, **meta)
        ctx.save_for_backward(R, gates, states)
        ctx.meta, ctx.grid, ctx.dtypes = meta, grid, (i.dtype, f.dtype, z.dtype, o.dtype)
        final = tuple(x.clone() for x in states[:, :, S].unbind(2))
        ctx.mark_non_differentiable(*final)
        return h, *final

    @staticmethod
    def backward(ctx, dh, *_):
        R, gates, states = ctx.saved_tensors
        B, NH, S, _, DH = gates.shape
        dh = dh.contiguous()
        di, df, dz, do = (dh.new_empty(dh.shape, dtype=dt) for dt in ctx.dtypes)
        dR = torch.empty(ctx.grid[1], 4, NH, DH, DH, device=dh.device, dtype=torch.float32)
        _slstm_bwd_kernel[ctx.grid](dh, R, gates, states, di, df, dz, do, dR, B, NH, S, **ctx.meta)
        return di, df, dz, do, dR.sum(0).to(R.dtype), None


def slstm_recurrent_triton(
    i: Tensor,
    f: Tensor,
    z: Tensor,
    o: Tensor,
    R: Tensor,
    state: SLSTMState | tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, SLSTMState]:
    """Stabilised sLSTM over a sequence; returns h ``(B, NH, S, DH)`` and the final state.

    i, f, z, o: gate pre-activations ``(B, NH, S, DH)`` (float32, bfloat16 or float16);
    R ``(4, NH, DH, DH)``: recurrent weights per gate (i, f, z, o) and head, applied as
    ``h_{t-1} @ R[g]``. h comes back in i's dtype, the state in float32 and detached. Gradients
    reach i, f, z, o and R but not an initial state, so one that requires grad is refused
    (use ``slstm_recurrent`` for that).
    """
    if i.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"slstm_recurrent_triton supports float32/bfloat16/float16, not {i.dtype}")
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
