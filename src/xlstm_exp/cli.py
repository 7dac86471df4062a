"""What the entry points share: the arguments a user must pass, and user errors reported in one
line (status 2, as for any usage error) while bugs keep their traceback."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import DictConfig, OmegaConf

from xlstm_exp.user_error import UserError


def require(cfg: DictConfig, key: str, example: str) -> None:
    """A user error when `key` is not given."""
    if OmegaConf.is_missing(cfg, key):
        raise UserError(f"{key} is missing; pass it, e.g. {example}")


def full_errors() -> bool:
    """Whether the user asked for every traceback, as Hydra reads the same variable."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def user_error_line(error: BaseException) -> str | None:
    """`error: <message>` when `error` is, or was raised from, a user error (Hydra's
    `instantiate` wraps what a constructor raises); None for anything else, a bug."""
    while error is not None:
        if isinstance(error, UserError):
            return f"error: {error}"
        error = error.__cause__
    return None


@contextmanager
def user_errors_exit_2() -> Iterator[None]:
    """Around an entry point's job: a user error prints its one line to stderr and exits with
    status 2, unless HYDRA_FULL_ERROR=1 asks for the traceback. Inside `@hydra.main`, so that
    Hydra never sees the error (it would print its own traceback and advice)."""
    try:
        yield
    except Exception as error:
        line = user_error_line(error)
        if line is None or full_errors():
            raise
        print(line, file=sys.stderr)
        sys.exit(2)
