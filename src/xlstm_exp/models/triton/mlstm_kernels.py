"""Device code of the chunkwise mLSTM forward, and what the backward shares with it (see
``mlstm_chunkwise`` for the host side and the maths, ``mlstm_grad_kernels`` for the backward).

The head dims DHK and DHV are runtime arguments: every kernel loops over them, or is gridded over
them, in blocks of BK (keys) and BV (values), so head dims with the same blocks share one compile.
Register pressure shapes the chunk kernels (output and gradients, one program per chunk): at
L = 128 an L x L float32 tile is 64 registers per thread of 8 warps, so none of them holds two
such tiles, or one next to two L x block accumulators. The gate matrix is built after the loop
over feature blocks, where it fuses into the code that consumes it, and products with the chunk's
incoming or outgoing state accumulate in a second loop, once the L x L tile is folded away; that
loop reads one L x block operand again, from L2.
"""

import triton
import triton.language as tl

from xlstm_exp.models.triton.common import dot, logsigmoid


@triton.jit
def _maximum(a, b):
    # The combine function of a running maximum (tl.associative_scan).
    return tl.maximum(a, b)


@triton.jit
def chunk_rows(bh, c, S, L: tl.constexpr):
    """Row of chunk c's first step among the (batch-head, step) rows, the chunk's steps
    0..L-1 and which of them lie inside the sequence.

    Tiles are addressed from the chunk's first row: 32-bit offsets within the chunk, one 64-bit
    base per chunk, instead of a 64-bit offset per element.
    """
    t = tl.arange(0, L)
    return bh * S + c * L, t, c * L + t < S


@triton.jit
def chunk_gates(ig_ptr, fg_ptr, first, t, valid):
    """Input gates i, inclusive cumulative log forget gates b and their total g for a chunk.

    Steps past the sequence end write nothing (i = -inf) and decay nothing (log f = 0).
    """
    i = tl.load(ig_ptr + first + t, mask=valid, other=float("-inf"))
    f = tl.load(fg_ptr + first + t, mask=valid, other=0.0)
    log_f = tl.where(valid, logsigmoid(f), 0.0)
    return i, tl.cumsum(log_f, 0), tl.sum(log_f, 0)


@triton.jit
def chunk_weights(ig_ptr, fg_ptr, m_ptr, first, t, valid, state):
    """Stabilised weights of the chunk whose incoming state is slot `state`, recomputed
    identically by the forward and backward.

    i, b (L,): the chunk's gates (see `chunk_gates`), for `gate_matrix`; p (L,): weight of the
    incoming state per row; w (L,): weight of each step in the outgoing state; decay: weight of
    the incoming state in it; m_row (L,): the row stabilisers.
    """
    i, b, g = chunk_gates(ig_ptr, fg_ptr, first, t, valid)
    m_in = tl.load(m_ptr + state)
    m_out = tl.load(m_ptr + state + 1)
    # Row i's largest exponent, max(max_{j <= i} b_i - b_j + i_j, b_i + m_in), from a running
    # maximum over the row vector: no L x L reduction.
    m_row = b + tl.maximum(tl.associative_scan(i - b, 0, _maximum), m_in)
    p = tl.exp(b + m_in - m_row)
    w = tl.exp(g - b + i - m_out)
    decay = tl.exp(g + m_in - m_out)
    return i, b, p, w, decay, m_row


@triton.jit
def gate_matrix(i, b, m_row, t):
    """The intra-chunk gate matrix a[r, s] = exp(b_r - b_s + i_s - m_r) for s <= r, else 0."""
    log_d = tl.where(t[:, None] >= t[None, :], b[:, None] - b[None, :] + i[None, :], float("-inf"))
    return tl.exp(log_d - m_row[:, None])


@triton.jit
def den_grads(den_ptr, dhh_ptr, first, t, valid, m_row, eps):
    """The denominator dd = max(|den|, exp(-m)) + eps per row and the gradient of den.

    dhh = dh·h per row, so dL/d dd = -dhh / dd; the floor exp(-m) carries no gradient.
    """
    den = tl.load(den_ptr + first + t, mask=valid, other=1.0)
    dhh = tl.load(dhh_ptr + first + t, mask=valid, other=0.0)
    floor = tl.exp(-m_row)
    dd = tl.maximum(tl.abs(den), floor) + eps
    sign = tl.where(den < 0, -1.0, 1.0)
    dden = tl.where(tl.abs(den) > floor, -dhh / dd * sign, 0.0)
    return dd, dden


@triton.jit
def row_tile(ptr, first, t, valid, D, cols, cols_ok):
    """Rows t of the chunk that starts at row `first` of a (rows, D) matrix, columns `cols`;
    zero past the sequence and the head dim."""
    offs = first * D + t[:, None] * D + cols[None, :]
    return tl.load(ptr + offs, mask=valid[:, None] & cols_ok[None, :], other=0.0)


@triton.jit
def state_tile(ptr, slot, DHV, DHK, ov, mv, ok, mk):
    """Block (ov, ok) of the DHV x DHK state matrix in `slot`; zero past the head dims."""
    offs = slot * DHV * DHK + ov[:, None] * DHK + ok[None, :]
    return tl.load(ptr + offs, mask=mv[:, None] & mk[None, :], other=0.0)


