"""Chunkwise mLSTM in Triton, forward and backward (Beck et al. 2024, arXiv 2405.04517, App. A.3).

Same semantics as ``mlstm_chunkwise_with_state`` in ``xlstm_exp.models.mlstm``. Per (batch, head)
the sequence is cut into chunks of L steps; with b the cumulative log forget gate inside a chunk,
g its total and m the stabilisers:

- forward, states: C_{c+1} = exp(g + m_c - m_{c+1}) C_c
  + sum_j exp(g - b_j + i_j - m_{c+1}) v_j k_jᵀ (likewise n), one program per
  (batch-head, key block, value block) looping over the chunks;
- forward, outputs: per chunk the gated scores (q_i·k_j) exp(b_i - b_j + i_j - m_i) plus the
  incoming state weighted by exp(b_i + m_c - m_i), one program per (chunk, batch-head, value block);
- backward: the gradients of the chunk states by the reverse recurrence, then per chunk dq, dk
  (one kernel) and dv (another). The gate gradients need no kernel of their own: with the
  stabilisers fixed, h depends on q_t only through q_t exp(B_t) and on k_t only through
  k_t exp(i_t - B_t) (B the cumulative log forget gate over the sequence), so
  d i_t = k_t·dk_t and dB_t = q_t·dq_t - k_t·dk_t, and d log f is the reverse cumsum of dB.

States and all gate math stay in float32; matrix products take bfloat16 operands (float32
accumulation) for bfloat16 inputs on CUDA, and float32 operands otherwise (TF32 on CUDA when
``torch.get_float32_matmul_precision()`` allows it).
"""

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from xlstm_exp.models.mlstm import MLSTMState
from xlstm_exp.models.triton.common import dot, dot_options, logsigmoid


@triton.jit
def _chunk_gates(ig_ptr, fg_ptr, bh, c, S, L: tl.constexpr):
    """Input gates i, inclusive cumulative log forget gates b and their total g for chunk c.

    Steps past the sequence end write nothing (i = -inf) and decay nothing (log f = 0).
    """
    rows = c * L + tl.arange(0, L)
    valid = rows < S
    i = tl.load(ig_ptr + bh * S + rows, mask=valid, other=float("-inf")).to(tl.float32)
    f = tl.load(fg_ptr + bh * S + rows, mask=valid, other=0.0).to(tl.float32)
    log_f = tl.where(valid, logsigmoid(f), 0.0)
    return i, tl.cumsum(log_f, 0), tl.sum(log_f, 0), rows, valid


@triton.jit
def _chunk_weights(ig_ptr, fg_ptr, m_ptr, bh, c, S, NC, L: tl.constexpr):
    """Stabilised weights of chunk c, recomputed identically by the forward and backward.

    a (L, L): intra-chunk gate matrix; p (L,): weight of the incoming state per row;
    w (L,): weight of each step in the outgoing state; decay: weight of the incoming state in it;
    m_row (L,): the row stabilisers.
    """
    i, b, g, rows, valid = _chunk_gates(ig_ptr, fg_ptr, bh, c, S, L)
    m_in = tl.load(m_ptr + bh * (NC + 1) + c)
    m_out = tl.load(m_ptr + bh * (NC + 1) + c + 1)
    t = tl.arange(0, L)
    log_d = tl.where(t[:, None] >= t[None, :], b[:, None] - b[None, :] + i[None, :], float("-inf"))
    log_p = b + m_in
    m_row = tl.maximum(tl.max(log_d, 1), log_p)
    a = tl.exp(log_d - m_row[:, None])
    p = tl.exp(log_p - m_row)
    w = tl.exp(g - b + i - m_out)
    decay = tl.exp(g + m_in - m_out)
    return a, p, w, decay, m_row, rows, valid


