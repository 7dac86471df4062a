"""Choosing the cell kernels: model.backend=auto|torch|triton."""

import ast
import subprocess
import warnings

import pytest
import torch

from xlstm_exp.models import LanguageModel, backend
from xlstm_exp.models import triton as triton_kernels
from xlstm_exp.models.attention_mixer import AttentionMixer
from xlstm_exp.models.backend import BACKENDS, run_kernel, use_triton
from xlstm_exp.models.factory import build_language_model
from xlstm_exp.models.lstm_mixer import LSTMMixer
from xlstm_exp.models.slstm_mixer import SLSTMMixer
from xlstm_exp.models.triton import MLSTM_CHUNK_SIZES, kernel_failure

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
VOCAB = 40


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
    # Backends other than the mixers' default "auto", so that one left unpassed shows.
    model = LanguageModel(
        64, 32, 2, 4, mixer="mlstm", block="pre", slstm_at=[1], slstm_block="post", backend="torch"
    )
    assert [block.mixer.backend for block in model.blocks] == ["torch", "torch"]
    # The others take no backend option: passed one, they would refuse it and fail the build.
    for mixer, cls in [("lstm", LSTMMixer), ("attention", AttentionMixer)]:
        model = LanguageModel(64, 32, 2, 4, mixer=mixer, block="post", backend="triton")
        for block in model.blocks:
            assert type(block.mixer) is cls and not hasattr(block.mixer, "backend")


# --- auto falls back to PyTorch where a Triton kernel cannot run ------------------------------

KERNELS = [
    ("slstm", "slstm_recurrent_triton", "sLSTM recurrence"),
    ("mlstm", "mlstm_chunkwise_triton", "mLSTM chunkwise"),
]


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """No kernel has fallen back and nothing was warned about yet, as in a new process."""
    monkeypatch.setattr(backend, "_FALLEN_BACK", set())
    monkeypatch.setattr(backend, "_WARNED", set())


def triton_on_cpu(monkeypatch):
    """`auto` (and `triton`) choose the Triton kernel for CPU tensors, as for CUDA ones."""
    monkeypatch.setattr(backend, "use_triton", lambda name, device: name != "torch")


def failing_kernel(monkeypatch, entry: str, error: Exception) -> list:
    """Replace a kernel entry point by one that raises `error`; returns its list of calls."""
    calls = []

    def kernel(*args, **kwargs):
        calls.append(args)
        raise error

    # raising=False: the entry points load lazily, so the attribute need not exist yet.
    monkeypatch.setattr(triton_kernels, entry, kernel, raising=False)
    return calls


def model_and_reference(mixer: str, kernel_backend: str, **options):
    """A two-layer model on `kernel_backend` and a backend=torch copy with the same weights."""
    models = [
        LanguageModel(VOCAB, 32, 2, 2, mixer=mixer, backend=name, **options)
        for name in (kernel_backend, "torch")
    ]
    models[1].load_state_dict(models[0].state_dict())
    return models


def tokens(length: int = 20) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(0))


KERNEL_SOURCE = "def kernel(x_ptr):\n    x = tl.load(x_ptr)\n    tl.static_assert(x.shape[0] <= 64)"


def compile_failure(name: str) -> tuple[Exception, str]:
    """Triton's error for a kernel it cannot compile or launch, and the reason a warning gives."""
    triton = pytest.importorskip("triton")
    if name == "CompilationError":  # its message: the place, the source, then what went wrong
        node = ast.parse(KERNEL_SOURCE).body[0].body[1]
        error = triton.compiler.errors.CompilationError(KERNEL_SOURCE, node, "static_assert failed")
        return error, "CompilationError: static_assert failed"
    error = triton.runtime.errors.OutOfResources(262144, 232448, "shared memory")
    return error, f"OutOfResources: {error}"  # one line


