"""Our xLSTM layers, blocks and model against the official NX-AI xlstm 2.0.6 ones: equal
outputs at copied weights (float64), the same initialisation, the same weight-decay groups."""

import pytest
import torch
from official_xlstm import copy_official, model_pairs, official_model, our_model
from torch import nn

from xlstm_exp.lm import weight_decay_groups
from xlstm_exp.models import build_mixer
from xlstm_exp.models.init import InitScales

VOCAB, HEADS, SEQ = 37, 4, 40
SLSTM_AT = [1, 3]  # blocks 0 and 2 are mLSTM blocks


def models(d_model: int = 64, num_blocks: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    official = official_model(VOCAB, d_model, HEADS, SLSTM_AT, num_blocks, context=SEQ)
    ours = our_model(VOCAB, d_model, HEADS, SLSTM_AT, num_blocks, official)
    return ours, official


@pytest.fixture(scope="module")
def copied():
    """Float64 twins with the official random weights copied into ours, every parameter then
    perturbed so zero-initialised recurrences and gate weights are exercised too."""
    ours, official = models()
    official = official.double()
    with torch.no_grad():
        for p in official.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = ours.double()
    pairs = model_pairs(ours, official)
    copy_official(pairs)
    return ours.eval(), official.eval(), pairs


def inputs(width: int) -> torch.Tensor:
    return torch.randn(
        3, SEQ, width, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )


def test_every_parameter_is_mapped_once(copied):
    ours, official, pairs = copied
    assert sorted(p.name for p in pairs) == sorted(name for name, _ in ours.named_parameters())
    mapped = [id(p) for pair in pairs for p in pair.official]
    assert sorted(mapped) == sorted(id(p) for p in official.parameters())
    assert ours.num_parameters() == sum(p.numel() for p in official.parameters())


def without_norm_and_mlp(block: nn.Module) -> nn.Module:
    """Our block reduced to the official layer: the layer is what the block adds to the
    residual stream of already normed inputs (and, for post blocks, before its MLP)."""
    reduced = type(block).__new__(type(block))
    reduced.__dict__ = {**block.__dict__, "_modules": dict(block._modules)}
    for norm in ("norm", "mixer_norm"):
        if norm in reduced._modules:
            reduced._modules[norm] = nn.Identity()
    if "mlp" in reduced._modules:
        reduced._modules["mlp"] = lambda x: torch.zeros_like(x)
    return reduced


@pytest.mark.parametrize(("index", "kind"), [(0, "mLSTM"), (1, "sLSTM")])
@pytest.mark.parametrize("impl", ["chunkwise", "parallel"])
def test_layers_match_the_official_layers(copied, index, kind, impl):
    ours, official, _ = copied
    block, theirs = ours.blocks[index], official.xlstm_block_stack.blocks[index]
    if kind == "mLSTM":
        block.mixer.impl, block.mixer.chunk_size = impl, 16
    x = inputs(64)
    layer = without_norm_and_mlp(block)
    with torch.no_grad():
        expected = theirs.xlstm(x)
        got = layer(x)[0] - x
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert expected.abs().mean() > 1e-3  # a layer that outputs ~0 would match anything


@pytest.mark.parametrize("index", [0, 1])
def test_blocks_match_the_official_blocks(copied, index):
    ours, official, _ = copied
    x = inputs(64)
    with torch.no_grad():
        expected = official.xlstm_block_stack.blocks[index](x)
        got = ours.blocks[index](x)[0]
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_model_logits_match_the_official_model(copied):
    ours, official, _ = copied
    tokens = torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = official(tokens), ours(tokens)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # Our O(1)-per-token step reproduces the official model's parallel outputs too.
    state, steps = None, []
    with torch.no_grad():
        for t in range(SEQ):
            logits, state = ours.step(tokens[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), expected, rtol=1e-8, atol=1e-8)


def test_initialisation_matches_the_official_statistics():
    """Parameters the official code initialises deterministically (the same under two seeds:
    zero gate weights and recurrences, linspace and power-law biases, unit norms) are equal to
    ours; random ones have the official mean and standard deviation (within 10% of it). Random
    parameters with fewer than 1000 values are the mLSTM input-gate biases (pooled over
    re-draws below) and the conv biases (PyTorch's Conv1d default in both)."""
    ours, official = models(d_model=256, num_blocks=4, seed=3)
    other_ours, other_seed = models(d_model=256, num_blocks=4, seed=4)
    deterministic = random = 0
    pairs = zip(model_pairs(ours, official), model_pairs(other_ours, other_seed), strict=True)
    for pair, again in pairs:
        mine, theirs = pair.ours.detach(), pair.value
        if torch.equal(theirs, again.value):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6, msg=pair.name)
            deterministic += 1
        elif theirs.numel() >= 1000:
            assert abs(mine.std() / theirs.std() - 1) < 0.1, (pair.name, mine.std(), theirs.std())
            assert abs(mine.mean() - theirs.mean()) < 0.05 * theirs.std(), pair.name
            random += 1
    assert deterministic >= 20 and random >= 20, (deterministic, random)


def test_forget_gate_biases_are_the_officials_exactly():
    ours, official = models(d_model=256, num_blocks=4, seed=4)
    pairs = {p.name: p for p in model_pairs(ours, official)}
    for name in (
        "blocks.0.mixer.fgate.bias",
        "blocks.2.mixer.fgate.bias",
        "blocks.1.mixer.bias",
        "blocks.3.mixer.bias",
    ):
        torch.testing.assert_close(pairs[name].ours.detach(), pairs[name].value, rtol=0, atol=1e-6)
    # The power law depends on depth: blocks 1 and 3 start with different forget biases.
    assert not torch.equal(ours.blocks[1].mixer.bias, ours.blocks[3].mixer.bias)


def test_mlstm_input_gate_bias_is_drawn_like_the_officials():
    from official_xlstm import official_xlstm

    cell = official_xlstm().blocks.mlstm.cell.mLSTMCell(
        official_xlstm().blocks.mlstm.cell.mLSTMCellConfig(
            context_length=4, embedding_dim=64, num_heads=8
        )
    )
    mixer = build_mixer("mlstm", 64, 8)
    draws = {"ours": [], "official": []}
    torch.manual_seed(5)
    for _ in range(200):
        mixer.init_weights(InitScales(64))
        cell.reset_parameters()
        draws["ours"].append(mixer.igate.bias.detach().clone())
        draws["official"].append(cell.igate.bias.detach().clone())
    ours, theirs = (torch.cat(draws[k]) for k in ("ours", "official"))
    assert abs(ours.std() / theirs.std() - 1) < 0.1 and abs(ours.mean()) < 0.02


def test_weight_decay_groups_match_the_officials():
    ours, official = models()
    decayed_official, _ = official._create_weight_decay_optim_groups()
    decayed_official = {id(p) for p in decayed_official}
    decayed_ours = {id(p) for p in weight_decay_groups(ours)[0]}
    for pair in model_pairs(ours, official):
        expected = all(id(p) in decayed_official for p in pair.official)
        assert (id(pair.ours) in decayed_ours) == expected, pair.name