@triton.jit
def _den_grads(den_ptr, dhh_ptr, bh, rows, valid, m_row, S, eps):
    """The denominator dd = max(|den|, exp(-m)) + eps per row and the gradient of den.

    dhh = dh·h per row, so dL/d dd = -dhh / dd; the floor exp(-m) carries no gradient.
    """
    den = tl.load(den_ptr + bh * S + rows, mask=valid, other=1.0)
    dhh = tl.load(dhh_ptr + bh * S + rows, mask=valid, other=0.0)
    floor = tl.exp(-m_row)
    dd = tl.maximum(tl.abs(den), floor) + eps
    sign = tl.where(den < 0, -1.0, 1.0)
    dden = tl.where(tl.abs(den) > floor, -dhh / dd * sign, 0.0)
    return dd, dden


@triton.jit
def _fwd_states_kernel(
    k_ptr, v_ptr, ig_ptr, fg_ptr, C_ptr, n_ptr, m_ptr, S, NC, scale,
    DHK: tl.constexpr, DHV: tl.constexpr, L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """State before every chunk and the final one into slots 1..NC (slot 0: the initial state)."""
    bh = tl.program_id(0).to(tl.int64)
    pk, pv = tl.program_id(1), tl.program_id(2)
    ok, ov = pk * BK + tl.arange(0, BK), pv * BV + tl.arange(0, BV)
    mk, mv = ok < DHK, ov < DHV
    tile = ov[:, None] * DHK + ok[None, :]
    tile_mask = mv[:, None] & mk[None, :]
    C_base = C_ptr + bh * (NC + 1) * DHV * DHK
    n_base = n_ptr + bh * (NC + 1) * DHK
    m_base = m_ptr + bh * (NC + 1)
    C = tl.load(C_base + tile, mask=tile_mask, other=0.0)
    n = tl.load(n_base + ok, mask=mk, other=0.0)
    m = tl.load(m_base)
    for c in range(NC):
        i, b, g, rows, valid = _chunk_gates(ig_ptr, fg_ptr, bh, c, S, L)
        log_w = g - b + i
        m_new = tl.maximum(g + m, tl.max(log_w, 0))
        decay, w = tl.exp(g + m - m_new), tl.exp(log_w - m_new)
        kv_rows = (bh * S + rows)[:, None]
        kv_mask = valid[:, None]
        K = tl.load(k_ptr + kv_rows * DHK + ok[None, :], mask=kv_mask & mk[None, :], other=0.0)
        V = tl.load(v_ptr + kv_rows * DHV + ov[None, :], mask=kv_mask & mv[None, :], other=0.0)
        # Keys are scaled after the products: k / sqrt(DH) would not be exact in bfloat16.
        write = dot(tl.trans(V.to(tl.float32) * w[:, None]), K, BF16, PRECISION)
        C = decay * C + scale * write
        n = decay * n + scale * tl.sum(K.to(tl.float32) * w[:, None], 0)
        m = m_new
        tl.store(C_base + (c + 1) * DHV * DHK + tile, C, mask=tile_mask)
        # Every value block computes the same n and m; one of them writes.
        if pv == 0:
            tl.store(n_base + (c + 1) * DHK + ok, n, mask=mk)
            if pk == 0:
                tl.store(m_base + c + 1, m)


@triton.jit
def _fwd_output_kernel(
    q_ptr, k_ptr, v_ptr, ig_ptr, fg_ptr, C_ptr, n_ptr, m_ptr, h_ptr, den_ptr, S, NC, scale, eps,
    DHK: tl.constexpr, DHV: tl.constexpr, L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """h for one chunk and value block; also the signed denominator per row for the backward."""
    c, bh, pv = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2)
    a, p, _, _, m_row, rows, valid = _chunk_weights(ig_ptr, fg_ptr, m_ptr, bh, c, S, NC, L)
    ov = pv * BV + tl.arange(0, BV)
    mv = ov < DHV
    scores = tl.zeros((L, L), dtype=tl.float32)
    q_state = tl.zeros((L, BV), dtype=tl.float32)
    q_n = tl.zeros((L,), dtype=tl.float32)
    for kb in range(0, DHK, BK):
        ok = kb + tl.arange(0, BK)
        mk = ok < DHK
        row_mask = valid[:, None] & mk[None, :]
        Q = tl.load(q_ptr + (bh * S + rows)[:, None] * DHK + ok[None, :], mask=row_mask, other=0.0)
        K = tl.load(k_ptr + (bh * S + rows)[:, None] * DHK + ok[None, :], mask=row_mask, other=0.0)
        state = bh * (NC + 1) + c
        Ct = tl.load(
            C_ptr + state * DHV * DHK + ov[:, None] * DHK + ok[None, :],
            mask=mv[:, None] & mk[None, :],
            other=0.0,
        )
        n_in = tl.load(n_ptr + state * DHK + ok, mask=mk, other=0.0)
        scores += dot(Q, tl.trans(K), BF16, PRECISION)
        q_state += dot(Q, tl.trans(Ct), BF16, PRECISION)
        q_n += tl.sum(Q.to(tl.float32) * n_in[None, :], 1)
    scores = scores * scale * a
    v_offs = (bh * S + rows)[:, None] * DHV + ov[None, :]
    v_mask = valid[:, None] & mv[None, :]
    V = tl.load(v_ptr + v_offs, mask=v_mask, other=0.0)
    num = dot(scores, V, BF16, PRECISION) + p[:, None] * q_state
    den = tl.sum(scores, 1) + p * q_n
    # exp(-m) is the paper's floor of 1 on |nᵀq| in stabilised units.
    dd = tl.maximum(tl.abs(den), tl.exp(-m_row)) + eps
    tl.store(h_ptr + v_offs, (num / dd[:, None]).to(h_ptr.dtype.element_ty), mask=v_mask)
    if pv == 0:
        tl.store(den_ptr + bh * S + rows, den, mask=valid)


@triton.jit
def _bwd_states_kernel(
    q_ptr, dh_ptr, ig_ptr, fg_ptr, m_ptr, den_ptr, dhh_ptr, dC_ptr, dn_ptr, S, NC, eps,
    DHK: tl.constexpr, DHV: tl.constexpr, L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Gradient w.r.t. the state after every chunk (slot c: after chunk c), in reverse order.

    The final state is returned detached, so the recurrence starts from zero after the last chunk.
    """
    bh = tl.program_id(0).to(tl.int64)
    pk, pv = tl.program_id(1), tl.program_id(2)
    ok, ov = pk * BK + tl.arange(0, BK), pv * BV + tl.arange(0, BV)
    mk, mv = ok < DHK, ov < DHV
    tile = ov[:, None] * DHK + ok[None, :]
    tile_mask = mv[:, None] & mk[None, :]
    dC = tl.zeros((BV, BK), dtype=tl.float32)
    dn = tl.zeros((BK,), dtype=tl.float32)
    for cc in range(NC):
        c = NC - 1 - cc
        tl.store(dC_ptr + (bh * NC + c) * DHV * DHK + tile, dC, mask=tile_mask)
        if pv == 0:
            tl.store(dn_ptr + (bh * NC + c) * DHK + ok, dn, mask=mk)
        _, p, _, decay, m_row, rows, valid = _chunk_weights(ig_ptr, fg_ptr, m_ptr, bh, c, S, NC, L)
        dd, dden = _den_grads(den_ptr, dhh_ptr, bh, rows, valid, m_row, S, eps)
        Q = tl.load(
            q_ptr + (bh * S + rows)[:, None] * DHK + ok[None, :],
            mask=valid[:, None] & mk[None, :],
            other=0.0,
        ).to(tl.float32)
        dH = tl.load(
            dh_ptr + (bh * S + rows)[:, None] * DHV + ov[None, :],
            mask=valid[:, None] & mv[None, :],
            other=0.0,
        ).to(tl.float32)
        dC = decay * dC + dot(tl.trans(dH * (p / dd)[:, None]), Q, BF16, PRECISION)
        dn = decay * dn + tl.sum(Q * (p * dden)[:, None], 0)


@triton.jit
def _bwd_qk_kernel(
    q_ptr, k_ptr, v_ptr, dh_ptr, ig_ptr, fg_ptr, C_ptr, n_ptr, m_ptr, den_ptr, dhh_ptr,
    dC_ptr, dn_ptr, dq_ptr, dk_ptr, qdq_ptr, kdk_ptr, BH, S, NC, scale, eps,
    DHK: tl.constexpr, DHV: tl.constexpr, L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """dq and dk for one chunk and key block, plus q·dq and k·dk over the block for the gates."""
    c, bh, pk = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2)
    a, p, w, _, m_row, rows, valid = _chunk_weights(ig_ptr, fg_ptr, m_ptr, bh, c, S, NC, L)
    dd, dden = _den_grads(den_ptr, dhh_ptr, bh, rows, valid, m_row, S, eps)
    ok = pk * BK + tl.arange(0, BK)
    mk = ok < DHK
    d_scores = tl.zeros((L, L), dtype=tl.float32)
    dnum_state = tl.zeros((L, BK), dtype=tl.float32)  # rows dnum_iᵀ C_c
    v_dstate = tl.zeros((L, BK), dtype=tl.float32)  # rows v_jᵀ dC_{c+1}
    for vb in range(0, DHV, BV):
        ov = vb + tl.arange(0, BV)
        mv = ov < DHV
        v_offs = (bh * S + rows)[:, None] * DHV + ov[None, :]
        v_mask = valid[:, None] & mv[None, :]
        dnum = tl.load(dh_ptr + v_offs, mask=v_mask, other=0.0).to(tl.float32) / dd[:, None]
        V = tl.load(v_ptr + v_offs, mask=v_mask, other=0.0)
        tile = ov[:, None] * DHK + ok[None, :]
        tile_mask = mv[:, None] & mk[None, :]
        Ct = tl.load(C_ptr + (bh * (NC + 1) + c) * DHV * DHK + tile, mask=tile_mask, other=0.0)
        dCt = tl.load(dC_ptr + (bh * NC + c) * DHV * DHK + tile, mask=tile_mask, other=0.0)
        d_scores += dot(dnum, tl.trans(V), BF16, PRECISION)
        dnum_state += dot(dnum, Ct, BF16, PRECISION)
        v_dstate += dot(V, dCt, BF16, PRECISION)
    k_offs = (bh * S + rows)[:, None] * DHK + ok[None, :]
    k_mask = valid[:, None] & mk[None, :]
    Q = tl.load(q_ptr + k_offs, mask=k_mask, other=0.0).to(tl.float32)
    K = tl.load(k_ptr + k_offs, mask=k_mask, other=0.0).to(tl.float32)
    n_in = tl.load(n_ptr + (bh * (NC + 1) + c) * DHK + ok, mask=mk, other=0.0)
    dn_out = tl.load(dn_ptr + (bh * NC + c) * DHK + ok, mask=mk, other=0.0)
    ds = (d_scores + dden[:, None]) * a
    dq = scale * dot(ds, K, BF16, PRECISION)
    dq += p[:, None] * (dnum_state + dden[:, None] * n_in[None, :])
    # dk w.r.t. the scaled keys; the raw keys get scale times it.
    dk = dot(tl.trans(ds), Q, BF16, PRECISION) + w[:, None] * (v_dstate + dn_out[None, :])
    dk *= scale
    tl.store(dq_ptr + k_offs, dq.to(dq_ptr.dtype.element_ty), mask=k_mask)
    tl.store(dk_ptr + k_offs, dk.to(dk_ptr.dtype.element_ty), mask=k_mask)
    part = (pk * BH + bh) * S + rows
    tl.store(qdq_ptr + part, tl.sum(Q * dq, 1), mask=valid)
    tl.store(kdk_ptr + part, tl.sum(K * dk, 1), mask=valid)


@triton.jit
def _bwd_v_kernel(
    q_ptr, k_ptr, dh_ptr, ig_ptr, fg_ptr, m_ptr, den_ptr, dhh_ptr, dC_ptr, dv_ptr,
    S, NC, scale, eps,
    DHK: tl.constexpr, DHV: tl.constexpr, L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """dv for one chunk and value block."""
    c, bh, pv = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2)
    a, _, w, _, m_row, rows, valid = _chunk_weights(ig_ptr, fg_ptr, m_ptr, bh, c, S, NC, L)
    dd, _ = _den_grads(den_ptr, dhh_ptr, bh, rows, valid, m_row, S, eps)
    ov = pv * BV + tl.arange(0, BV)
    mv = ov < DHV
    scores = tl.zeros((L, L), dtype=tl.float32)
    k_dstate = tl.zeros((L, BV), dtype=tl.float32)  # rows (dC_{c+1} k_j)ᵀ
    for kb in range(0, DHK, BK):
        ok = kb + tl.arange(0, BK)
        mk = ok < DHK
        k_offs = (bh * S + rows)[:, None] * DHK + ok[None, :]
        k_mask = valid[:, None] & mk[None, :]
        Q = tl.load(q_ptr + k_offs, mask=k_mask, other=0.0)
        K = tl.load(k_ptr + k_offs, mask=k_mask, other=0.0)
        dCt = tl.load(
            dC_ptr + (bh * NC + c) * DHV * DHK + ov[:, None] * DHK + ok[None, :],
            mask=mv[:, None] & mk[None, :],
            other=0.0,
        )
        scores += dot(Q, tl.trans(K), BF16, PRECISION)
        k_dstate += dot(K, tl.trans(dCt), BF16, PRECISION)
    v_offs = (bh * S + rows)[:, None] * DHV + ov[None, :]
    v_mask = valid[:, None] & mv[None, :]
    dnum = tl.load(dh_ptr + v_offs, mask=v_mask, other=0.0).to(tl.float32) / dd[:, None]
    dv = dot(tl.trans(scores * scale * a), dnum, BF16, PRECISION) + w[:, None] * scale * k_dstate
    tl.store(dv_ptr + v_offs, dv.to(dv_ptr.dtype.element_ty), mask=v_mask)


def _block(dim: int) -> int:
    """Feature block: a power of two, at least 16 (tl.dot's minimum), at most 64."""
    return min(max(16, triton.next_power_of_2(dim)), 64)


class _MLSTMChunkwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, igate, fgate, init, chunk_size, eps):
        B, NH, S, DHK = q.shape
        DHV = v.shape[-1]
        # A short sequence is one chunk, padded only up to tl.dot's minimum of 16 rows.
        L = min(chunk_size, max(16, triton.next_power_of_2(S)))
        NC = triton.cdiv(S, L)
        BH = B * NH
        q, k, v, igate, fgate = (x.contiguous() for x in (q, k, v, igate, fgate))
        f32 = dict(device=q.device, dtype=torch.float32)
        C = torch.empty(BH, NC + 1, DHV, DHK, **f32)
        n = torch.empty(BH, NC + 1, DHK, **f32)
        m = torch.empty(BH, NC + 1, **f32)
        if init is None:
            C[:, 0], n[:, 0], m[:, 0] = 0.0, 0.0, -math.inf
        else:
            C[:, 0], n[:, 0], m[:, 0] = (x.reshape(BH, *x.shape[2:]) for x in init)
        h = v.new_empty(v.shape, dtype=q.dtype)
        den = torch.empty(BH, S, **f32)
        BK, BV = _block(DHK), _block(DHV)
        meta = dict(
            DHK=DHK,
            DHV=DHV,
            L=L,
            BK=BK,
            BV=BV,
            **dot_options(q),
            # Large tiles: spread the L x L and L x block accumulators over more threads.
            num_warps=8 if L * max(BK, BV) >= 64 * 64 else 4,
        )
        nbk, nbv = triton.cdiv(DHK, BK), triton.cdiv(DHV, BV)
        scale = DHK**-0.5
        _fwd_states_kernel[(BH, nbk, nbv)](k, v, igate, fgate, C, n, m, S, NC, scale, **meta)
        _fwd_output_kernel[(NC, BH, nbv)](
            q, k, v, igate, fgate, C, n, m, h, den, S, NC, scale, eps, **meta
        )
        ctx.save_for_backward(q, k, v, igate, fgate, C, n, m, den, h)
        ctx.meta, ctx.eps, ctx.grid = meta, eps, (BH, NC, nbk, nbv)
        # Copies: the buffers are saved for the backward and must not be changed by the caller.
        final = (
            C[:, NC].reshape(B, NH, DHV, DHK).clone(),
            n[:, NC].reshape(B, NH, DHK).clone(),
            m[:, NC].reshape(B, NH).clone(),
        )
        ctx.mark_non_differentiable(*final)
        return h, *final

    @staticmethod
    def backward(ctx, dh, *_):
        q, k, v, igate, fgate, C, n, m, den, h = ctx.saved_tensors
        BH, NC, nbk, nbv = ctx.grid
        S, DHK, DHV = q.shape[2], q.shape[3], v.shape[3]
        meta, eps, scale = ctx.meta, ctx.eps, DHK**-0.5
        dh = dh.contiguous()
        dhh = (dh.float() * h.float()).sum(-1)
        f32 = dict(device=q.device, dtype=torch.float32)
        dC = torch.empty(BH, NC, DHV, DHK, **f32)
        dn = torch.empty(BH, NC, DHK, **f32)
        _bwd_states_kernel[(BH, nbk, nbv)](
            q, dh, igate, fgate, m, den, dhh, dC, dn, S, NC, eps, **meta
        )
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        qdq = torch.empty(nbk, BH, S, **f32)
        kdk = torch.empty(nbk, BH, S, **f32)
        _bwd_qk_kernel[(NC, BH, nbk)](
            q, k, v, dh, igate, fgate, C, n, m, den, dhh, dC, dn, dq, dk, qdq, kdk,
            BH, S, NC, scale, eps, **meta,
        )  # fmt: skip
        _bwd_v_kernel[(NC, BH, nbv)](
            q, k, dh, igate, fgate, m, den, dhh, dC, dv, S, NC, scale, eps, **meta
        )
        qdq, kdk = qdq.sum(0).view_as(igate), kdk.sum(0).view_as(igate)
        d_log_f = (qdq - kdk).flip(-1).cumsum(-1).flip(-1)
        dfgate = d_log_f * torch.sigmoid(-fgate.float())
        return dq, dk, dv, kdk.to(igate.dtype), dfgate.to(fgate.dtype), None, None, None


def mlstm_chunkwise_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    igate: Tensor,
    fgate: Tensor,
    chunk_size: int = 64,
    state: MLSTMState | tuple[Tensor, Tensor, Tensor] | None = None,
    eps: float = 1e-6,
) -> tuple[Tensor, MLSTMState]:
    """Chunkwise mLSTM from ``state`` (None: empty memory); returns h and the final state.

    q, k ``(B, NH, S, DHK)``, v ``(B, NH, S, DHV)``, igate, fgate ``(B, NH, S)`` pre-activations
    in float32, bfloat16 or float16; h comes back in q's dtype, the state in float32 and detached.
    ``chunk_size`` must be a power of two >= 16. Gradients reach q, k, v and the gates but not an
    initial state, so one that requires grad is refused (use the PyTorch form for that).
    """
    if q.shape[2] == 0:
        raise ValueError("mlstm_chunkwise_triton needs at least one time step")
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")
    if q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"mlstm_chunkwise_triton supports float32/bfloat16/float16, not {q.dtype}")
    if state is not None and any(x.requires_grad for x in state):
        raise ValueError(
            "mlstm_chunkwise_triton does not propagate gradients into the initial state; "
            "pass a detached state or use mlstm_chunkwise_with_state"
        )
    init = None if state is None else tuple(x.float() for x in state)
    h, C, n, m = _MLSTMChunkwise.apply(q, k, v, igate, fgate, init, chunk_size, eps)
    return h, MLSTMState(C, n, m)
