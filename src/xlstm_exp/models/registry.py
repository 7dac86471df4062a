"""Name -> mixer class registry: the one list of the mixers a model can be built from."""

import inspect
from collections.abc import Callable, Mapping

from xlstm_exp.models.mixer import Mixer
from xlstm_exp.user_error import UserError

MIXERS: dict[str, type[Mixer]] = {}

# What every mixer is constructed with; the rest of its __init__ parameters are its options.
POSITIONAL = ("self", "width", "num_heads", "dropout")


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
        raise UserError(
            f"unknown mixer {name!r} (model.mixer or model.mix_with); choose one of "
            f"{', '.join(sorted(MIXERS))}"
        ) from None


def mixer_option_names(name: str) -> list[str]:
    """The options (`model.mixer_options.<name>.*`) the mixer's constructor takes."""
    parameters = inspect.signature(mixer_class(name).__init__).parameters
    return [p for p in parameters if p not in POSITIONAL]


def check_mixer_options(name: str, options: Mapping) -> None:
    """Refuse option names the mixer does not take, naming the ones it does."""
    unknown = sorted(set(options) - set(mixer_option_names(name)))
    if unknown:
        valid = ", ".join(mixer_option_names(name)) or "none"
        raise UserError(f"unknown model.mixer_options.{name} keys {unknown}; {name} takes: {valid}")


def build_mixer(name: str, width: int, num_heads: int, dropout: float = 0.0, **options) -> Mixer:
    check_mixer_options(name, options)
    return mixer_class(name)(width, num_heads, dropout, **options)
