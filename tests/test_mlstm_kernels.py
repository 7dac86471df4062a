"""Numerical tests of the mLSTM kernels: the three forms agree, match the paper, stay finite."""

import functools
import math

import pytest
import torch

from xlstm_exp.models.mlstm import (
    MLSTMState,
    mlstm_chunkwise,
    mlstm_chunkwise_with_state,
    mlstm_parallel,
    mlstm_parallel_with_state,
    mlstm_recurrent,
    mlstm_step,
)

F64 = torch.float64


def make_inputs(B=2, NH=3, S=37, DH=8, dtype=F64, seed=0, i_std=2.0, f_mean=3.0, f_std=2.0):
    """Random q, k, v and gate pre-activations with a realistic spread (igate ~ N(0, 2²) etc.)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, NH, S, DH, generator=g, dtype=F64) for _ in range(3))
    igate = i_std * torch.randn(B, NH, S, generator=g, dtype=F64)
    fgate = f_mean + f_std * torch.randn(B, NH, S, generator=g, dtype=F64)
    return tuple(x.to(dtype) for x in (q, k, v, igate, fgate))


def forms(chunk_size=16):
    """The three sequence forms from empty memory, each returning h only."""
    return {
        "parallel": mlstm_parallel,
        "chunkwise": functools.partial(mlstm_chunkwise, chunk_size=chunk_size),
        "recurrent": lambda *a, **kw: mlstm_recurrent(*a, **kw)[0],
    }


def close(a, b, tol):
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


def states_close(a, b, tol):
    for x, y in zip(a, b, strict=True):
        close(x, y, tol)


@pytest.mark.parametrize("S", [1, 37, 50, 64])
def test_forms_agree_float64(S):
    x = make_inputs(S=S)
    h_rec, st_rec = mlstm_recurrent(*x)
    h_par, st_par = mlstm_parallel_with_state(*x)
    assert h_rec.dtype == F64 and isinstance(st_par, MLSTMState)
    assert st_rec.C.shape == (2, 3, 8, 8) and st_rec.n.shape == (2, 3, 8)
    assert st_rec.m.shape == (2, 3)
    close(h_par, h_rec, 1e-10)
    states_close(st_par, st_rec, 1e-10)
    assert torch.equal(mlstm_parallel(*x), h_par)
    for L in (1, 4, 16, 64):
        h_ch, st_ch = mlstm_chunkwise_with_state(*x, chunk_size=L)
        close(h_ch, h_rec, 1e-10)
        states_close(st_ch, st_rec, 1e-10)
        assert torch.equal(mlstm_chunkwise(*x, chunk_size=L), h_ch)


def test_forms_agree_float32():
    h_ref = mlstm_parallel(*make_inputs(S=50))
    x = make_inputs(S=50, dtype=torch.float32)
    outputs = [mlstm_parallel(*x), mlstm_recurrent(*x)[0]]
    outputs += [mlstm_chunkwise(*x, chunk_size=L) for L in (4, 16, 64)]
    for h in outputs:
        assert h.dtype == torch.float32
        torch.testing.assert_close(h.double(), h_ref, atol=1e-4, rtol=1e-4)


def test_gradients_agree_float64():
    x = [t.requires_grad_() for t in make_inputs(S=37)]
    weight = torch.randn(2, 3, 37, 8, dtype=F64, generator=torch.Generator().manual_seed(1))

    def grads(h):
        return torch.autograd.grad((h * weight).sum(), x)

    reference = grads(mlstm_recurrent(*x)[0])
    chunked = [mlstm_chunkwise(*x, chunk_size=L) for L in (5, 16)]  # 37 is a multiple of neither
    for h in [mlstm_parallel(*x), *chunked]:
        for g, g_ref in zip(grads(h), reference, strict=True):
            assert g.abs().max() > 0
            close(g, g_ref, 1e-8)


@pytest.mark.parametrize("split", [1, 23, 32])
def test_carried_state_chunkwise_and_step(split):
    x = make_inputs(S=50)
    h_full, st_full = mlstm_chunkwise_with_state(*x, chunk_size=16)
    first = [t[:, :, :split] for t in x]
    second = [t[:, :, split:] for t in x]
    h1, st1 = mlstm_chunkwise_with_state(*first, chunk_size=16)
    h2, st2 = mlstm_chunkwise_with_state(*second, chunk_size=16, state=st1)
    close(torch.cat([h1, h2], dim=2), h_full, 1e-10)
    states_close(st2, st_full, 1e-10)

    # Token-by-token decoding after a chunkwise prefill.
    state, hs = st1, [h1]
    for t in range(50 - split):
        h, state = mlstm_step(*(u[:, :, t] for u in second), state)
        hs.append(h.unsqueeze(2))
    close(torch.cat(hs, dim=2), h_full, 1e-10)
    states_close(state, st_full, 1e-10)

    # And the whole recurrent form from the parallel form's state.
    _, st_par = mlstm_parallel_with_state(*first)
    h_rec, st_rec = mlstm_recurrent(*second, state=st_par)
    close(h_rec, h_full[:, :, split:], 1e-10)
    states_close(st_rec, st_full, 1e-10)


def unstabilised_mlstm(q, k, v, igate, fgate):
    """The paper's equations without stabiliser or eps; also returns |nᵀq| per step."""
    B, NH, S, DH = q.shape
    C = torch.zeros(B, NH, DH, DH, dtype=F64)
    n = torch.zeros(B, NH, DH, dtype=F64)
    hs, nq = [], []
    for t in range(S):
        f = torch.sigmoid(fgate[:, :, t])[..., None]
        i = torch.exp(igate[:, :, t])[..., None]
        kt = k[:, :, t] / math.sqrt(DH)
        C = f[..., None] * C + i[..., None] * torch.einsum("bhd,bhe->bhde", v[:, :, t], kt)
        n = f * n + i * kt
        qn = torch.einsum("bhd,bhd->bh", n, q[:, :, t]).abs()
        hs.append(torch.einsum("bhde,bhe->bhd", C, q[:, :, t]) / qn.clamp(min=1.0)[..., None])
        nq.append(qn)
    return torch.stack(hs, dim=2), torch.stack(nq, dim=2)


