"""Device code of the sLSTM recurrence (see ``slstm_recurrence`` for the host side).

One program per (head, block of batch rows) runs the whole sequence. Two layouts, by head dim:
up to the tile width the head's four DH x DH recurrent blocks stay on chip for the whole sequence
and the states in registers. Above it R no longer fits in shared memory (at DH 128 in float32
the four blocks alone are 256 KiB, over an H100's 227 KiB), so each step streams R through the
chip in TILE x TILE tiles (from L2, where it stays) and keeps the states on the tape; a barrier
per step makes h_{t-1}, written by all the program's threads, visible to all of them.
"""

import triton
import triton.language as tl

from xlstm_exp.models.triton.common import dot, logsigmoid


@triton.jit
def _tanh(x):
    # No tanh in triton.language; this form cannot overflow (e <= 1).
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _program_rows(B, NH, BLOCK_B: tl.constexpr):
    """This program's head, the (batch, head) index of each of its rows, and which rows exist."""
    head, pb = tl.program_id(0), tl.program_id(1)
    rows = pb * BLOCK_B + tl.arange(0, BLOCK_B)
    return head, rows.to(tl.int64)[:, None] * NH + head, rows[:, None] < B


@triton.jit
def _gate_blocks(r_ptr, head, NH, DH):
    """Pointers to R[g, head] for the gates i, f, z, o."""
    r_head = r_ptr + head.to(tl.int64) * DH * DH
    stride = NH * DH * DH
    return r_head, r_head + stride, r_head + 2 * stride, r_head + 3 * stride


@triton.jit
def _r_tile(ptr, DH, rows, cols, TRANSPOSED: tl.constexpr):
    """Block [rows, cols] of the DH x DH matrix at ptr (or of its transpose) as float32, zero
    past the head dim."""
    mask = (rows[:, None] < DH) & (cols[None, :] < DH)
    if TRANSPOSED:
        offs = cols[None, :] * DH + rows[:, None]
    else:
        offs = rows[:, None] * DH + cols[None, :]
    return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _cell(ig, fg, zg, og, c, n, m):
    """One stabilised step; padding lanes (all zero, n = 1) stay finite and add nothing."""
    log_f = logsigmoid(fg)
    m_new = tl.maximum(log_f + m, ig)
    write, decay = tl.exp(ig - m_new), tl.exp(log_f + m - m_new)
    c = decay * c + write * _tanh(zg)
    # n >= 1 by induction: m_new equals one of the two exponents, so write or decay is 1.
    n = decay * n + write
    return c, n, m_new, tl.sigmoid(og) * c / n


@triton.jit
def _cell_grads(dh, dc, dn, ig, fg, zg, og, c_prev, n_prev, m_prev, c, n, m):
    """Gate gradients of one step, and dc, dn carried to the step before."""
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
    return d_ig, d_fg, d_zg, d_og, dc * decay, dn * decay


@triton.jit
def _load4(ptr, offs, stride, mask, other_1):
    """Four float32 vectors at offs + g * stride (g = 0..3); the second's padding is other_1."""
    a = tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(ptr + offs + stride, mask=mask, other=other_1).to(tl.float32)
    c = tl.load(ptr + offs + 2 * stride, mask=mask, other=0.0).to(tl.float32)
    d = tl.load(ptr + offs + 3 * stride, mask=mask, other=0.0).to(tl.float32)
    return a, b, c, d


@triton.jit
def _store4(ptr, offs, stride, mask, a, b, c, d):
    tl.store(ptr + offs, a, mask=mask)
    tl.store(ptr + offs + stride, b, mask=mask)
    tl.store(ptr + offs + 2 * stride, c, mask=mask)
    tl.store(ptr + offs + 3 * stride, d, mask=mask)


