"""Name -> mixer class registry.

A mixer is the sequence-mixing layer inside a residual block. Every mixer is constructed as
`Mixer(width, num_heads, dropout, **options)` and called as `mixer(x, x_conv, state)` ->
`(y, state)`, where `x` is its input, `x_conv` the same input after the block's causal conv and
swish (equal to `x` when the block has no conv), and `state` whatever the mixer carries between
calls (`None` for a fresh sequence). Mixers that read the conv branch set `reads_conv_branch`;
`Mixer.width_multiple(num_heads)` says which widths the mixer can run at.
"""

from collections.abc import Callable

from torch import nn

MIXERS: dict[str, type[nn.Module]] = {}


def register_mixer(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def register(cls: type[nn.Module]) -> type[nn.Module]:
        MIXERS[name] = cls
        return cls

    return register


def build_mixer(
    name: str, width: int, num_heads: int, dropout: float = 0.0, **options
) -> nn.Module:
    try:
        cls = MIXERS[name]
    except KeyError:
        raise ValueError(f"unknown mixer {name!r}; choose one of {sorted(MIXERS)}") from None
    return cls(width, num_heads, dropout, **options)
