"""The language-model stack for every mixer x block: numbers, not shapes."""

from itertools import combinations

import pytest
import torch
from toy_mixer import mixer_names, registered_toy  # noqa: F401  (the fixture pytestmark uses)

from xlstm_exp.models import LanguageModel
from xlstm_exp.models.causal_conv import CausalConv1d
from xlstm_exp.models.language_model import slstm_positions
from xlstm_exp.user_error import UserError

pytestmark = pytest.mark.usefixtures("registered_toy")

# Every registered mixer (and the toy) in both blocks, and an xLSTM[a:b] mix of every two
# mixable cells, each in its paper block (block=auto), the second one at block 1.
COMBOS = [
    pytest.param(mixer, block, None, id=f"{mixer}-{block}")
    for mixer in mixer_names()
    for block in ("pre", "post")
] + [
    pytest.param(mixer, "auto", mix_with, id=f"xlstm-{mixer}+{mix_with}")
    for mixer, mix_with in combinations(mixer_names(mixable=True), 2)
]
VOCAB = 40


def make_model(mixer: str, block: str, mix_with: str | None = None, **options) -> LanguageModel:
    """A small float64 model whose parameters are all perturbed away from their initial values,
    so zero-initialised recurrences and gate weights are exercised too; with `mix_with`, an
    xLSTM[a:b] mix whose block 1 runs that mixer."""
    torch.manual_seed(0)
    mix = {"slstm_at": [1], "mix_with": mix_with} if mix_with else {}
    kwargs = {"mixer": mixer, "mixer_options": {"mlstm": {"chunk_size": 16}}, **mix, **options}
    model = LanguageModel(VOCAB, d_model=32, num_layers=2, num_heads=2, block=block, **kwargs)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def tokens(batch: int = 3, length: int = 29, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("mixer", "block", "mix_with"), COMBOS)
def test_forward_backward_finite_and_every_parameter_learns(mixer, block, mix_with):
    model = make_model(mixer, block, mix_with).train()
    x = tokens()
    loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.roll(-1, 1).flatten())
    loss.backward()
    assert torch.isfinite(loss) and 2.0 < loss.item() < 10.0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"


@pytest.mark.parametrize(("mixer", "block", "mix_with"), COMBOS)
def test_causality_a_future_token_changes_no_past_output(mixer, block, mix_with):
    model = make_model(mixer, block, mix_with)
    x = tokens()
    t = 13
    changed = x.clone()
    changed[:, t] = (changed[:, t] + 1) % VOCAB
    a, b = model(x), model(changed)
    assert torch.equal(a[:, :t], b[:, :t])
    assert (a[:, t] - b[:, t]).abs().max() > 1e-6


@pytest.mark.parametrize(("mixer", "block", "mix_with"), COMBOS)
def test_batch_independence_and_determinism(mixer, block, mix_with):
    model = make_model(mixer, block, mix_with)
    x = tokens()
    other = x.clone()
    other[1:] = tokens(seed=2)[1:]
    a, b = model(x), model(other)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-12)
    assert (a[1] - b[1]).abs().max() > 1e-6
    assert torch.equal(model(x), a), "the same input twice must give the same output"


@pytest.mark.parametrize(("mixer", "block", "mix_with"), COMBOS)
def test_prefill_chunks_then_steps_equal_one_full_forward(mixer, block, mix_with):
    model = make_model(mixer, block, mix_with)
    x = tokens(length=37)
    full = model(x)
    logits, state = model(x[:, :11], return_state=True)
    pieces = [logits]
    logits, state = model(x[:, 11:30], state=state, return_state=True)
    pieces.append(logits)
    for t in range(30, x.shape[1]):
        step_logits, state = model.step(x[:, t], state)
        pieces.append(step_logits.unsqueeze(1))
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("mixer", "block", "mix_with"), COMBOS)
def test_bf16_autocast_forward_stays_finite_and_close(mixer, block, mix_with):
    model = make_model(mixer, block, mix_with).float()
    x = tokens()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
    assert torch.isfinite(low).all()
    error = (low.float() - model(x)).abs()
    assert error.mean() < 0.02 and error.max() < 0.3, "bf16 rounding only, no blow-up"


