"""Sampling text from a language model: prefill the prompt once, then one token per step."""

from collections.abc import Iterator

import torch
from torch import nn

from xlstm_exp.user_error import UserError


def check_sampling(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    """Refuse settings that would sample from no distribution or from a wrong one."""
    rules = [
        ("max_new_tokens", max_new_tokens, max_new_tokens >= 0, ">= 0"),
        ("temperature", temperature, temperature >= 0, ">= 0 (0: greedy)"),
        ("top_k", top_k, top_k is None or top_k >= 0, ">= 0 or null (0 or null: no limit)"),
        ("top_p", top_p, top_p is None or 0 < top_p <= 1, "in (0, 1] or null"),
    ]
    for key, value, holds, rule in rules:
        if not holds:
            raise UserError(f"{key}={value} is invalid: {key} must be {rule}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ids `(B,)` from logits `(B, V)`: greedy at temperature 0, otherwise sampled
    from the softmax at that temperature, restricted to the `top_k` most likely tokens and to
    the smallest set whose probability reaches `top_p` (nucleus)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens ranked above it already reach top_p; the first stays.
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -torch.inf))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_tokens(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield `max_new_tokens` new token ids `(B,)` one at a time after `prompt_ids` `(B, P)`.

    The prompt is processed in one stateful forward; each new token then costs one `step`, with
    O(1) memory for the recurrent models and a growing KV cache for attention."""
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    if prompt_ids.shape[1] == 0:
        raise ValueError("the prompt must hold at least one token")
    model.eval()
    logits, state = model(prompt_ids, return_state=True)
    logits = logits[:, -1]
    for _ in range(max_new_tokens):
        token = sample_next(logits, temperature, top_k, top_p, generator)
        yield token
        logits, state = model.step(token, state)
