"""Parameter-matched model sizes."""

import pytest
from helpers import compose_train

from xlstm_exp.models import LanguageModel
from xlstm_exp.models.sizing import count_parameters, parse_count, solve_width
from xlstm_exp.run import build_model

MODELS = [
    ("lstm", "pre"),
    ("lstm", "post"),
    ("attention", "post"),
    ("attention", "pre"),
    ("slstm", "post"),
    ("slstm", "pre"),
    ("mlstm", "pre"),
    ("mlstm", "post"),
]


def test_parse_count():
    assert parse_count("47M") == 47_000_000
    assert parse_count("1.3B") == 1_300_000_000
    assert parse_count("5e6") == parse_count(5e6) == 5_000_000
    assert parse_count("250k") == 250_000
    with pytest.raises(ValueError, match="parameter count"):
        parse_count("lots")


@pytest.mark.parametrize(("mixer", "block"), MODELS)
@pytest.mark.parametrize("target", [10_000_000, 47_000_000])
def test_solved_width_lands_within_two_percent(mixer, block, target):
    def make(width):
        return LanguageModel(
            4066, d_model=width, num_layers=4, num_heads=4, mixer=mixer, block=block
        )

    width, count = solve_width(target, make, multiple=8)
    assert width % 8 == 0
    assert (
        count == count_parameters(make, width) == sum(p.numel() for p in make(width).parameters())
    )
    assert abs(count - target) <= 0.02 * target
    assert count_parameters(make, width - 8) < count < count_parameters(make, width + 8)


def test_unreachable_target_is_refused():
    def make(width):
        return LanguageModel(50_000, d_model=width, num_layers=1, num_heads=1, mixer="lstm")

    with pytest.raises(ValueError, match="within 2%"):
        solve_width(100_000, make, multiple=8)  # the vocabulary alone needs more


@pytest.mark.parametrize("model", ["lstm", "transformer", "slstm", "mlstm", "xlstm"])
@pytest.mark.parametrize("block", ["pre", "post"])
@pytest.mark.parametrize("target", ["3M", "10M", "3e7"])
def test_target_params_from_the_config(model, block, target, tmp_path):
    cfg = compose_train(
        [f"model={model}", f"block={block}", f"model.target_params={target}"], tmp_path
    )
    net = build_model(cfg, vocab_size=4066)
    assert abs(net.num_parameters() - parse_count(target)) <= 0.02 * parse_count(target)