@pytest.mark.parametrize("failure", ["CompilationError", "OutOfResources"])
@pytest.mark.parametrize(("mixer", "entry", "kernel"), KERNELS)
def test_auto_warns_once_and_runs_pytorch_when_a_kernel_fails_to_compile(
    monkeypatch, mixer, entry, kernel, failure
):
    error, reason = compile_failure(failure)
    triton_on_cpu(monkeypatch)
    calls = failing_kernel(monkeypatch, entry, error)
    model, reference = model_and_reference(mixer, "auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = model(tokens())
        second = model(tokens(7))
    assert [str(w.message) for w in caught] == [
        f"{kernel}: the Triton kernel cannot run on cpu ({reason}); model.backend=auto runs the "
        "PyTorch form instead, here and in every later call (slower). Set model.backend=torch "
        "to silence this, or model.backend=triton to see the full error"
    ]
    assert len(calls) == 1  # not by the second layer, nor by the second forward
    with torch.no_grad():
        torch.testing.assert_close(first, reference(tokens()))
        torch.testing.assert_close(second, reference(tokens(7)))


@pytest.mark.parametrize(("mixer", "entry", "kernel"), KERNELS)
def test_explicit_triton_raises_the_compile_failure(monkeypatch, mixer, entry, kernel):
    error, _ = compile_failure("CompilationError")
    triton_on_cpu(monkeypatch)
    failing_kernel(monkeypatch, entry, error)
    model, _ = model_and_reference(mixer, "triton")
    with pytest.raises(type(error), match="static_assert failed"):
        model(tokens())


@pytest.mark.parametrize(("mixer", "entry", "kernel"), KERNELS)
def test_auto_does_not_swallow_bad_arguments(monkeypatch, mixer, entry, kernel):
    triton_on_cpu(monkeypatch)
    calls = failing_kernel(monkeypatch, entry, ValueError("chunk_size must be a power of two"))
    model, _ = model_and_reference(mixer, "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            with pytest.raises(ValueError, match="power of two"):
                model(tokens())
    assert len(calls) == 2  # nothing was remembered as a failure


def test_auto_without_triton_on_cuda_names_the_gpu_once(monkeypatch):
    monkeypatch.setattr(backend, "triton_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"Test GPU {device}")
    with pytest.warns(UserWarning) as caught:
        for _ in range(3):
            out = run_kernel("mLSTM chunkwise", "auto", torch.device("cuda:0"), None, lambda: 7)
            assert out == 7
    assert [str(w.message) for w in caught] == [
        "mLSTM chunkwise: the Triton kernel cannot run on Test GPU cuda:0 (Triton cannot be "
        "imported (pip install triton)); model.backend=auto runs the PyTorch form instead, here "
        "and in every later call (slower). Set model.backend=torch to silence this, or "
        "model.backend=triton to see the full error"
    ]


def test_which_errors_count_as_a_kernel_failing_to_compile_or_launch():
    triton = pytest.importorskip("triton")
    counted = {
        "RuntimeError: PassManager::run failed": RuntimeError("PassManager::run failed"),
        "RuntimeError: Triton Error [CUDA]: device kernel image is invalid": RuntimeError(
            "Triton Error [CUDA]: device kernel image is invalid"
        ),
        "PTXASError: PTXAS error: ptxas fatal": triton.runtime.errors.PTXASError("ptxas fatal"),
        "CalledProcessError: Command '['gcc']' returned non-zero exit status 1.": (
            subprocess.CalledProcessError(1, ["gcc"])
        ),
        **{reason: error for error, reason in map(compile_failure, ["CompilationError", "X"])},
    }
    for reason, error in counted.items():
        assert kernel_failure(error) == reason
    for error in [
        ValueError("chunk_size must be a power of two >= 16"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("Triton Error [CUDA]: out of memory"),
        RuntimeError("The size of tensor a (3) must match the size of tensor b (4)"),
        TypeError("unsupported operand"),
    ]:
        assert kernel_failure(error) is None, error


# --- configurations the kernels cannot run fail, or warn, when the model is built -------------


@pytest.mark.parametrize("name", BACKENDS)
def test_mlstm_chunk_size_is_a_kernel_tile_size_on_every_backend(name):
    def build(chunk_size):
        options = {"mlstm": {"chunk_size": chunk_size}}
        return LanguageModel(VOCAB, 32, 1, 2, mixer="mlstm", backend=name, mixer_options=options)

    for chunk_size in (8, 48, 256):
        with pytest.raises(
            ValueError,
            match=rf"mLSTM chunk_size={chunk_size} must be one of 16, 32, 64, 128 \(the Triton",
        ):
            build(chunk_size)
    for chunk_size in MLSTM_CHUNK_SIZES:
        mixer = build(chunk_size).blocks[0].mixer
        assert (mixer.backend, mixer.chunk_size) == (name, chunk_size)


def test_slstm_heads_too_wide_for_the_kernel_are_refused_by_backend_triton():
    with pytest.raises(
        ValueError,
        match=r"sLSTM head dim 300 \(width 600 / num_heads 2\) is over the Triton kernel's limit "
        r"of 256: raise num_heads to at least 3, or use backend=torch",
    ):
        SLSTMMixer(600, 2, backend="triton")
    assert SLSTMMixer(512, 2, backend="triton").fits_triton  # head dim 256: the limit itself


def test_slstm_heads_too_wide_under_auto_warn_once_and_run_pytorch(monkeypatch):
    triton_on_cpu(monkeypatch)
    calls = failing_kernel(monkeypatch, "slstm_recurrent_triton", AssertionError("not called"))
    with pytest.warns(UserWarning) as caught:
        wide = [SLSTMMixer(600, 2, backend=name) for name in ("auto", "auto", "torch")]
    assert [str(w.message) for w in caught] == [
        "sLSTM head dim 300 (width 600 / num_heads 2) is over the Triton kernel's limit of 256, "
        "so CUDA runs will use the PyTorch recurrence (slower); raise num_heads to at least 3 "
        "to use the kernel"
    ]
    wide[2].load_state_dict(wide[0].state_dict())
    x = torch.randn(1, 3, 600, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = wide[0](x, x)
    torch.testing.assert_close(got, wide[2](x, x))
    assert calls == []


def test_sizing_tries_widths_beyond_the_kernel_without_refusing_them():
    options = {"mixer": "slstm", "num_layers": 1, "num_heads": 1, "block": "post"}
    with torch.device("meta"):
        at_256 = LanguageModel(VOCAB, 256, backend="torch", **options).num_parameters()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("triton", "auto"):
            # Just over width 256's count: the search doubles to 512 before settling on 256.
            model, size = build_language_model(
                VOCAB, target_params=at_256 + 1, backend=name, **options
            )
            assert size.width == 256 and model.blocks[0].mixer.backend == name
