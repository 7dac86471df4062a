"""Sampling and token-by-token generation."""

import pytest
import torch
from toy_mixer import mixer_names, registered_toy  # noqa: F401  (the fixture pytestmark uses)

from xlstm_exp.models import LanguageModel
from xlstm_exp.models.state import detach_state, map_state, state_bytes, state_to
from xlstm_exp.sampling import generate_tokens, sample_next

pytestmark = pytest.mark.usefixtures("registered_toy")


def test_greedy_and_degenerate_filters_pick_the_argmax():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    best = logits.argmax(-1)
    assert torch.equal(sample_next(logits, temperature=0), best)
    assert torch.equal(sample_next(logits, top_k=1), best)
    assert torch.equal(sample_next(logits, top_p=1e-6), best)


def test_sampling_follows_the_filtered_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(20000, 4)
    gen = torch.Generator().manual_seed(0)
    counts = torch.bincount(sample_next(logits, generator=gen), minlength=4) / 20000
    torch.testing.assert_close(counts, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.015, rtol=0)
    nucleus = torch.bincount(sample_next(logits, top_p=0.7, generator=gen), minlength=4) / 20000
    torch.testing.assert_close(nucleus, torch.tensor([0.625, 0.375, 0, 0]), atol=0.015, rtol=0)
    top2 = torch.bincount(sample_next(logits, top_k=2, temperature=0.5, generator=gen), minlength=4)
    expected = torch.tensor([0.25, 0.09]) / 0.34  # p^(1/T) renormalised over the top 2
    torch.testing.assert_close(top2[:2] / 20000, expected, atol=0.015, rtol=0)
    assert top2[2:].sum() == 0


@pytest.mark.parametrize("mixer", mixer_names())
def test_greedy_generation_equals_rerunning_the_full_sequence(mixer):
    torch.manual_seed(0)
    model = LanguageModel(30, d_model=32, num_layers=2, num_heads=2, mixer=mixer).eval()
    prompt = torch.randint(0, 30, (2, 7))
    generated = torch.stack(list(generate_tokens(model, prompt, 12, temperature=0)), dim=1)
    sequence = prompt
    for _ in range(12):
        sequence = torch.cat([sequence, model(sequence)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, sequence[:, 7:])


def test_seeded_sampling_is_reproducible():
    torch.manual_seed(0)
    model = LanguageModel(30, d_model=32, num_layers=1, num_heads=2, mixer="mlstm")
    prompt = torch.randint(0, 30, (1, 5))

    def sample(seed):
        gen = torch.Generator().manual_seed(seed)
        return [t.item() for t in generate_tokens(model, prompt, 20, top_k=10, generator=gen)]

    assert sample(1) == sample(1) != sample(2)


@pytest.mark.parametrize("mixer", mixer_names())
def test_state_moves_detaches_and_keeps_its_types(mixer):
    model = LanguageModel(30, d_model=32, num_layers=2, num_heads=2, mixer=mixer)
    x = torch.randint(0, 30, (2, 9))
    logits, state = model(x, return_state=True)
    detached = detach_state(state_to(state, "cpu"))
    leaves = []
    map_state(detached, lambda t: leaves.append(t) or t)
    assert leaves and all(not t.requires_grad for t in leaves)
    assert [type(s.mixer) for s in detached] == [type(s.mixer) for s in state]
    step_logits, _ = model.step(x[:, -1], detached)
    assert torch.isfinite(step_logits).all() and state_bytes(state) > 0


@pytest.mark.parametrize("mixer", mixer_names())
def test_a_recurrent_state_keeps_its_size_and_any_other_grows(mixer):
    model = LanguageModel(30, d_model=32, num_layers=2, num_heads=2, mixer=mixer)
    short = state_bytes(model(torch.randint(0, 30, (1, 10)), return_state=True)[1])
    long = state_bytes(model(torch.randint(0, 30, (1, 50)), return_state=True)[1])
    assert (long == short) if model.is_recurrent else (long > short)
