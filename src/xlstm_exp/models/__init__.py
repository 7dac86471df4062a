"""Plain nn.Module language models: mixers, blocks and the stack. No Lightning or Hydra here."""

# Importing the mixer modules registers them under their names.
from xlstm_exp.models import attention_mixer, lstm_mixer, mlstm_mixer, slstm_mixer  # noqa: F401
from xlstm_exp.models.language_model import LanguageModel
from xlstm_exp.models.registry import MIXERS, build_mixer

__all__ = ["MIXERS", "LanguageModel", "build_mixer"]