def test_matches_unstabilised_paper_equations():
    x = make_inputs(S=40, i_std=1.0, f_mean=2.0, f_std=1.0, seed=3)
    h_ref, nq = unstabilised_mlstm(*x)
    # Both branches of the normaliser max(|nᵀq|, 1) must be exercised.
    assert (nq < 1).any() and (nq > 1).any()
    # Stabilised: h = C q / (max(|nᵀq|, 1) + eps·exp(m)), with m_t <= max_{j<=t} ĩ_j since
    # log f <= 0. So the relative deviation is at most eps·exp(max ĩ) (about 2e-5 here); with
    # eps = 0 only rounding remains.
    bound = 1e-6 * math.exp(x[3].max().item()) * h_ref.abs() + 1e-12
    for form in forms().values():
        h = form(*x)
        assert ((h - h_ref).abs() <= bound).all()
        assert (h - h_ref).abs().max() > 0  # eps is really there
        torch.testing.assert_close(form(*x, eps=0.0), h_ref, atol=1e-12, rtol=1e-12)


def test_long_sequence_float32_finite_and_accurate():
    x = [t.requires_grad_() for t in make_inputs(B=1, NH=2, S=8192, DH=16, dtype=torch.float32)]
    h = mlstm_chunkwise(*x)
    loss = h.square().mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(t.grad).all() for t in x)
    h_ref = mlstm_chunkwise(*(t.detach().double() for t in x))
    torch.testing.assert_close(h.detach().double(), h_ref, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_extreme_gates_finite(dtype):
    q, k, v, igate, fgate = make_inputs(S=24)
    x64 = (q, k, v, 100 * igate, 100 * fgate)
    h_ref = mlstm_recurrent(*x64)[0]
    x = [t.to(dtype).requires_grad_() for t in x64]
    for name, form in forms(chunk_size=8).items():
        h = form(*x)
        grads = torch.autograd.grad(h.sum(), x)
        assert torch.isfinite(h).all(), name
        assert all(torch.isfinite(g).all() for g in grads), name
        # Still accurate, not merely finite; float32 rounds gates of size ~100 to ~1e-5.
        close(h.double(), h_ref, 1e-10 if dtype == F64 else 1e-4)


def test_bf16_autocast_finite():
    x32 = make_inputs(S=40, dtype=torch.float32)
    x = [t.to(torch.bfloat16) for t in x32]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = [form(*x) for form in forms().values()]
    h_ref = mlstm_parallel(*(t.float() for t in x))  # same bf16-rounded inputs
    for h in outputs:
        assert h.dtype == torch.bfloat16 and torch.isfinite(h).all()
        # Only the bf16 rounding of the output remains (2^-8 relative).
        torch.testing.assert_close(h.float(), h_ref, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("weak", [False, True])
def test_associative_recall(weak):
    """Write three key→value pairs with one-hot keys, then read them back by key."""
    DH, i_write, f_open = 4, (-3.0 if weak else 10.0), 20.0
    values = torch.randn(3, DH, dtype=F64, generator=torch.Generator().manual_seed(5))
    keys = torch.eye(DH, dtype=F64)[:3]
    order = [2, 0, 1]  # read order, different from write order
    q = torch.zeros(1, 1, 6, DH, dtype=F64)
    k, v = torch.zeros_like(q), torch.zeros_like(q)
    k[0, 0, :3], v[0, 0, :3] = keys, values
    q[0, 0, 3:] = keys[order]
    igate = torch.tensor([[[i_write] * 3 + [-10.0] * 3]], dtype=F64)
    fgate = torch.full((1, 1, 6), f_open, dtype=F64)

    # Unstabilised, q = e_j reads C q = σ(f̃)^(t-j) e^ĩ v_j / sqrt(DH) and nᵀq is the same
    # scalar s without v_j, so h = s v_j / max(s, 1): exactly v_j when s >= 1 (open gate,
    # s ~ 1e4), s·v_j when the write was weak (s = e^-3 / 2). eps adds a relative
    # eps·e^m / max(s, 1) <= 2e-6 here, hence rtol 1e-5.
    for form in forms(chunk_size=4).values():  # chunks of 4 split writes from reads
        h = form(q, k, v, igate, fgate)[0, 0, 3:]
        for row, j in enumerate(order):
            s = torch.sigmoid(torch.tensor(f_open, dtype=F64)) ** (3 + row - j)
            s = s * math.exp(i_write) / math.sqrt(DH)
            expected = values[j] * s / max(s.item(), 1.0)
            cosine = torch.nn.functional.cosine_similarity(h[row], values[j], dim=0)
            assert cosine > 0.99
            torch.testing.assert_close(h[row], expected, rtol=1e-5, atol=0)


def test_causality_and_batch_independence():
    x = make_inputs(S=40)
    t = 21  # inside the second chunk of 16
    perturbed = [u.clone() for u in x]
    for u in perturbed:
        u[:, :, t] += 1.0
    for form in forms().values():
        h, h2 = form(*x), form(*perturbed)
        close(h2[:, :, :t], h[:, :, :t], 1e-13)
        assert (h2[:, :, t:] - h[:, :, t:]).abs().amax(dim=(0, 1, 3)).min() > 1e-6

    other = [u.clone() for u in x]
    for u in other:
        u[1] = torch.randn_like(u[1])
    for form in forms().values():
        h, h2 = form(*x), form(*other)
        close(h2[0], h[0], 1e-13)
        assert (h2[1] - h[1]).abs().max() > 1e-3
