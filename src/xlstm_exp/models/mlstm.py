"""Functional mLSTM kernels (Beck et al. 2024, arXiv 2405.04517, Sec. 2.3 and App. A.3).

Three forms of the same stabilised cell, equal up to rounding:

- ``mlstm_parallel``: quadratic in the sequence length, one gate matrix per head;
- ``mlstm_chunkwise``: parallel inside chunks, a short recurrence over chunk states;
- ``mlstm_recurrent``: a loop over ``mlstm_step``, the form used for generation.

Shapes: q, k, v ``(B, NH, S, DH)``; igate, fgate are gate pre-activations ``(B, NH, S)``;
h ``(B, NH, S, DH)``. Keys are scaled by 1/sqrt(DH) once on entry, so states hold scaled keys.
Internally everything runs in at least float32 (float64 stays float64); h is returned in the
input dtype and states stay in the compute dtype. The stabilisers m carry no gradient: the
output does not depend on them (up to eps), so their gradient paths would only cancel.
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class MLSTMState(NamedTuple):
    """mLSTM memory: C = sum v kᵀ ``(B, NH, DH, DH)``, n ``(B, NH, DH)``, stabiliser m ``(B, NH)``.

    C and n are stored divided by exp(m); m = -inf means empty memory.
    """

    C: Tensor
    n: Tensor
    m: Tensor


def _no_autocast(x: Tensor) -> torch.autocast:
    """Context without autocast: it would recast the float32 matmuls below to bf16/fp16."""
    return torch.autocast(x.device.type, enabled=False)


def _prepare(
    q: Tensor, k: Tensor, v: Tensor, igate: Tensor, fgate: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Upcast to the compute dtype, scale the keys and take the forget gate in log space."""
    dtype = torch.promote_types(q.dtype, torch.float32)
    k = k.to(dtype) * k.shape[-1] ** -0.5
    return q.to(dtype), k, v.to(dtype), igate.to(dtype), F.logsigmoid(fgate.to(dtype))


def _initial_state(
    state: MLSTMState | tuple[Tensor, Tensor, Tensor] | None, k: Tensor, v: Tensor
) -> MLSTMState:
    """The given state in the compute dtype of k, or empty memory (C = n = 0, m = -inf).

    m = -inf makes the first stabiliser m_1 = ĩ_1, exactly what the parallel form computes.
    """
    if state is not None:
        return MLSTMState(*(x.to(k.dtype) for x in state))
    batch_heads = k.shape[:2]
    return MLSTMState(
        k.new_zeros(*batch_heads, v.shape[-1], k.shape[-1]),
        k.new_zeros(*batch_heads, k.shape[-1]),
        k.new_full(batch_heads, -math.inf),
    )


def _log_gate_matrix(log_f: Tensor, igate: Tensor) -> Tensor:
    """D̃_ij = sum_{k=j+1..i} log f_k + ĩ_j for j <= i, -inf above the diagonal; shape (..., L, L).

    Built as a masked cumsum rather than b_i - b_j from one cumsum b, which would cancel two
    large sums on long sequences and lose float32 precision.
    """
    length = log_f.shape[-1]
    ones = torch.ones(length, length, dtype=torch.bool, device=log_f.device)
    terms = log_f.unsqueeze(-1).expand(*log_f.shape, length)  # [k, j] = log f_k
    decay = terms.masked_fill(~ones.tril(-1), 0.0).cumsum(-2)
    return (decay + igate.unsqueeze(-2)).masked_fill(~ones.tril(), -math.inf)


def _block_state(k: Tensor, v: Tensor, log_w: Tensor) -> MLSTMState:
    """Memory written by one block of steps from empty memory; log_w_j = log weight of step j."""
    m = log_w.amax(-1).detach()
    w = torch.exp(log_w - m.unsqueeze(-1)).unsqueeze(-1)
    return MLSTMState((w * v).transpose(-1, -2) @ k, (w * k).sum(-2), m)


def _attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_d: Tensor,
    eps: float,
    prev: tuple[MLSTMState, Tensor] | None = None,
) -> Tensor:
    """Stabilised outputs of a block from its log gate matrix, plus an optional incoming memory.

    ``prev`` is the memory before the block with the cumulative log forget gate (..., L) from
    the block start to each step, i.e. how much of that memory each step still sees.
    """
    m = log_d.amax(-1)
    if prev is not None:
        state, log_decay = prev
        log_w_prev = log_decay + state.m.unsqueeze(-1)
        m = torch.maximum(m, log_w_prev)
    m = m.detach()
    scores = (q @ k.transpose(-1, -2)) * torch.exp(log_d - m.unsqueeze(-1))
    num = scores @ v
    den = scores.sum(-1)
    if prev is not None:
        w_prev = torch.exp(log_w_prev - m)
        num = num + w_prev.unsqueeze(-1) * (q @ state.C.transpose(-1, -2))
        den = den + w_prev * (q @ state.n.unsqueeze(-1)).squeeze(-1)
    # exp(-m) is the paper's floor of 1 on |nᵀq| in stabilised units.
    den = torch.maximum(den.abs(), torch.exp(-m)) + eps
    return num / den.unsqueeze(-1)


