"""Choosing the cell kernels: model.backend=auto|torch|triton."""

import pytest
import torch

from xlstm_exp.models import LanguageModel, backend
from xlstm_exp.models.backend import use_triton

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_takes_triton_only_on_cuda_with_triton_installed(monkeypatch):
    monkeypatch.setattr(backend, "triton_available", lambda: True)
    assert use_triton("auto", CUDA)
    assert not use_triton("auto", CPU)
    assert not use_triton("torch", CUDA)
    monkeypatch.setattr(backend, "triton_available", lambda: False)
    assert not use_triton("auto", CUDA)


def test_explicit_triton_explains_what_is_missing(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(backend, "triton_available", lambda: True)
    with pytest.raises(RuntimeError, match="CUDA devices, not cpu; use backend=auto"):
        use_triton("triton", CPU)
    assert use_triton("triton", CUDA)
    monkeypatch.setattr(backend, "triton_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs Triton"):
        use_triton("triton", CUDA)


def test_unknown_backend_is_refused_when_the_model_is_built():
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'; choose one of auto"):
        LanguageModel(64, 32, 2, 4, mixer="mlstm", block="pre", backend="cuda")


def test_backend_reaches_the_xlstm_mixers_only():
    model = LanguageModel(
        64, 32, 2, 4, mixer="mlstm", block="pre", slstm_at=[1], slstm_block="post", backend="torch"
    )
    assert [block.mixer.backend for block in model.blocks] == ["torch", "torch"]
    LanguageModel(64, 32, 2, 4, mixer="lstm", block="post", backend="torch")  # no backend kwarg
