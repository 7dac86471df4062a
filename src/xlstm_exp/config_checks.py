"""The rules a run config's sizes, counts, rates and lengths follow, checked as soon as the config
is composed: a value that cannot work stops the run in one line naming the key, the value and the
rule, before data or model are built, rather than minutes later deep inside PyTorch (a negative
width fails in nn.Embedding, a zero batch size in the DataLoader).

Heads dividing widths are left to the mixers, which know their own inner widths (and with
`model.target_params` the width is only known once solved)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from xlstm_exp.models.sizing import parse_count
from xlstm_exp.user_error import UserError

ABSENT = object()


@dataclass(frozen=True)
class Rule:
    holds: Callable[[object], bool]
    wants: str  # completes "<key>=<value> must be ..."
    example: str
    nullable: bool = False  # null is allowed (a default, or no limit)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def at_least_1(value: object) -> bool:
    return is_integer(value) and value >= 1


def positive(value: object) -> bool:
    return is_number(value) and value > 0


def is_count(value: object) -> bool:
    try:
        parse_count(value)
    except UserError:
        return False
    return True


RULES = {
    "model.d_model": Rule(at_least_1, "a positive integer", "128"),
    "model.num_layers": Rule(at_least_1, "a positive integer", "2"),
    "model.num_heads": Rule(at_least_1, "a positive integer", "4"),
    "model.vocab_size": Rule(at_least_1, "a positive integer or null (the data's)", "8192", True),
    "model.dropout": Rule(lambda v: is_number(v) and 0 <= v < 1, "in [0, 1)", "0.1"),
    "model.target_params": Rule(is_count, "a positive parameter count or null", "47M", True),
    "data.context_length": Rule(at_least_1, "a positive integer or null (the data's)", "128", True),
    "data.batch_size": Rule(at_least_1, "a positive integer", "16"),
    "max_tokens": Rule(positive, "a positive number of tokens or null", "1e6", True),
    "optimizer.lr": Rule(positive, "a positive number", "3e-3"),
    "optimizer.weight_decay": Rule(lambda v: is_number(v) and v >= 0, "at least 0", "0.1"),
    "optimizer.warmup_steps": Rule(lambda v: is_integer(v) and v >= 0, "an integer >= 0", "30"),
    "trainer.max_steps": Rule(
        lambda v: is_integer(v) and (v >= 1 or v == -1), "a positive integer or -1", "300"
    ),
    "logger.wandb.settings.init_timeout": Rule(positive, "a positive number of seconds", "20"),
}


def lookup(config: Mapping, dotted: str) -> object:
    """The value at a dotted key of a dict or DictConfig (interpolations resolved), or ABSENT."""
    value = config
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return ABSENT
        value = value.get(part)
    return value


def check_config(config: Mapping, section: str | None = None) -> None:
    """Refuse the first value that breaks its rule, by key, value and rule. `config` is a whole
    run config, or with `section` (e.g. "model") that section of it only; absent keys are not
    checked, since not every model or dataset has them."""
    for key, rule in RULES.items():
        if section is not None and not key.startswith(f"{section}."):
            continue
        value = lookup(config, key if section is None else key.removeprefix(f"{section}."))
        if value is ABSENT or (value is None and rule.nullable) or rule.holds(value):
            continue
        shown = "null" if value is None else value
        raise UserError(f"{key}={shown} must be {rule.wants}; pass e.g. {key}={rule.example}")