@triton.jit
def chunk_scores(
    q_ptr, k_ptr, first, t, valid, DHK,
    L: tl.constexpr, BK: tl.constexpr, BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """The chunk's unscaled, ungated q·k scores (L x L), accumulated over key blocks."""
    scores = tl.zeros((L, L), dtype=tl.float32)
    for kb in range(0, DHK, BK):
        ok = kb + tl.arange(0, BK)
        offs = t[:, None] * DHK + ok[None, :]
        mask = valid[:, None] & (ok < DHK)[None, :]
        Q = tl.load(q_ptr + first * DHK + offs, mask=mask, other=0.0)
        K = tl.load(k_ptr + first * DHK + offs, mask=mask, other=0.0)
        scores += dot(Q, tl.trans(K), BF16, PRECISION)
    return scores


@triton.jit
def mlstm_fwd_states_kernel(
    k_ptr, v_ptr, ig_ptr, fg_ptr, C_ptr, n_ptr, m_ptr, S, NC, DHK, DHV, scale,
    L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """State before every chunk and the final one into slots 1..NC (slot 0: the initial state),
    one program per (batch-head, key block, value block)."""
    bh = tl.program_id(0).to(tl.int64)
    pk, pv = tl.program_id(1), tl.program_id(2)
    ok, ov = pk * BK + tl.arange(0, BK), pv * BV + tl.arange(0, BV)
    mk, mv = ok < DHK, ov < DHV
    tile = ov[:, None] * DHK + ok[None, :]
    tile_mask = mv[:, None] & mk[None, :]
    state = bh * (NC + 1)
    C = tl.load(C_ptr + state * DHV * DHK + tile, mask=tile_mask, other=0.0)
    n = tl.load(n_ptr + state * DHK + ok, mask=mk, other=0.0)
    m = tl.load(m_ptr + state)
    for c in range(NC):
        first, t, valid = chunk_rows(bh, c, S, L)
        i, b, g = chunk_gates(ig_ptr, fg_ptr, first, t, valid)
        log_w = g - b + i
        m_new = tl.maximum(g + m, tl.max(log_w, 0))
        decay, w = tl.exp(g + m - m_new), tl.exp(log_w - m_new)
        K = row_tile(k_ptr, first, t, valid, DHK, ok, mk)
        V = row_tile(v_ptr, first, t, valid, DHV, ov, mv)
        # Keys are scaled after the products: k / sqrt(DH) would not be exact in bfloat16.
        write = dot(tl.trans(V.to(tl.float32) * w[:, None]), K, BF16, PRECISION)
        C = decay * C + scale * write
        n = decay * n + scale * tl.sum(K.to(tl.float32) * w[:, None], 0)
        m = m_new
        state += 1
        tl.store(C_ptr + state * DHV * DHK + tile, C, mask=tile_mask)
        # Every value block computes the same n and m; one of them writes.
        if pv == 0:
            tl.store(n_ptr + state * DHK + ok, n, mask=mk)
            if pk == 0:
                tl.store(m_ptr + state, m)


@triton.jit
def mlstm_fwd_output_kernel(
    q_ptr, k_ptr, v_ptr, ig_ptr, fg_ptr, C_ptr, n_ptr, m_ptr, h_ptr, den_ptr,
    S, NC, DHK, DHV, scale, eps,
    L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BF16: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """h for one chunk and value block, one program per (chunk, batch-head, value block); also
    the signed denominator per row for the backward."""
    c, bh, pv = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.program_id(2)
    first, t, valid = chunk_rows(bh, c, S, L)
    state = bh * (NC + 1) + c
    ov = pv * BV + tl.arange(0, BV)
    mv = ov < DHV
    scores = chunk_scores(q_ptr, k_ptr, first, t, valid, DHK, L, BK, BF16, PRECISION)
    i, b, p, _, _, m_row = chunk_weights(ig_ptr, fg_ptr, m_ptr, first, t, valid, state)
    scores = scores * scale * gate_matrix(i, b, m_row, t)
    v_offs = t[:, None] * DHV + ov[None, :]
    v_mask = valid[:, None] & mv[None, :]
    V = tl.load(v_ptr + first * DHV + v_offs, mask=v_mask, other=0.0)
    num = dot(scores, V, BF16, PRECISION)
    den = tl.sum(scores, 1)
    # The incoming state's part in a second pass over the keys, with the scores gone.
    q_state = tl.zeros((L, BV), dtype=tl.float32)  # rows q_iᵀ C_cᵀ
    q_n = tl.zeros((L,), dtype=tl.float32)
    for kb in range(0, DHK, BK):
        ok = kb + tl.arange(0, BK)
        mk = ok < DHK
        Q = row_tile(q_ptr, first, t, valid, DHK, ok, mk)
        Ct = state_tile(C_ptr, state, DHV, DHK, ov, mv, ok, mk)
        n_in = tl.load(n_ptr + state * DHK + ok, mask=mk, other=0.0)
        q_state += dot(Q, tl.trans(Ct), BF16, PRECISION)
        q_n += tl.sum(Q.to(tl.float32) * n_in[None, :], 1)
    num += p[:, None] * q_state
    den += p * q_n
    # exp(-m) is the paper's floor of 1 on |nᵀq| in stabilised units.
    dd = tl.maximum(tl.abs(den), tl.exp(-m_row)) + eps
    h = (num / dd[:, None]).to(h_ptr.dtype.element_ty)
    tl.store(h_ptr + first * DHV + v_offs, h, mask=v_mask)
    if pv == 0:
        tl.store(den_ptr + first + t, den, mask=valid)
