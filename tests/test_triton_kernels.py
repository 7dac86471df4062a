"""The Triton mLSTM and sLSTM kernels against the PyTorch references: outputs, states, gradients.

Without CUDA the kernels run on CPU tensors through Triton's interpreter (conftest.py switches
it on before anything imports Triton); the module is skipped when Triton is not installed.
"""

import math
import sys

import pytest
import torch

pytest.importorskip("triton")

from triton_bf16 import bf16_products  # noqa: E402, F401 (a fixture)

from xlstm_exp.models import triton as triton_kernels  # noqa: E402
from xlstm_exp.models.mlstm import MLSTMState, mlstm_chunkwise_with_state  # noqa: E402
from xlstm_exp.models.slstm import SLSTMState, slstm_recurrent  # noqa: E402
from xlstm_exp.models.triton import mlstm_chunkwise_triton, slstm_recurrent_triton  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
F32_TOL = 1e-4
BF16_TOL = 4e-2
# The float32 outputs that come out of the kernels' products (the states) stay within 3e-7 of
# float64 with float32 products; bfloat16 operands (8 significant bits) move them by about 1e-4
# or more, rounded to nearest as on the GPU (the interpreter truncates: 2e-4 or more).
BF16_PRODUCTS_FLOOR = 5e-6


def rel_err(actual, expected):
    """Largest absolute error relative to the largest reference magnitude."""
    expected = expected.detach().float()
    scale = expected.abs().max().clamp_min(1e-30)
    return ((actual.detach().float() - expected).abs().max() / scale).item()


def assert_all_close(actual, expected, tol, names) -> dict[str, float]:
    """Checks each relative error against `tol`; returns them by name."""
    errors = {}
    for name, a, e in zip(names, actual, expected, strict=True):
        assert a.shape == e.shape, name
        assert torch.isfinite(a).all(), f"{name} not finite"
        errors[name] = rel_err(a, e)
        assert errors[name] <= tol, f"{name}: relative error {errors[name]:.2e} > {tol:.0e}"
    return errors


def randn(*shape, gen, scale=1.0, shift=0.0):
    return (shift + scale * torch.randn(*shape, generator=gen)).to(DEVICE)


def overflowing(gate, seed=2):
    """Input gates of +-30, every 7th step +-100: exp overflows float32 without the stabiliser."""
    sign = torch.randn(gate.shape, generator=torch.Generator().manual_seed(seed)).sign()
    big = 30 * sign
    big[..., ::7] *= 100 / 30
    assert torch.isinf(torch.exp(big)).any()
    return big.to(DEVICE)


def compare(fn, ref_fn, inputs, state, dtype, tol, names) -> dict[str, float]:
    """Compare h, final state and input gradients; the reference runs in float64 on the same
    (dtype-rounded) inputs, state and upstream gradient. Returns the relative errors by name."""
    x = [t.to(dtype).requires_grad_() for t in inputs]
    h, final = fn(*x, state=state)
    assert h.dtype == dtype
    dh = torch.randn(h.shape, generator=torch.Generator().manual_seed(7)).to(DEVICE, dtype)
    grads = torch.autograd.grad(h, x, dh)

    x_ref = [t.detach().double().requires_grad_() for t in x]
    state_ref = None if state is None else type(state)(*(s.double() for s in state))
    h_ref, final_ref = ref_fn(*x_ref, state=state_ref)
    grads_ref = torch.autograd.grad(h_ref, x_ref, dh.double())

    assert not any(s.requires_grad for s in final)
    labels = ["h", *(f"state.{f}" for f in final_ref._fields), *(f"d{n}" for n in names)]
    return assert_all_close([h, *final, *grads], [h_ref, *final_ref, *grads_ref], tol, labels)


# --- mLSTM ---------------------------------------------------------------------------------