def test_mlstm_parallel_and_chunkwise_models_agree():
    chunkwise = make_model("mlstm", "pre")
    parallel = make_model("mlstm", "pre", mixer_options={"mlstm": {"impl": "parallel"}})
    parallel.load_state_dict(chunkwise.state_dict())
    x = tokens(length=45)
    torch.testing.assert_close(parallel(x), chunkwise(x), rtol=0, atol=1e-10)


def test_causal_conv_mixes_time_not_features():
    torch.manual_seed(0)
    conv = CausalConv1d(3, kernel_size=4).double()
    x = torch.zeros(1, 10, 3, dtype=torch.float64)
    base, _ = conv(x)
    x[0, 5, 1] = 1.0
    y, _ = conv(x)
    diff = (y - base).abs()[0]
    assert diff[:5].max() == 0, "output before the impulse changed"
    assert (diff[5:9, 1] > 0).all() and diff[9:].max() == 0, "kernel 4 reaches t..t+3 only"
    assert diff[:, [0, 2]].max() == 0, "depthwise: other channels unaffected"


def test_xlstm_mix_positions():
    assert slstm_positions(4, "3:1") == [2]
    assert slstm_positions(8, "1:1") == [1, 3, 5, 7]
    assert len(slstm_positions(48, "7:1")) == 6
    assert slstm_positions(3, "all") == [0, 1, 2]
    assert slstm_positions(4, [3, 1]) == [1, 3]
    assert slstm_positions(4, None) == []
    with pytest.raises(UserError, match=r"model.slstm_at=\[4\] is out of range"):
        slstm_positions(4, [4])
    for ratio in ("0:0", "7-1", "-1:2"):  # 0:0 divided by zero, 7-1 failed to unpack
        with pytest.raises(UserError, match=f"model.slstm_at={ratio} is neither a ratio"):
            slstm_positions(4, ratio)
    model = LanguageModel(
        VOCAB,
        d_model=32,
        num_layers=4,
        num_heads=2,
        mixer="mlstm",
        slstm_at="3:1",
        slstm_block="post",
    )
    assert model.layer_mixers == ["mlstm", "mlstm", "slstm", "mlstm"]
    assert type(model.blocks[2]).__name__ == "PostUpProjectionBlock"
    assert type(model.blocks[0]).__name__ == "PreUpProjectionBlock"


def test_parameter_counts():
    model = LanguageModel(VOCAB, d_model=32, num_layers=2, num_heads=2, mixer="lstm", block="post")
    total = sum(p.numel() for p in model.parameters())
    assert model.num_parameters() == total
    assert model.num_parameters(non_embedding=True) == total - 2 * VOCAB * 32
    tied = LanguageModel(
        VOCAB, d_model=32, num_layers=2, num_heads=2, mixer="lstm", tie_weights=True
    )
    assert tied.num_parameters() == tied.num_parameters(non_embedding=True) + VOCAB * 32


def test_unknown_mixer_and_block_name_the_choices():
    with pytest.raises(ValueError, match="attention"):
        LanguageModel(VOCAB, mixer="gru")
    with pytest.raises(ValueError, match="post"):
        LanguageModel(VOCAB, mixer="lstm", block="middle")


def test_causal_conv_float64_taps_equal_conv1d():
    torch.manual_seed(0)
    conv = CausalConv1d(6, kernel_size=4)
    x, state = torch.randn(2, 9, 6), torch.randn(2, 3, 6)
    low, low_state = conv(x, state)
    high, high_state = conv.double()(x.double(), state.double())
    torch.testing.assert_close(high.float(), low, rtol=0, atol=1e-6)
    assert torch.equal(high_state.float(), low_state)
