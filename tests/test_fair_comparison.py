"""What makes a comparison fair: each mixer in its paper block unless forced, metrics from the
best checkpoint, and a token budget that early stopping cannot cut short."""

import pytest
import torch
from helpers import TINY, compose_train, options

from xlstm_exp.from_config import build_model
from xlstm_exp.run import keep_early_stopping, train

PAPER_BLOCKS = {
    "mlstm": ["pre", "pre"],
    "slstm": ["post", "post"],
    "lstm": ["post", "post"],
    "transformer": ["post", "post"],
    # xLSTM[3:1] over 4 blocks: the sLSTM block (index 2) in post, the mLSTM blocks in pre.
    "xlstm": ["pre", "pre", "post", "pre"],
    # xLSTM[1:1] over 2 blocks: mLSTM (pre), then sLSTM (post).
    "xlstm_1_1": ["pre", "post"],
}


@pytest.mark.parametrize("model", options("model"))
def test_every_mixer_gets_its_paper_block_by_default(model, tmp_path):
    net, _ = build_model(compose_train([f"model={model}", *TINY], tmp_path), vocab_size=50)
    assert net.block_kinds == PAPER_BLOCKS[model]


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("block", ["pre", "post"])
def test_block_forces_one_kind_on_every_layer(model, block, tmp_path):
    cfg = compose_train([f"model={model}", f"block={block}", *TINY], tmp_path)
    net, _ = build_model(cfg, vocab_size=50)
    assert set(net.block_kinds) == {block} and net.block_label == block


def test_a_model_with_its_own_target_refuses_a_forced_block(tmp_path):
    target = [
        "~model",
        "+model._target_=xlstm_exp.xLSTM",
        "+model.embedding_size=16",
        "+model.hidden_size=32",
        "+model.num_layers=1",
        "+model.num_blocks=1",
    ]
    tiny = [o for o in TINY if not o.startswith("model.")]
    net, _ = build_model(compose_train([*target, *tiny], tmp_path), vocab_size=50)
    assert net(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 50)
    with pytest.raises(ValueError, match="block=post does not apply to model._target_"):
        build_model(compose_train([*target, "block=post", *tiny], tmp_path), vocab_size=50)


def test_block_options_outside_their_kind_are_refused(tmp_path):
    cfg = compose_train(["+block.proj_factor=3", *TINY], tmp_path)
    with pytest.raises(ValueError, match="block.pre or block.post"):
        build_model(cfg, vocab_size=50)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], True),
        (["max_tokens=2048"], False),
        (["max_tokens=2048", "stop_early=true"], True),
        (["stop_early=false"], False),
    ],
)
def test_early_stopping_is_off_under_a_token_budget_unless_asked(overrides, expected, tmp_path):
    assert keep_early_stopping(compose_train([*TINY, *overrides], tmp_path)) is expected


# Validation every 2 steps; the weights are spoiled at step 5, so the validations at steps 6 and
# 8 are worse than the best one; early stopping would end the run at step 6.
SPOILED = [
    *TINY,
    "model=lstm",
    "trainer.max_steps=8",
    "optimizer.warmup_steps=1",
    "+callbacks.spoil._target_=helpers.SpoilWeightsAfterStep",
    "+callbacks.spoil.step=5",
    "callbacks.early_stopping.patience=1",
]


@pytest.mark.slow
def test_metrics_come_from_the_best_checkpoint_and_the_budget_is_kept(tmp_path):
    metrics = train(compose_train([*SPOILED, "max_tokens=2048"], tmp_path / "budget"))
    history = [ppl for _, ppl in metrics["val/history"]]
    assert metrics["global_step"] == 8 and len(history) == 4, "the budget ran to its end"
    best = min(range(4), key=history.__getitem__)
    assert metrics["best_step"] == 2 * (best + 1) <= 4
    assert metrics["val/ppl"] == pytest.approx(history[best], rel=1e-6)
    assert history[-1] > 2 * metrics["val/ppl"], "the final weights are far worse"
    assert metrics["test/ppl"] < 0.5 * history[-1], "the test split is scored on the best too"


@pytest.mark.slow
def test_without_a_budget_early_stopping_ends_the_run(tmp_path):
    metrics = train(compose_train(SPOILED, tmp_path / "steps"))
    assert metrics["global_step"] == 6 and metrics["best_step"] <= 4
