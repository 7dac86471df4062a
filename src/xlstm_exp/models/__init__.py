"""Plain nn.Module language models: mixers, blocks and the stack. No Lightning or Hydra here."""

import importlib
import pkgutil

from xlstm_exp.models.language_model import LanguageModel
from xlstm_exp.models.registry import MIXERS, build_mixer

# Every module of this package is imported, so that a mixer file dropped in here registers its
# mixer (`registry.register_mixer`) without a list to edit.
for _module in pkgutil.iter_modules(__path__):
    if not _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MIXERS", "LanguageModel", "build_mixer"]
