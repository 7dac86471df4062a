"""One logging path: every message a run prints appears once, in Hydra's format, on the console
and in `<run dir>/<task>.log`; dependency output that tells a user of this project nothing is
dropped by its exact text, never wholesale, so that every other warning still shows."""

import logging
import re
import warnings

# Libraries that attach a console handler of their own and also pass each record on to the root
# logger, where Hydra's handlers print it a second time.
SELF_PRINTING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics")

# The beginnings of library messages dropped, and why.
DROPPED_MESSAGES = (
    # Lightning's advertisement for its hosted logger.
    "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
    "💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]",
    # Said for every trainer of ours: the configs set the limits to their defaults explicitly.
    "`Trainer(limit_val_batches=1.0)` was configured so 100% of the batches will be used",
    "`Trainer(limit_test_batches=1.0)` was configured so 100% of the batches will be used",
)

# (message, module that warns): deprecations inside a dependency, which no user can act on.
DROPPED_WARNINGS = (
    (
        "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) "
        "and treespec.is_leaf()` instead.",
        "lightning.pytorch.utilities._pytree",
    ),
)


class DropDependencyNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(DROPPED_MESSAGES)


def route_dependency_output() -> None:
    """Send the self-printing libraries' records and Python warnings through the root
    handlers only, drop the DROPPED_MESSAGES there, and ignore the DROPPED_WARNINGS. Call after
    those libraries are imported (their import adds the handlers) and after logging is
    configured; without root handlers (logging not configured) the libraries keep their own."""
    root_handlers = logging.getLogger().handlers
    if not root_handlers:
        return
    logging.captureWarnings(True)
    for name in SELF_PRINTING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for handler in root_handlers:
        if not any(isinstance(f, DropDependencyNoise) for f in handler.filters):
            handler.addFilter(DropDependencyNoise())
    for message, module in DROPPED_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), module=re.escape(module))
