"""Numerical tests of the sLSTM kernel against independent float64 step loops."""

import math

import pytest
import torch

from xlstm_exp.models.slstm import SLSTMState, slstm_recurrent

F64 = torch.float64


def make_inputs(B=2, NH=3, S=20, DH=5, dtype=F64, seed=0, f_mean=2.0, r_std=0.5):
    """Gate pre-activations i, f, z, o (B, NH, S, DH) and a random (nonzero) R (4, NH, DH, DH)."""
    g = torch.Generator().manual_seed(seed)
    i, f, z, o = (torch.randn(B, NH, S, DH, generator=g, dtype=F64) for _ in range(4))
    f = f + f_mean
    R = r_std / math.sqrt(DH) * torch.randn(4, NH, DH, DH, generator=g, dtype=F64)
    return tuple(x.to(dtype) for x in (i, f, z, o, R))


def random_state(B=2, NH=3, DH=5, seed=1):
    """A valid non-empty state: the stabilised normaliser is always >= 1."""
    g = torch.Generator().manual_seed(seed)
    c, m, h = (torch.randn(B, NH, DH, generator=g, dtype=F64) for _ in range(3))
    n = 1 + 2 * torch.rand(B, NH, DH, generator=g, dtype=F64)
    return SLSTMState(c, n, m, h)


def reference_slstm(i, f, z, o, R, state=None):
    """Stabilised sLSTM written out per gate and per head (float64, no batching tricks)."""
    B, NH, S, DH = i.shape
    if state is None:
        c, n, h = (torch.zeros(B, NH, DH, dtype=F64) for _ in range(3))
        m = torch.full((B, NH, DH), -math.inf, dtype=F64)
    else:
        c, n, m, h = state
    hs = []
    for t in range(S):
        rec = torch.zeros(4, B, NH, DH, dtype=F64)
        for gate in range(4):
            for head in range(NH):
                rec[gate, :, head] = h[:, head] @ R[gate, head]
        it, ft, zt, ot = (x[:, :, t] + rec[g] for g, x in enumerate((i, f, z, o)))
        log_f = torch.log(torch.sigmoid(ft))
        m_new = torch.maximum(log_f + m, it)
        i_p, f_p = torch.exp(it - m_new), torch.exp(log_f + m - m_new)
        c = f_p * c + i_p * torch.tanh(zt)
        n = f_p * n + i_p
        h = torch.sigmoid(ot) * c / n
        m = m_new
        hs.append(h)
    return torch.stack(hs, dim=2), SLSTMState(c, n, m, h)


def unstabilised_slstm(i, f, z, o, R):
    """The paper's equations with a raw exp input gate and no stabiliser."""
    B, NH, S, DH = i.shape
    c, n, h = (torch.zeros(B, NH, DH, dtype=F64) for _ in range(3))
    hs = []
    for t in range(S):
        rec = torch.einsum("bhd,ghde->gbhe", h, R)
        it, ft, zt, ot = (x[:, :, t] + rec[g] for g, x in enumerate((i, f, z, o)))
        c = torch.sigmoid(ft) * c + torch.exp(it) * torch.tanh(zt)
        n = torch.sigmoid(ft) * n + torch.exp(it)
        h = torch.sigmoid(ot) * c / n
        hs.append(h)
    return torch.stack(hs, dim=2)


def close(a, b, tol):
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


@pytest.mark.parametrize("with_state", [False, True])
def test_matches_reference_loop(with_state):
    x = make_inputs()
    state = random_state() if with_state else None
    h, final = slstm_recurrent(*x, state=state)
    h_ref, final_ref = reference_slstm(*x, state=state)
    assert h.dtype == F64 and isinstance(final, SLSTMState)
    close(h, h_ref, 1e-12)
    for a, b in zip(final, final_ref, strict=True):
        close(a, b, 1e-12)
    # The recurrent weights must matter, or R could be silently ignored.
    h_no_r, _ = reference_slstm(*x[:4], torch.zeros_like(x[4]), state=state)
    assert (h - h_no_r).abs().max() > 1e-2


def test_very_negative_first_input_gate():
    """Empty memory gives n_1 = 1 whatever ĩ_1, so h_1 = σ(õ_1) tanh(z̃_1) without 0/0."""
    i, f, z, o, R = make_inputs(dtype=torch.float32)
    i[:, :, 0] = -200.0
    h, _ = slstm_recurrent(i, f, z, o, R)
    assert torch.isfinite(h).all()
    close(h[:, :, 0], torch.sigmoid(o[:, :, 0]) * torch.tanh(z[:, :, 0]), 1e-6)


