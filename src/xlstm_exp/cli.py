"""Checks the entry points make before the framework loads: what the user must pass."""

import sys

from omegaconf import DictConfig, OmegaConf


def require(cfg: DictConfig, key: str, example: str) -> None:
    """Exit with a one-line error (status 2, as for any usage error) when `key` is not given."""
    if OmegaConf.is_missing(cfg, key):
        print(f"error: {key} is missing; pass it, e.g. {example}", file=sys.stderr)
        sys.exit(2)
