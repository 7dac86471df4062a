"""Device code of the chunkwise mLSTM backward (see ``mlstm_kernels`` for the layout choices)."""

import triton
import triton.language as tl

from xlstm_exp.models.triton.common import dot
from xlstm_exp.models.triton.mlstm_kernels import (
    chunk_rows,
    chunk_scores,
    chunk_weights,
    den_grads,
    gate_matrix,
    row_tile,
    state_tile,
)


@triton.jit
def mlstm_bwd_states_kernel(
    q_ptr, dh_ptr, ig_ptr, fg_ptr, m_ptr, den_ptr, dhh_ptr, dC_ptr, dn_ptr, S, NC, DHK, DHV, eps,
    L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Gradient w.r.t. the state after every chunk (slot c: after chunk c), in reverse order, one
    program per (batch-head, key block, value block).

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
        slot = bh * NC + c
        tl.store(dC_ptr + slot * DHV * DHK + tile, dC, mask=tile_mask)
        if pv == 0:
            tl.store(dn_ptr + slot * DHK + ok, dn, mask=mk)
        first, t, valid = chunk_rows(bh, c, S, L)
        state = bh * (NC + 1) + c
        _, _, p, _, decay, m_row = chunk_weights(ig_ptr, fg_ptr, m_ptr, first, t, valid, state)
        dd, dden = den_grads(den_ptr, dhh_ptr, first, t, valid, m_row, eps)
        Q = row_tile(q_ptr, first, t, valid, DHK, ok, mk).to(tl.float32)
        dH = row_tile(dh_ptr, first, t, valid, DHV, ov, mv).to(tl.float32)
        dC = decay * dC + dot(tl.trans(dH * (p / dd)[:, None]), Q, BF16, PRECISION)
        dn = decay * dn + tl.sum(Q * (p * dden)[:, None], 0)


@triton.jit
def mlstm_bwd_qk_kernel(
    q_ptr, k_ptr, v_ptr, dh_ptr, ig_ptr, fg_ptr, C_ptr, n_ptr, m_ptr, den_ptr, dhh_ptr,
    dC_ptr, dn_ptr, dq_ptr, dk_ptr, qdq_ptr, kdk_ptr, BH, S, NC, DHK, DHV, scale, eps,
    L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """dq and dk for one chunk and key block, one program per (chunk, batch-head, key block),
    plus q·dq and k·dk over the block for the gates."""
    c, bh, pk = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2)
    first, t, valid = chunk_rows(bh, c, S, L)
    state, slot = bh * (NC + 1) + c, bh * NC + c
    ok = pk * BK + tl.arange(0, BK)
    mk = ok < DHK
    # Products with dh, not yet with dnum = dh / dd: a row scaling that commutes with them and
    # is applied after the loop, once the gate weights are there.
    dh_scores = tl.zeros((L, L), dtype=tl.float32)  # dh_i·v_j
    dh_state = tl.zeros((L, BK), dtype=tl.float32)  # rows dh_iᵀ C_c
    for vb in range(0, DHV, BV):
        ov = vb + tl.arange(0, BV)
        v_offs = t[:, None] * DHV + ov[None, :]
        v_mask = valid[:, None] & (ov < DHV)[None, :]
        dH = tl.load(dh_ptr + first * DHV + v_offs, mask=v_mask, other=0.0)
        V = tl.load(v_ptr + first * DHV + v_offs, mask=v_mask, other=0.0)
        # A 64-bit offset per element here measured fewer spills than a 64-bit base (ptxas).
        tile = state * DHV * DHK + ov[:, None] * DHK + ok[None, :]
        Ct = tl.load(C_ptr + tile, mask=(ov < DHV)[:, None] & mk[None, :], other=0.0)
        dh_scores += dot(dH, tl.trans(V), BF16, PRECISION)
        dh_state += dot(dH, Ct, BF16, PRECISION)
    i, b, p, w, _, m_row = chunk_weights(ig_ptr, fg_ptr, m_ptr, first, t, valid, state)
    dd, dden = den_grads(den_ptr, dhh_ptr, first, t, valid, m_row, eps)
    inv_dd = 1.0 / dd
    n_in = tl.load(n_ptr + state * DHK + ok, mask=mk, other=0.0)
    # The incoming state's part first: dh_state is then free before the L x L tile is used.
    dq = p[:, None] * (dh_state * inv_dd[:, None] + dden[:, None] * n_in[None, :])
    ds = (dh_scores * inv_dd[:, None] + dden[:, None]) * gate_matrix(i, b, m_row, t)
    k_offs = t[:, None] * DHK + ok[None, :]
    k_mask = valid[:, None] & mk[None, :]
    K = tl.load(k_ptr + first * DHK + k_offs, mask=k_mask, other=0.0)
    dq += scale * dot(ds, K, BF16, PRECISION)
    Q = tl.load(q_ptr + first * DHK + k_offs, mask=k_mask, other=0.0)
    tl.store(dq_ptr + first * DHK + k_offs, dq.to(dq_ptr.dtype.element_ty), mask=k_mask)
    part = pk * BH * S + first + t
    tl.store(qdq_ptr + part, tl.sum(Q.to(tl.float32) * dq, 1), mask=valid)
    dk = dot(tl.trans(ds), Q, BF16, PRECISION)
    # The outgoing state's part in a second pass over the values, with ds and dq gone.
    v_dstate = tl.zeros((L, BK), dtype=tl.float32)  # rows v_jᵀ dC_{c+1}
    for vb in range(0, DHV, BV):
        ov = vb + tl.arange(0, BV)
        mv = ov < DHV
        V = row_tile(v_ptr, first, t, valid, DHV, ov, mv)
        dCt = state_tile(dC_ptr, slot, DHV, DHK, ov, mv, ok, mk)
        v_dstate += dot(V, dCt, BF16, PRECISION)
    dn_out = tl.load(dn_ptr + slot * DHK + ok, mask=mk, other=0.0)
    # dk w.r.t. the scaled keys; the raw keys get scale times it.
    dk = scale * (dk + w[:, None] * (v_dstate + dn_out[None, :]))
    tl.store(dk_ptr + first * DHK + k_offs, dk.to(dk_ptr.dtype.element_ty), mask=k_mask)
    K = tl.load(k_ptr + first * DHK + k_offs, mask=k_mask, other=0.0)
    tl.store(kdk_ptr + part, tl.sum(K.to(tl.float32) * dk, 1), mask=valid)


@triton.jit
def mlstm_bwd_v_kernel(
    q_ptr, k_ptr, dh_ptr, ig_ptr, fg_ptr, m_ptr, den_ptr, dhh_ptr, dC_ptr, dv_ptr,
    S, NC, DHK, DHV, scale, eps,
    L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """dv for one chunk and value block, one program per (chunk, batch-head, value block)."""
    c, bh, pv = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2)
    first, t, valid = chunk_rows(bh, c, S, L)
    ov = pv * BV + tl.arange(0, BV)
    mv = ov < DHV
    scores = chunk_scores(q_ptr, k_ptr, first, t, valid, DHK, L, BK, BF16, PRECISION)
    state = bh * (NC + 1) + c
    i, b, _, w, _, m_row = chunk_weights(ig_ptr, fg_ptr, m_ptr, first, t, valid, state)
    dd, _ = den_grads(den_ptr, dhh_ptr, first, t, valid, m_row, eps)
    v_offs = t[:, None] * DHV + ov[None, :]
    v_mask = valid[:, None] & mv[None, :]
    dH = tl.load(dh_ptr + first * DHV + v_offs, mask=v_mask, other=0.0)
    # dnum = dh / dd: the row scaling goes into the scores, so that dh reaches the product as
    # loaded rather than as a float32 tile in registers.
    scores = scores * scale * gate_matrix(i, b, m_row, t) / dd[:, None]
    dv = dot(tl.trans(scores), dH, BF16, PRECISION)
    # The outgoing state's part in a second pass over the keys, with the scores gone.
    k_dstate = tl.zeros((L, BV), dtype=tl.float32)  # rows (dC_{c+1} k_j)ᵀ
    for kb in range(0, DHK, BK):
        ok = kb + tl.arange(0, BK)
        mk = ok < DHK
        K = row_tile(k_ptr, first, t, valid, DHK, ok, mk)
        dCt = tl.load(
            dC_ptr + (bh * NC + c) * DHV * DHK + ov[:, None] * DHK + ok[None, :],
            mask=mv[:, None] & mk[None, :],
            other=0.0,
        )
        k_dstate += dot(K, tl.trans(dCt), BF16, PRECISION)
    dv += w[:, None] * scale * k_dstate
    tl.store(dv_ptr + first * DHV + v_offs, dv.to(dv_ptr.dtype.element_ty), mask=v_mask)
