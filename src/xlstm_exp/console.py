"""What a run tells its user: one logger, written by the rank-zero process only (under DDP
every process runs the same code)."""

import logging

from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger("xlstm_exp")


@rank_zero_only
def info(message: str) -> None:
    log.info(message)


@rank_zero_only
def warning(message: str) -> None:
    log.warning(message)
