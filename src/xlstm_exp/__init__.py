"""xlstm-exp: train and compare xLSTM language models against LSTM and Transformer baselines."""

from xlstm_exp.models import LanguageModel
from xlstm_exp.models.seed_api import xLSTM

__all__ = ["LanguageModel", "xLSTM"]
