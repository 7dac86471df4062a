"""What a `config.json` of an exported model must hold: `LanguageModel`'s constructor arguments,
checked before anything is built so that an error names the file and the key."""

from collections.abc import Mapping
from pathlib import Path

from xlstm_exp.models.registry import MIXERS
from xlstm_exp.user_error import UserError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MIXER_KEYS = ("mixer", "mix_with")


def check_pretrained_config(config: Mapping | None, folder: Path, arguments: list[str]) -> None:
    """Refuse a missing config, a key that is no constructor argument, a missing vocabulary
    size and an unknown mixer, naming `folder/config.json` and the key."""
    file = folder / CONFIG_FILE
    if config is None:
        raise UserError(
            f"{file}: no such file, so {folder} is not a model folder; export a checkpoint with "
            "python export.py ckpt_path=<ckpt> out=<dir>"
        )
    unknown = sorted(set(config) - set(arguments))
    if unknown:
        raise UserError(
            f"{file}: unknown keys {unknown}; LanguageModel takes {', '.join(arguments)}"
        )
    vocab_size = config.get("vocab_size")
    if not isinstance(vocab_size, int):
        raise UserError(f'{file}: "vocab_size" must be an integer, not {vocab_size!r}')
    for key in MIXER_KEYS:
        if key in config and config[key] not in MIXERS:
            known = ", ".join(sorted(MIXERS))
            raise UserError(
                f'{file}: "{key}": unknown mixer {config[key]!r}; known: {known} (a newer '
                "xlstm-exp, or a mixer file of your own that is not installed?)"
            )
