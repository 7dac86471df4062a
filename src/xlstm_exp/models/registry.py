"""Name -> mixer class registry: the one list of the mixers a model can be built from."""

from collections.abc import Callable

from xlstm_exp.models.mixer import Mixer

MIXERS: dict[str, type[Mixer]] = {}


def register_mixer(name: str) -> Callable[[type[Mixer]], type[Mixer]]:
    def register(cls: type[Mixer]) -> type[Mixer]:
        if not issubclass(cls, Mixer):
            raise TypeError(f"mixer {name!r} must subclass xlstm_exp.models.mixer.Mixer")
        MIXERS[name] = cls
        return cls

    return register


def mixer_class(name: str) -> type[Mixer]:
    try:
        return MIXERS[name]
    except KeyError:
        raise ValueError(f"unknown mixer {name!r}; choose one of {sorted(MIXERS)}") from None


def build_mixer(name: str, width: int, num_heads: int, dropout: float = 0.0, **options) -> Mixer:
    return mixer_class(name)(width, num_heads, dropout, **options)