@triton.jit
def slstm_forward_kernel(
    i_ptr, f_ptr, z_ptr, o_ptr, r_ptr, h_ptr, gates_ptr, states_ptr, B, NH, S, DH,
    RESIDENT: tl.constexpr, TILE: tl.constexpr, BLOCK_B: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Whole sequence for one head and batch block; states slot 0 holds the initial state.

    Layouts: inputs and h (B, NH, S, DH); gates tape (B, NH, S, 4, DH); states tape
    (B, NH, S + 1, 4, DH) with c, n, m, h per slot.
    """
    head, bh, row_ok = _program_rows(B, NH, BLOCK_B)
    x_row, gate_row, state_row = bh * S * DH, bh * S * 4 * DH, bh * (S + 1) * 4 * DH
    ri_ptr, rf_ptr, rz_ptr, ro_ptr = _gate_blocks(r_ptr, head, NH, DH)
    if RESIDENT:  # R on chip, states in registers; TILE covers the head
        d = tl.arange(0, TILE)
        mask = row_ok & (d[None, :] < DH)
        r_i, r_f = _r_tile(ri_ptr, DH, d, d, False), _r_tile(rf_ptr, DH, d, d, False)
        r_z, r_o = _r_tile(rz_ptr, DH, d, d, False), _r_tile(ro_ptr, DH, d, d, False)
        c, n, m, h = _load4(states_ptr, state_row + d[None, :], DH, mask, 1.0)
        for t in range(S):
            x = x_row + t * DH + d[None, :]
            ig = tl.load(i_ptr + x, mask=mask, other=0.0).to(tl.float32)
            fg = tl.load(f_ptr + x, mask=mask, other=0.0).to(tl.float32)
            zg = tl.load(z_ptr + x, mask=mask, other=0.0).to(tl.float32)
            og = tl.load(o_ptr + x, mask=mask, other=0.0).to(tl.float32)
            ig += dot(h, r_i, BF16, PRECISION)
            fg += dot(h, r_f, BF16, PRECISION)
            zg += dot(h, r_z, BF16, PRECISION)
            og += dot(h, r_o, BF16, PRECISION)
            c, n, m, h = _cell(ig, fg, zg, og, c, n, m)
            tl.store(h_ptr + x, h.to(h_ptr.dtype.element_ty), mask=mask)
            _store4(gates_ptr, gate_row + t * 4 * DH + d[None, :], DH, mask, ig, fg, zg, og)
            _store4(states_ptr, state_row + (t + 1) * 4 * DH + d[None, :], DH, mask, c, n, m, h)
    else:  # R streamed in tiles, states on the tape
        for t in range(S):
            tl.debug_barrier()  # h_{t-1}, stored by every thread, is visible to every thread
            prev = state_row + t * 4 * DH
            for j in range(0, DH, TILE):
                cols = j + tl.arange(0, TILE)
                mask = row_ok & (cols[None, :] < DH)
                x = x_row + t * DH + cols[None, :]
                ig = tl.load(i_ptr + x, mask=mask, other=0.0).to(tl.float32)
                fg = tl.load(f_ptr + x, mask=mask, other=0.0).to(tl.float32)
                zg = tl.load(z_ptr + x, mask=mask, other=0.0).to(tl.float32)
                og = tl.load(o_ptr + x, mask=mask, other=0.0).to(tl.float32)
                for k in range(0, DH, TILE):
                    ks = k + tl.arange(0, TILE)
                    h_k = tl.load(
                        states_ptr + prev + 3 * DH + ks[None, :],
                        mask=row_ok & (ks[None, :] < DH),
                        other=0.0,
                    )
                    ig += dot(h_k, _r_tile(ri_ptr, DH, ks, cols, False), BF16, PRECISION)
                    fg += dot(h_k, _r_tile(rf_ptr, DH, ks, cols, False), BF16, PRECISION)
                    zg += dot(h_k, _r_tile(rz_ptr, DH, ks, cols, False), BF16, PRECISION)
                    og += dot(h_k, _r_tile(ro_ptr, DH, ks, cols, False), BF16, PRECISION)
                c, n, m, _ = _load4(states_ptr, prev + cols[None, :], DH, mask, 1.0)
                c, n, m, h = _cell(ig, fg, zg, og, c, n, m)
                tl.store(h_ptr + x, h.to(h_ptr.dtype.element_ty), mask=mask)
                _store4(gates_ptr, gate_row + t * 4 * DH + cols[None, :], DH, mask, ig, fg, zg, og)
                _store4(states_ptr, prev + 4 * DH + cols[None, :], DH, mask, c, n, m, h)


@triton.jit
def slstm_backward_kernel(
    dh_ptr, r_ptr, gates_ptr, states_ptr, dg_ptr, carry_ptr, B, NH, S, DH,
    RESIDENT: tl.constexpr, TILE: tl.constexpr, BLOCK_B: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Backward through time for one head and batch block: the gate gradients into dg
    (B, NH, S, 4, DH). The final state is returned detached, so dc, dn and the recurrent dh
    start at zero.

    The tiled layout carries dc, dn per column in carry (B, NH, 2, 2, DH), zeroed by the host:
    step tt reads slot tt % 2 and writes the other, so no thread overwrites what another has yet
    to read.
    """
    head, bh, row_ok = _program_rows(B, NH, BLOCK_B)
    x_row, gate_row, state_row = bh * S * DH, bh * S * 4 * DH, bh * (S + 1) * 4 * DH
    ri_ptr, rf_ptr, rz_ptr, ro_ptr = _gate_blocks(r_ptr, head, NH, DH)
    if RESIDENT:  # Rᵀ on chip, carries in registers; TILE covers the head
        d = tl.arange(0, TILE)
        mask = row_ok & (d[None, :] < DH)
        r_i, r_f = _r_tile(ri_ptr, DH, d, d, True), _r_tile(rf_ptr, DH, d, d, True)
        r_z, r_o = _r_tile(rz_ptr, DH, d, d, True), _r_tile(ro_ptr, DH, d, d, True)
        dc = tl.zeros((BLOCK_B, TILE), dtype=tl.float32)
        dn = tl.zeros((BLOCK_B, TILE), dtype=tl.float32)
        dh_rec = tl.zeros((BLOCK_B, TILE), dtype=tl.float32)
        for tt in range(S):
            t = S - 1 - tt
            g = gate_row + t * 4 * DH + d[None, :]
            ig, fg, zg, og = _load4(gates_ptr, g, DH, mask, 0.0)
            s = state_row + t * 4 * DH + d[None, :]  # the state before step t; + 4 DH after it
            c_prev, n_prev, m_prev, _ = _load4(states_ptr, s, DH, mask, 1.0)
            c, n, m, _ = _load4(states_ptr, s + 4 * DH, DH, mask, 1.0)
            dh = tl.load(dh_ptr + x_row + t * DH + d[None, :], mask=mask, other=0.0)
            d_ig, d_fg, d_zg, d_og, dc, dn = _cell_grads(
                dh.to(tl.float32) + dh_rec, dc, dn, ig, fg, zg, og, c_prev, n_prev, m_prev, c, n, m
            )
            _store4(dg_ptr, g, DH, mask, d_ig, d_fg, d_zg, d_og)
            dh_rec = dot(d_ig, r_i, BF16, PRECISION)
            dh_rec += dot(d_fg, r_f, BF16, PRECISION)
            dh_rec += dot(d_zg, r_z, BF16, PRECISION)
            dh_rec += dot(d_og, r_o, BF16, PRECISION)
    else:  # Rᵀ streamed in tiles, carries in memory
        carry_row = bh * 4 * DH
        for tt in range(S):
            t = S - 1 - tt
            tl.debug_barrier()  # the gradients of step t + 1 and the carries are visible
            read, write = carry_row + (tt % 2) * 2 * DH, carry_row + ((tt + 1) % 2) * 2 * DH
            # Nothing flows back from past the last step: no columns of step t + 1 are read.
            next_width = tl.where(t + 1 < S, DH, 0)
            for j in range(0, DH, TILE):
                cols = j + tl.arange(0, TILE)
                mask = row_ok & (cols[None, :] < DH)
                dh = tl.load(dh_ptr + x_row + t * DH + cols[None, :], mask=mask, other=0.0)
                dh = dh.to(tl.float32)
                for k in range(0, DH, TILE):
                    ks = k + tl.arange(0, TILE)
                    nxt = gate_row + (t + 1) * 4 * DH + ks[None, :]
                    next_mask = row_ok & (ks[None, :] < next_width)
                    d_i, d_f, d_z, d_o = _load4(dg_ptr, nxt, DH, next_mask, 0.0)
                    dh += dot(d_i, _r_tile(ri_ptr, DH, ks, cols, True), BF16, PRECISION)
                    dh += dot(d_f, _r_tile(rf_ptr, DH, ks, cols, True), BF16, PRECISION)
                    dh += dot(d_z, _r_tile(rz_ptr, DH, ks, cols, True), BF16, PRECISION)
                    dh += dot(d_o, _r_tile(ro_ptr, DH, ks, cols, True), BF16, PRECISION)
                g = gate_row + t * 4 * DH + cols[None, :]
                ig, fg, zg, og = _load4(gates_ptr, g, DH, mask, 0.0)
                s = state_row + t * 4 * DH + cols[None, :]
                c_prev, n_prev, m_prev, _ = _load4(states_ptr, s, DH, mask, 1.0)
                c, n, m, _ = _load4(states_ptr, s + 4 * DH, DH, mask, 1.0)
                dc = tl.load(carry_ptr + read + cols[None, :], mask=mask, other=0.0)
                dn = tl.load(carry_ptr + read + DH + cols[None, :], mask=mask, other=0.0)
                d_ig, d_fg, d_zg, d_og, dc, dn = _cell_grads(
                    dh, dc, dn, ig, fg, zg, og, c_prev, n_prev, m_prev, c, n, m
                )
                _store4(dg_ptr, g, DH, mask, d_ig, d_fg, d_zg, d_og)
                tl.store(carry_ptr + write + cols[None, :], dc, mask=mask)
                tl.store(carry_ptr + write + DH + cols[None, :], dn, mask=mask)