def test_gradient_matches_unstabilised_reference():
    x = [t.requires_grad_() for t in make_inputs(f_mean=1.0)]
    weight = torch.randn(2, 3, 20, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    h = slstm_recurrent(*x)[0]
    h_ref = unstabilised_slstm(*x)
    close(h, h_ref, 1e-12)
    grads = torch.autograd.grad((h * weight).sum(), x)
    grads_ref = torch.autograd.grad((h_ref * weight).sum(), x)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert g_ref.abs().max() > 1e-3
        close(g, g_ref, 1e-8)


def test_gradients_reach_an_initial_state():
    """The hand-written backward matches autograd through the reference loop for the inputs,
    R and a given state's c, n, h (m carries none: h does not depend on it)."""
    x = [t.requires_grad_() for t in make_inputs()]
    state = [t.requires_grad_() for t in random_state()]
    weight = torch.randn(2, 3, 20, 5, dtype=F64, generator=torch.Generator().manual_seed(3))
    h, final = slstm_recurrent(*x, state=SLSTMState(*state))
    h_ref, final_ref = reference_slstm(*x, state=SLSTMState(*state))
    wanted = [*x, state[0], state[1], state[3]]
    grads = torch.autograd.grad((h * weight).sum() + final.h.sum(), wanted)
    grads_ref = torch.autograd.grad((h_ref * weight).sum() + final_ref.h.sum(), wanted)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert g_ref.abs().max() > 1e-3
        close(g, g_ref, 1e-9)


def test_long_sequence_gradients_finite():
    x = [t.requires_grad_() for t in make_inputs(B=2, NH=2, S=8192, DH=8, dtype=torch.float32)]
    h, _ = slstm_recurrent(*x)
    h.square().mean().backward()
    assert torch.isfinite(h).all()
    assert all(torch.isfinite(t.grad).all() for t in x)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_extreme_gates_finite(dtype):
    i, f, z, o, R = make_inputs(S=32, dtype=dtype)
    x = [t.requires_grad_() for t in (100 * i, 100 * f, 100 * z, 100 * o, R)]
    h, _ = slstm_recurrent(*x)
    grads = torch.autograd.grad(h.sum(), x)
    assert torch.isfinite(h).all()
    assert all(torch.isfinite(g).all() for g in grads)


def test_bf16_autocast_finite():
    x = [t.to(torch.bfloat16) for t in make_inputs(dtype=torch.float32)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, state = slstm_recurrent(*x)
    assert h.dtype == torch.bfloat16 and torch.isfinite(h).all()
    assert state.c.dtype == torch.float32
    h_ref, _ = slstm_recurrent(*(t.float() for t in x))  # same bf16-rounded inputs
    torch.testing.assert_close(h.float(), h_ref, atol=1e-2, rtol=1e-2)


def test_carried_state():
    x = make_inputs(S=47)
    h_full, final_full = slstm_recurrent(*x)
    h1, state = slstm_recurrent(*(t[:, :, :30] for t in x[:4]), x[4])
    h2, final = slstm_recurrent(*(t[:, :, 30:] for t in x[:4]), x[4], state=state)
    close(torch.cat([h1, h2], dim=2), h_full, 1e-12)
    for a, b in zip(final, final_full, strict=True):
        close(a, b, 1e-12)


def test_causality_and_batch_independence():
    x = make_inputs(S=30)
    h, _ = slstm_recurrent(*x)
    t = 13
    perturbed = [u.clone() for u in x[:4]]
    for u in perturbed:
        u[:, :, t] += 1.0
    h2, _ = slstm_recurrent(*perturbed, x[4])
    assert torch.equal(h2[:, :, :t], h[:, :, :t])
    assert (h2[:, :, t:] - h[:, :, t:]).abs().amax(dim=(0, 1, 3)).min() > 1e-6

    other = [u.clone() for u in x[:4]]
    for u in other:
        u[1] = torch.randn_like(u[1])
    h3, _ = slstm_recurrent(*other, x[4])
    close(h3[0], h[0], 1e-14)
    assert (h3[1] - h[1]).abs().max() > 1e-3