def mlstm_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    igate: Tensor,
    fgate: Tensor,
    state: MLSTMState | None = None,
    eps: float = 1e-6,
) -> tuple[Tensor, MLSTMState]:
    """One time step: q, k, v ``(B, NH, DH)``, igate, fgate ``(B, NH)``; returns h, new state."""
    with _no_autocast(q):
        q_, k_, v_, i_, log_f = _prepare(q, k, v, igate, fgate)
        C, n, m = _initial_state(state, k_, v_)
        m_new = torch.maximum(log_f + m, i_).detach()
        decay = torch.exp(log_f + m - m_new)
        write = torch.exp(i_ - m_new)
        outer = v_.unsqueeze(-1) * k_.unsqueeze(-2)
        C = decay[..., None, None] * C + write[..., None, None] * outer
        n = decay[..., None] * n + write[..., None] * k_
        num = (C @ q_.unsqueeze(-1)).squeeze(-1)
        den = torch.maximum((n * q_).sum(-1).abs(), torch.exp(-m_new)) + eps
        return (num / den.unsqueeze(-1)).to(q.dtype), MLSTMState(C, n, m_new)


def mlstm_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    igate: Tensor,
    fgate: Tensor,
    state: MLSTMState | None = None,
    eps: float = 1e-6,
) -> tuple[Tensor, MLSTMState]:
    """Sequence form (S >= 1) as a loop over ``mlstm_step``; returns h and the final state."""
    hs = []
    for t in range(q.shape[2]):
        h, state = mlstm_step(
            q[:, :, t], k[:, :, t], v[:, :, t], igate[:, :, t], fgate[:, :, t], state, eps
        )
        hs.append(h)
    assert state is not None, "mlstm_recurrent needs at least one step"
    return torch.stack(hs, dim=2), state


def mlstm_parallel_with_state(
    q: Tensor, k: Tensor, v: Tensor, igate: Tensor, fgate: Tensor, eps: float = 1e-6
) -> tuple[Tensor, MLSTMState]:
    """Parallel form from empty memory; also returns the final state.

    The last row of the gate matrix holds the log weight of every step in the final memory.
    """
    with _no_autocast(q):
        q_, k_, v_, i_, log_f = _prepare(q, k, v, igate, fgate)
        log_d = _log_gate_matrix(log_f, i_)
        h = _attend(q_, k_, v_, log_d, eps)
        return h.to(q.dtype), _block_state(k_, v_, log_d[..., -1, :])


def mlstm_parallel(
    q: Tensor, k: Tensor, v: Tensor, igate: Tensor, fgate: Tensor, eps: float = 1e-6
) -> Tensor:
    """Parallel (quadratic) form from empty memory; returns h.

    The final state costs O(S DH²) next to the O(S² DH) outputs, so it is computed and dropped.
    """
    return mlstm_parallel_with_state(q, k, v, igate, fgate, eps)[0]


def mlstm_chunkwise_with_state(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    igate: Tensor,
    fgate: Tensor,
    chunk_size: int = 64,
    eps: float = 1e-6,
    state: MLSTMState | None = None,
) -> tuple[Tensor, MLSTMState]:
    """Chunkwise form for any length, starting from ``state``; returns h and the final state."""
    seq_len = q.shape[2]
    chunk = min(chunk_size, seq_len)  # a short sequence is one chunk, not a padded one
    pad = -seq_len % chunk
    with _no_autocast(q):
        q_, k_, v_, i_, log_f = _prepare(q, k, v, igate, fgate)
        prev = _initial_state(state, k_, v_)
        if pad:
            # Padded steps write nothing (exp(-inf) = 0) and decay nothing (log f = 0), so they
            # change neither earlier outputs nor the final state.
            q_, k_, v_ = (F.pad(x, (0, 0, 0, pad)) for x in (q_, k_, v_))
            i_ = F.pad(i_, (0, pad), value=-math.inf)
            log_f = F.pad(log_f, (0, pad))
        q_, k_, v_ = (x.unflatten(2, (-1, chunk)) for x in (q_, k_, v_))
        i_, log_f = (x.unflatten(2, (-1, chunk)) for x in (i_, log_f))

        log_d = _log_gate_matrix(log_f, i_)  # (B, NH, NC, L, L)
        log_decay = log_f.cumsum(-1)
        own = _block_state(k_, v_, log_d[..., -1, :])  # each chunk's write, all chunks at once

        # Only this combination of chunk states is sequential. Chunks are unbound once: indexing
        # inside the loop would make autograd write each chunk's gradient into a zero tensor
        # the size of all chunks, quadratic in the number of chunks.
        C, n, m = prev
        incoming = []
        chunks = zip(log_decay[..., -1].unbind(2), *(x.unbind(2) for x in own), strict=True)
        for chunk_decay, own_C, own_n, own_m in chunks:
            incoming.append((C, n, m))
            log_g = chunk_decay + m
            m_new = torch.maximum(log_g, own_m).detach()
            decay, w_own = torch.exp(log_g - m_new), torch.exp(own_m - m_new)
            C = decay[..., None, None] * C + w_own[..., None, None] * own_C
            n = decay[..., None] * n + w_own[..., None] * own_n
            m = m_new
        before = MLSTMState(*(torch.stack(x, dim=2) for x in zip(*incoming, strict=True)))

        h = _attend(q_, k_, v_, log_d, eps, (before, log_decay))
        return h.flatten(2, 3)[:, :, :seq_len].to(q.dtype), MLSTMState(C, n, m)


def mlstm_chunkwise(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    igate: Tensor,
    fgate: Tensor,
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> Tensor:
    """Chunkwise form from empty memory for any sequence length; returns h."""
    return mlstm_chunkwise_with_state(q, k, v, igate, fgate, chunk_size, eps)[0]
