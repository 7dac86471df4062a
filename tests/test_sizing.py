"""Parameter-matched model sizes: every model reaches any target within 2%."""

import pytest
from helpers import compose_train, options
from toy_mixer import mixer_names, registered_toy  # noqa: F401  (the fixture pytestmark uses)

from xlstm_exp.from_config import build_model
from xlstm_exp.models import LanguageModel
from xlstm_exp.models.factory import build_language_model
from xlstm_exp.models.registry import MIXERS
from xlstm_exp.models.sizing import count_parameters, parse_count, solve_size

pytestmark = pytest.mark.usefixtures("registered_toy")

VOCAB = 4066  # the built-in corpus's vocabulary
TARGETS = ("0.5M", "2M", "3.3M", "10M", "50M")
# The mixers src registers, read before the toy is: the ones a model config must offer.
SHIPPED = sorted(MIXERS)


def test_parse_count():
    assert parse_count("47M") == 47_000_000
    assert parse_count("1.3B") == 1_300_000_000
    assert parse_count("5e6") == parse_count(5e6) == 5_000_000
    assert parse_count("250k") == 250_000
    for bad in ("lots", "0", "-5M"):
        with pytest.raises(ValueError, match="parameter count"):
            parse_count(bad)


def lstm_maker(vocab: int):
    def make(width, up_width):
        block = {"kind": "post", "post": {"up_width": up_width}}
        return LanguageModel(
            vocab, d_model=width, num_layers=2, num_heads=4, mixer="lstm", block=block
        )

    return make


def test_width_alone_when_it_lands_and_the_count_is_the_model_count():
    make = lstm_maker(VOCAB)
    size = solve_size(10_000_000, make, multiple=8, up_multiple=8, default_up=lambda w: 4 * w // 3)
    assert size.up_width is None and size.width % 8 == 0
    assert size.params == sum(p.numel() for p in make(size.width, None).parameters())
    assert abs(size.params - 10_000_000) <= 200_000
    assert (
        count_parameters(make, size.width - 8)
        < size.params
        < count_parameters(make, size.width + 8)
    )


def test_up_width_closes_the_gap_between_two_widths():
    def make(width, up_width):
        block = {"kind": "post", "post": {"up_width": up_width}}
        return LanguageModel(VOCAB, d_model=width, num_layers=2, mixer="attention", block=block)

    # Widths step by 8 (heads of even size); neither neighbour lands within 2% of 2M.
    assert count_parameters(make, 176) < 1_960_000 and count_parameters(make, 184) > 2_040_000
    size = solve_size(2_000_000, make, multiple=8, up_multiple=8, default_up=lambda w: 4 * w // 3)
    assert size.width in (176, 184) and size.up_width % 8 == 0
    assert abs(size.params - 2_000_000) <= 40_000
    assert size.params == count_parameters(make, size.width, size.up_width)


def test_unreachable_targets_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="within 2%.*smallest model has"):
        solve_size(100_000, lstm_maker(50_000), 8, 8, lambda w: 4 * w // 3)
    # One width step of 8 is worth 800k parameters of embedding and head here.
    with pytest.raises(ValueError, match="tie the embeddings"):
        solve_size(3_000_000, lstm_maker(50_000), 8, 8, lambda w: 4 * w // 3)


def test_the_issue_example_transformer_post_2m():
    model, size = build_language_model(
        VOCAB, block="post", target_params="2M", mixer="attention", num_layers=2, num_heads=4
    )
    assert abs(model.num_parameters() - 2_000_000) <= 40_000
    assert size.params == model.num_parameters()


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("block", options("block"))
def test_every_model_reaches_targets_from_half_a_million_to_fifty_million(model, block, tmp_path):
    cfg = compose_train([f"model={model}", f"block={block}"], tmp_path)
    for target in TARGETS:
        cfg.model.target_params = target
        net, size = build_model(cfg, vocab_size=VOCAB)
        count = sum(p.numel() for p in net.parameters())
        assert abs(count - parse_count(target)) <= 0.02 * parse_count(target), (target, size)
        assert size.params == count and net.d_model == size.width


# block=auto is one of the two for every mixer (test_mixer_contract checks which).
@pytest.mark.parametrize("mixer", mixer_names())
@pytest.mark.parametrize("block", ["pre", "post"])
def test_every_registered_mixer_reaches_targets_from_half_a_million_to_fifty_million(mixer, block):
    for target in TARGETS:
        # backend=torch: large sLSTM models have heads too wide for the Triton kernel, which
        # backend=auto warns about; the count is the same on every backend.
        net, size = build_language_model(
            VOCAB, block, target, mixer=mixer, num_layers=2, num_heads=4, backend="torch"
        )
        count = sum(p.numel() for p in net.parameters())
        assert abs(count - parse_count(target)) <= 0.02 * parse_count(target), (target, size)
        assert size.params == count and net.d_model == size.width
        assert net.layer_mixers == [mixer, mixer] and net.block_kinds == [block, block]


def test_every_shipped_mixer_is_built_by_a_model_config(tmp_path):
    # `model=<name>` is how a run picks a cell; the mixers each config builds, mixes included.
    built = set()
    for model in options("model"):
        net, _ = build_model(compose_train([f"model={model}"], tmp_path), vocab_size=VOCAB)
        built.update(net.layer_mixers)
    assert built >= set(SHIPPED), f"no conf/model/*.yaml builds {sorted(set(SHIPPED) - built)}"