def mlstm_inputs(B=2, NH=2, S=40, DHK=16, DHV=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k = randn(B, NH, S, DHK, gen=gen), randn(B, NH, S, DHK, gen=gen)
    v = randn(B, NH, S, DHV, gen=gen)
    igate = randn(B, NH, S, gen=gen, scale=2.0)
    fgate = randn(B, NH, S, gen=gen, scale=2.0, shift=3.0)
    return q, k, v, igate, fgate


def mlstm_state(B=2, NH=2, DHK=16, DHV=16, seed=1):
    """A memory large enough (m around 5) to still weigh in on the final state after 40 steps."""
    gen = torch.Generator().manual_seed(seed)
    C, n = randn(B, NH, DHV, DHK, gen=gen), randn(B, NH, DHK, gen=gen)
    return MLSTMState(C, n, randn(B, NH, gen=gen, shift=5.0))


def compare_mlstm(inputs, chunk_size, state=None, dtype=torch.float32, tol=F32_TOL):
    def fn(*x, state):
        return mlstm_chunkwise_triton(*x, chunk_size=chunk_size, state=state)

    def ref(*x, state):
        return mlstm_chunkwise_with_state(*x, chunk_size=chunk_size, state=state)

    return compare(fn, ref, inputs, state, dtype, tol, ["q", "k", "v", "igate", "fgate"])


@pytest.mark.parametrize(
    "B, NH, S, DHK, DHV, chunk_size",
    [
        (2, 2, 40, 16, 16, 16),  # last chunk partial
        (1, 2, 5, 8, 8, 64),  # one short chunk, head dim padded up to 16
        (1, 1, 40, 80, 24, 32),  # two key blocks, distinct key and value widths
    ],
)
def test_mlstm_matches_reference(B, NH, S, DHK, DHV, chunk_size):
    compare_mlstm(mlstm_inputs(B, NH, S, DHK, DHV), chunk_size)


def test_mlstm_initial_state():
    compare_mlstm(mlstm_inputs(), 16, state=mlstm_state())


# A row that has seen only very negative input gates has an infinite floor exp(-m), so h = 0.
@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
def test_mlstm_gates_that_overflow_unstabilised():
    q, k, v, igate, fgate = mlstm_inputs()
    # Positive q·k: no cancellation in the denominator, which would amplify rounding (a
    # conditioning matter that both forms share, not what this test is about).
    compare_mlstm((q.abs(), k.abs(), v, overflowing(igate), fgate), 16)


@pytest.mark.usefixtures("bf16_products")
def test_mlstm_bfloat16():
    errors = compare_mlstm(mlstm_inputs(), 16, dtype=torch.bfloat16, tol=BF16_TOL)
    # The other outputs are rounded to bfloat16 and n, m take no products: C shows which ran.
    assert errors["state.C"] > BF16_PRODUCTS_FLOOR


def test_mlstm_cuda_core_launches(monkeypatch):
    """The launches for float32 products on CUDA cores (TF32 off) run shorter chunks than asked
    and narrower feature loops; here through the interpreter too, on a partial last chunk and
    partial key and value blocks."""
    from xlstm_exp.models.triton import mlstm_chunkwise as module

    launches = module.mlstm_launches

    def cuda_core_launches(*args, **kwargs):
        return launches(*args[:4], on_cuda=True, tf32=False)

    monkeypatch.setattr(module, "mlstm_launches", cuda_core_launches)
    assert cuda_core_launches(80, 24, 64, torch.float32).fwd_output.constexprs["L"] == 32
    compare_mlstm(mlstm_inputs(B=1, S=70, DHK=80, DHV=24), 64)


def test_mlstm_refusals():
    x = mlstm_inputs(S=8)
    state = mlstm_state()
    with pytest.raises(ValueError, match="initial state"):
        mlstm_chunkwise_triton(*x, state=MLSTMState(*(s.requires_grad_() for s in state)))
    with pytest.raises(ValueError, match="power of two"):
        mlstm_chunkwise_triton(*x, chunk_size=24)


# --- sLSTM ---------------------------------------------------------------------------------


def slstm_inputs(B=2, NH=2, S=40, DH=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    i = randn(B, NH, S, DH, gen=gen)
    f = randn(B, NH, S, DH, gen=gen, shift=2.0)
    z, o = randn(B, NH, S, DH, gen=gen), randn(B, NH, S, DH, gen=gen)
    R = randn(4, NH, DH, DH, gen=gen, scale=0.5 / math.sqrt(DH))
    return i, f, z, o, R


def slstm_state(B=2, NH=2, DH=16, seed=1):
    gen = torch.Generator().manual_seed(seed)
    c, m, h = (randn(B, NH, DH, gen=gen) for _ in range(3))
    n = 1 + 2 * torch.rand(B, NH, DH, generator=gen).to(DEVICE)  # a valid normaliser is >= 1
    return SLSTMState(c, n, m, h)


def compare_slstm(inputs, state=None, dtype=torch.float32, tol=F32_TOL):
    names = ["i", "f", "z", "o", "R"]
    return compare(slstm_recurrent_triton, slstm_recurrent, inputs, state, dtype, tol, names)


@pytest.mark.parametrize(
    "B, NH, S, DH",
    [
        (2, 2, 40, 16),
        (17, 1, 10, 24),  # two batch blocks, head dim padded up to 32
    ],
)
def test_slstm_matches_reference(B, NH, S, DH):
    compare_slstm(slstm_inputs(B, NH, S, DH))


@pytest.mark.parametrize("B, NH, S, DH", [(3, 2, 7, 80), (2, 1, 5, 256)])
def test_slstm_streaming_r_in_tiles_matches_reference(B, NH, S, DH):
    """Heads above the on-chip limit stream R in tiles: several column and row tiles, a
    partial last one (80 = 2.5 tiles of 32), the largest head; with and without a state."""
    from xlstm_exp.models.triton import slstm_recurrence

    assert DH > slstm_recurrence.MAX_RESIDENT
    compare_slstm(slstm_inputs(B, NH, S, DH))
    compare_slstm(slstm_inputs(B, NH, S, DH), state=slstm_state(B, NH, DH))


def test_slstm_initial_state():
    compare_slstm(slstm_inputs(), state=slstm_state())


def test_slstm_gates_that_overflow_unstabilised():
    i, f, z, o, R = slstm_inputs()
    compare_slstm((overflowing(i), f, z, o, R))


@pytest.mark.usefixtures("bf16_products")
def test_slstm_bfloat16():
    errors = compare_slstm(slstm_inputs(), dtype=torch.bfloat16, tol=BF16_TOL)
    # The other outputs are rounded to bfloat16; every state goes through h_{t-1} R.
    for name in ("state.c", "state.n", "state.m", "state.h"):
        assert errors[name] > BF16_PRODUCTS_FLOOR, name


def test_slstm_refuses_initial_state_with_grad():
    state = SLSTMState(*(s.requires_grad_() for s in slstm_state()))
    with pytest.raises(ValueError, match="initial state"):
        slstm_recurrent_triton(*slstm_inputs(S=4), state=state)


# --- package -------------------------------------------------------------------------------


def test_triton_available(monkeypatch):
    assert triton_kernels.triton_available()
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton now fails
    assert not triton_kernels.triton_available()


def test_model_on_triton_backend_matches_torch_backend(monkeypatch):
    """The backend switch reaches both cells: an xLSTM[1:1] stack gives the same logits and
    gradients on either kernel set, and the Triton one really ran both kernels."""
    from xlstm_exp.models import LanguageModel

    calls = []
    for name in ("mlstm_chunkwise_triton", "slstm_recurrent_triton"):
        kernel = getattr(triton_kernels, name)
        monkeypatch.setattr(
            triton_kernels, name, lambda *a, k=kernel, n=name, **kw: calls.append(n) or k(*a, **kw)
        )

    options = dict(mixer="mlstm", block="pre", slstm_at=[1], slstm_block="post")
    torch.manual_seed(0)
    reference = LanguageModel(64, 32, 2, 4, backend="torch", **options).to(DEVICE)
    triton_model = LanguageModel(64, 32, 2, 4, backend="triton", **options).to(DEVICE)
    triton_model.load_state_dict(reference.state_dict())
    with torch.no_grad():  # nonzero recurrent weights, so the sLSTM recurrence matters
        for model in (reference, triton_model):
            model.blocks[1].mixer.recurrent.copy_(
                0.3 * torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
            )
    tokens = torch.randint(0, 64, (2, 40), device=DEVICE)
    outputs = []
    for model in (reference, triton_model):
        logits = model(tokens)
        logits.square().mean().backward()
        outputs.append((logits, [p.grad for p in model.parameters()]))
    (ref_logits, ref_grads), (tri_logits, tri_grads) = outputs
    assert sorted(calls) == ["mlstm_chunkwise_triton", "slstm_recurrent_triton"]
    assert rel_err(tri_logits, ref_logits) <= F32_TOL
    for name, (g_tri, g_ref) in zip(
        [n for n, _ in reference.named_parameters()],
        zip(tri_grads, ref_grads, strict=True),
        strict=True,
    ):
        assert rel_err(g_tri, g_ref) <= 1e-3, name
