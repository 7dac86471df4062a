"""Every registered mixer (and the toy) keeps what it declares on the Mixer contract."""

import inspect
import math

import pytest
import torch
from toy_mixer import mixer_names, registered_toy  # noqa: F401  (the fixture pytestmark uses)

from xlstm_exp.lm import weight_decay_groups
from xlstm_exp.models import LanguageModel
from xlstm_exp.models.registry import MIXERS, build_mixer, mixer_option_names
from xlstm_exp.models.state import state_bytes
from xlstm_exp.stream_eval import is_recurrent

pytestmark = pytest.mark.usefixtures("registered_toy")

NAMES = mixer_names()
VOCAB = 50


def small_mixer(name: str, num_heads: int = 2) -> tuple[torch.nn.Module, int]:
    """A float64 mixer in eval mode, of width 16 or the next its heads allow, and its width."""
    torch.manual_seed(0)
    width = math.lcm(16, MIXERS[name].width_multiple(num_heads))
    return build_mixer(name, width, num_heads).double().eval(), width


def inputs(width: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Different `x` and `x_conv` `(2, length, width)`, as a block with a conv passes them."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, length, width, generator=gen, dtype=torch.float64)
    return x, torch.randn(2, length, width, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("mixer", NAMES)
def test_the_declarations_are_all_there_and_of_their_kind(mixer):
    cls = MIXERS[mixer]
    assert cls.paper_block in ("pre", "post")
    for flag in ("reads_conv_branch", "is_recurrent", "mixable", "has_kernel_backends"):
        assert isinstance(getattr(cls, flag), bool), flag
    assert issubclass(cls.state_type, tuple) and hasattr(cls.state_type, "_fields"), "NamedTuple"
    # LanguageModel passes its `backend` to exactly the mixers that declare kernel backends.
    assert ("backend" in mixer_option_names(mixer)) == cls.has_kernel_backends


@pytest.mark.parametrize("mixer", NAMES)
def test_every_returned_state_is_the_declared_state_type(mixer):
    module, width = small_mixer(mixer)
    x, x_conv = inputs(width, 8)
    y, state = module(x[:, :5], x_conv[:, :5])  # fresh sequence
    assert type(state) is MIXERS[mixer].state_type and y.shape == x[:, :5].shape
    y, state = module(x[:, 5:7], x_conv[:, 5:7], state)  # a continued piece
    assert type(state) is MIXERS[mixer].state_type and y.shape == x[:, 5:7].shape
    y, state = module(x[:, 7:], x_conv[:, 7:], state)  # one step
    assert type(state) is MIXERS[mixer].state_type and y.shape == x[:, 7:].shape


@pytest.mark.parametrize("mixer", NAMES)
def test_is_recurrent_says_whether_the_carried_state_keeps_its_size(mixer):
    (module, width), cls = small_mixer(mixer), MIXERS[mixer]
    x, x_conv = inputs(width, 24)
    full, _ = module(x, x_conv)
    # Carried from piece to piece and step to step, the state reproduces one full forward.
    pieces, state, sizes = [], None, []
    for start, stop in [(0, 10), (10, 17), *((t, t + 1) for t in range(17, 24))]:
        y, state = module(x[:, start:stop], x_conv[:, start:stop], state)
        pieces.append(y)
        sizes.append(state_bytes(state))
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-10)
    # Recurrent: a fixed-size state, which streaming evaluation may carry over a whole split.
    grows = sizes == sorted(set(sizes))
    assert (len(set(sizes)) == 1) if cls.is_recurrent else grows, f"state bytes {sizes}"
    model = LanguageModel(VOCAB, d_model=16, num_layers=1, num_heads=2, mixer=mixer)
    assert model.is_recurrent == is_recurrent(model) == cls.is_recurrent


@pytest.mark.parametrize("mixer", NAMES)
@pytest.mark.parametrize("block", ["pre", "post"])
def test_output_projections_get_the_depth_scaled_wang_init(mixer, block):
    # d_model 128: 16k+ weights per projection estimate its std within ~1%.
    d_model, num_layers = 128, 4
    torch.manual_seed(0)
    model = LanguageModel(VOCAB, d_model, num_layers, num_heads=4, mixer=mixer, block=block)
    wang, small = 2 / (num_layers * math.sqrt(d_model)), math.sqrt(2 / (5 * d_model))
    projections = [(layer, p) for layer in model.blocks for p in layer.mixer.output_projections()]
    if not projections:
        pytest.skip(f"{mixer} declares no output projections")
    for layer, weight in projections:
        assert any(weight is p for p in layer.mixer.parameters()) and weight.ndim >= 2
        std = weight.std().item()
        assert abs(std / wang - 1) < 0.05, f"std {std:.4f}, Wang {wang:.4f}, small {small:.4f}"
        assert abs(std / small - 1) > 0.1, "indistinguishable from small init"
        assert abs(weight.mean().item()) < 5 * std / math.sqrt(weight.numel())


@pytest.mark.parametrize("mixer", NAMES)
def test_no_weight_decay_is_what_adamw_leaves_undecayed(mixer):
    model = LanguageModel(VOCAB, d_model=16, num_layers=2, num_heads=2, mixer=mixer)
    decay, no_decay = map(lambda group: {id(p) for p in group}, weight_decay_groups(model))
    declared = {id(p) for block in model.blocks for p in block.mixer.no_weight_decay()}
    for block in model.blocks:
        mixer_params = {id(p) for p in block.mixer.parameters()}
        for param in block.mixer.no_weight_decay():
            assert id(param) in mixer_params and param.ndim >= 2, "only its own matrices"
    assert declared <= no_decay
    embedding = id(model.embedding.weight)
    matrices = {id(p) for p in model.parameters() if p.ndim >= 2} - declared - {embedding}
    assert matrices == decay


@pytest.mark.parametrize("mixer", NAMES)
def test_only_mixable_cells_make_an_xlstm_mix(mixer):
    mixable = mixer_names(mixable=True)
    assert mixable, "the xLSTM[a:b] mixes need mixable cells"
    partner = next((name for name in mixable if name != mixer), mixable[0])

    def mix(main: str, mix_with: str) -> LanguageModel:
        return LanguageModel(
            VOCAB, d_model=16, num_heads=2, mixer=main, slstm_at=[1], mix_with=mix_with
        )

    for main, mix_with in [(partner, mixer), (mixer, partner)]:
        if MIXERS[mixer].mixable:
            assert mix(main, mix_with).layer_mixers == [main, mix_with]
        else:
            with pytest.raises(ValueError) as refused:
                mix(main, mix_with)
            assert f"{mixer} cannot be mixed" in str(refused.value)
            assert str(refused.value).endswith(f"mixable cells: {', '.join(mixable)}")


@pytest.mark.parametrize("mixer", NAMES)
def test_mixer_options_are_its_constructor_keywords_and_nothing_else(mixer):
    names = mixer_option_names(mixer)
    nonsense = {mixer: {"nonsense": 1}}
    with pytest.raises(ValueError) as refused:
        LanguageModel(VOCAB, d_model=16, num_heads=2, mixer=mixer, mixer_options=nonsense)
    message = str(refused.value)
    assert "['nonsense']" in message and all(name in message for name in names), message
    # Every option, given its default, is taken.
    parameters = inspect.signature(MIXERS[mixer].__init__).parameters
    defaults = {name: parameters[name].default for name in names}
    model = LanguageModel(
        VOCAB, d_model=16, num_heads=2, mixer=mixer, mixer_options={mixer: defaults}
    )
    assert model.layer_mixers == [mixer, mixer]


@pytest.mark.parametrize("mixer", NAMES)
def test_reads_conv_branch_decides_the_post_block_conv_and_the_conv_is_read(mixer):
    cls = MIXERS[mixer]
    model = LanguageModel(VOCAB, d_model=16, num_heads=2, mixer=mixer, block="post")
    assert all((block.conv is not None) == cls.reads_conv_branch for block in model.blocks)
    if cls.reads_conv_branch:
        # A conv built for a mixer that ignored x_conv would be parameters that never learn.
        module, width = small_mixer(mixer)
        x, x_conv = inputs(width, 6)
        other = inputs(width, 6, seed=1)[1]
        change = (module(x, x_conv)[0] - module(x, other)[0]).abs().max().item()
        assert change > 1e-6, f"{mixer} builds a conv branch but ignores x_conv"


@pytest.mark.parametrize("mixer", NAMES)
def test_block_auto_builds_the_paper_block(mixer):
    model = LanguageModel(VOCAB, d_model=16, num_heads=2, mixer=mixer, block="auto")
    assert model.block_kinds == [MIXERS[mixer].paper_block] * 2


@pytest.mark.parametrize("mixer", NAMES)
@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_width_multiple_is_a_width_it_runs_at(mixer, num_heads):
    # The size solver steps d_model by width_multiple in post blocks; odd multiples included.
    width = 3 * MIXERS[mixer].width_multiple(num_heads)
    module = build_mixer(mixer, width, num_heads).double()
    x = torch.randn(2, 5, width, dtype=torch.float64)
    y, _ = module(x, x)
    assert y.shape == x.shape and torch.isfinite(y).all()
