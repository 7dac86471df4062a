"""Sections 1 and 2 of the GPU benchmark that ``gpu_kernels.py`` runs: the kernel cases.

The mLSTM chunkwise kernels and the sLSTM recurrence, forward + backward, each a list of `Case`
rows (``gpu_kernels.py``'s docstring lists what they compare). The row types `Bench` and `Case`,
`flash_only` and `triton_usable` are here too: the training-step cases (``gpu_train_step.py``)
and the runner import them from this module.
"""

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Bench:
    """A built case: `step` is the timed call; `tokens` the tokens it processes."""

    step: Callable[[], object]
    tokens: int
    params: int | None = None
    note: str = ""


@dataclass
class Case:
    """One row of the report: how to build it and how to run it."""

    section: str
    name: str
    config: str  # the shape and dtype; rows of a section with the same config are compared
    build: Callable[[], Bench]
    needs: tuple[str, ...] = ()  # "cuda", "triton": what the device must offer
    group: str | None = None  # run in a child process together with the group's other rows
    timeout: float = 150.0  # seconds for the whole group's child process
    deferred: bool = False  # run after the others (slow to set up), listed in place


def flash_only(device: torch.device):
    """Flash attention for SDPA on a GPU (an error rather than a silent slower kernel)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def triton_usable(device: torch.device) -> bool:
    from xlstm_exp.models.triton import triton_available

    # No interpreter runs here: on a CPU the Triton rows are skipped, not crawled through.
    return device.type == "cuda" and triton_available()


def fwd_bwd(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]):
    """The timed forward + backward of `fn` (gradients for all `inputs`) and its first output.

    `torch.autograd.grad` rather than `.backward()`: no accumulation into `.grad` is timed."""
    h = fn(*inputs)
    dh = torch.randn_like(h)

    def step():
        torch.autograd.grad(fn(*inputs), inputs, dh)

    return step, h.detach()


def leaf(*shape, device, dtype, shift=0.0, scale=1.0):
    """A random input that takes gradients."""
    x = shift + scale * torch.randn(*shape, device=device)
    return x.to(dtype).requires_grad_()


# --- section 1: mLSTM ----------------------------------------------------------------------


def ours_mlstm(q, k, v, i, f):
    from xlstm_exp.models.triton import mlstm_chunkwise_triton

    return mlstm_chunkwise_triton(q, k, v, i, f, chunk_size=64)[0]


def torch_mlstm(q, k, v, i, f):
    from xlstm_exp.models.mlstm import mlstm_chunkwise_with_state

    return mlstm_chunkwise_with_state(q, k, v, i, f, chunk_size=64)[0]


def official_mlstm(kernel: str, chunk_size: int):
    def run(q, k, v, i, f):
        from mlstm_kernels.torch import get_mlstm_kernel

        fn = get_mlstm_kernel(f"chunkwise--{kernel}")
        # Inputs are bf16 already; the dtype only matters under autocast, as in xLSTMLarge.
        return fn(q, k, v, i, f, chunk_size=chunk_size, autocast_kernel_dtype=torch.bfloat16)

    return run


def mlstm_case(fn, B, NH, S, DH, device, dtype, compare: bool) -> Callable[[], Bench]:
    def build():
        q, k, v = (leaf(B, NH, S, DH, device=device, dtype=dtype) for _ in range(3))
        # Forget gates near sigmoid(3): the long memory of a trained model's init.
        igate = leaf(B, NH, S, device=device, dtype=dtype)
        fgate = leaf(B, NH, S, device=device, dtype=dtype, shift=3.0)
        inputs = [q, k, v, igate, fgate]
        step, h = fwd_bwd(fn, inputs)
        note = ""
        if compare and triton_usable(device):
            # The same h as ours: the rows time the same computation.
            with torch.no_grad():
                ref = ours_mlstm(*(x.detach() for x in inputs)).float()
            err = (h.float() - ref).abs().max() / ref.abs().max()
            note = f"h vs ours: {err.item():.1e}"
        return Bench(step, B * S, note=note)

    return build


def sdpa_case(B, NH, S, DH, device, dtype) -> Callable[[], Bench]:
    def attend(q, k, v):
        with flash_only(device):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def build():
        inputs = [leaf(B, NH, S, DH, device=device, dtype=dtype) for _ in range(3)]
        return Bench(fwd_bwd(attend, inputs)[0], B * S)

    return build


def mlstm_cases(cfg: dict, device, dtype) -> list[Case]:
    B, NH, DH = cfg["B"], cfg["NH"], cfg["DH"]
    tag = "bf16" if dtype == torch.bfloat16 else "fp32"
    official = dict(needs=("cuda", "triton"), group="official-mlstm")
    # (name, kernel, whether to compare its h with ours, options of its rows)
    kernels = [
        ("ours, Triton (chunk 64)", ours_mlstm, False, dict(needs=("cuda", "triton"))),
        ("official triton_limit_chunk (64)", official_mlstm("triton_limit_chunk", 64), True,
         official),
        ("official triton_xl_chunk (128)", official_mlstm("triton_xl_chunk", 128), True,
         {**official, "group": "official-xl-chunk", "timeout": 90}),
        # Sigmoid input gate: another cell, so its h is not compared with ours.
        ("official triton_xl_chunk_siging (128)",
         official_mlstm("triton_xl_chunk_siging", 128), False, official),
        ("ours, PyTorch chunkwise (64)", torch_mlstm, True, {}),
    ]  # fmt: skip
    aNH, aDH = cfg["attn_NH"], cfg["attn_DH"]
    cases = []
    for S in cfg["S"]:
        config = f"B={B} NH={NH} DH={DH} S={S} {tag}"
        for name, fn, compare, options in kernels:
            if fn is torch_mlstm and S != cfg["torch_S"]:  # slow: one length only
                continue
            build = mlstm_case(fn, B, NH, S, DH, device, dtype, compare)
            cases.append(Case("mlstm", name, config, build, **options))
        build = sdpa_case(B, aNH, S, aDH, device, dtype)
        cases.append(Case("mlstm", f"SDPA causal, flash (NH={aNH}, DH={aDH})", config, build))
    return cases


# --- section 2: sLSTM ----------------------------------------------------------------------


def slstm_case(kernel: str, B, NH, S, DH, device, dtype) -> Callable[[], Bench]:
    """Our sLSTM recurrence on gate pre-activations (B, NH, S, DH) and recurrent weights
    (4, NH, DH, DH); R stays float32, as the model's parameter does."""

    def build():
        from xlstm_exp.models.slstm import slstm_recurrent

        if kernel == "triton":
            from xlstm_exp.models.triton import slstm_recurrent_triton as recurrent
        else:
            recurrent = slstm_recurrent
        gates = [leaf(B, NH, S, DH, device=device, dtype=dtype) for _ in range(4)]
        R = leaf(4, NH, DH, DH, device=device, dtype=torch.float32, scale=DH**-0.5)
        step, _ = fwd_bwd(lambda *x: recurrent(*x)[0], [*gates, R])
        return Bench(step, B * S)

    return build


def official_slstm_cell(backend: str, B, NH, DH, dtype) -> nn.Module:
    """The official sLSTM cell; its CUDA backend compiles its kernel here, for this config."""
    from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

    config = sLSTMCellConfig(
        hidden_size=NH * DH,
        num_heads=NH,
        backend=backend,
        batch_size=B,
        dtype="bfloat16" if dtype == torch.bfloat16 else "float32",
    )
    return sLSTMCell(config)


def official_slstm_case(backend: str, B, NH, S, DH, device, dtype) -> Callable[[], Bench]:
    """The official sLSTM cell on its input-side gate pre-activations (B, S, 4 * NH * DH)."""

    def build():
        start = time.perf_counter()
        cell = official_slstm_cell(backend, B, NH, DH, dtype).to(device)
        setup_s = time.perf_counter() - start
        x = leaf(B, S, 4 * NH * DH, device=device, dtype=dtype)
        step, _ = fwd_bwd(lambda x, *_: cell(x)[0], [x, *cell.parameters()])
        return Bench(step, B * S, note=f"built in {setup_s:.0f} s" if backend == "cuda" else "")

    return build


def lstm_case(B, S, H, device, dtype) -> Callable[[], Bench]:
    def build():
        lstm = nn.LSTM(H, H, batch_first=True).to(device, dtype)
        x = leaf(B, S, H, device=device, dtype=dtype)
        step, _ = fwd_bwd(lambda x, *_: lstm(x)[0], [x, *lstm.parameters()])
        return Bench(step, B * S)

    return build


def slstm_cases(cfg: dict, device, dtype) -> list[Case]:
    B, NH, DH, S, slow_S = cfg["B"], cfg["NH"], cfg["DH"], cfg["S"], cfg["slow_S"]
    tag = "bf16" if dtype == torch.bfloat16 else "fp32"
    config = f"B={B} NH={NH} DH={DH} S={S}"
    slow = f"B={B} NH={NH} DH={DH} S={slow_S} fp32"
    f32 = torch.float32
    return [
        Case(
            "slstm",
            "ours, Triton",
            f"{config} {tag}",
            slstm_case("triton", B, NH, S, DH, device, dtype),
            needs=("cuda", "triton"),
        ),
        # torch's default float32 matmul precision ("highest"): IEEE products, no TF32.
        Case(
            "slstm",
            "ours, Triton (IEEE fp32 products)",
            f"{config} fp32",
            slstm_case("triton", B, NH, S, DH, device, f32),
            needs=("cuda", "triton"),
        ),
        # Compiles its CUDA kernel first (its note gives how long): run last, in a child process.
        Case(
            "slstm",
            "official sLSTMCell, backend cuda",
            f"{config} {tag}",
            official_slstm_case("cuda", B, NH, S, DH, device, dtype),
            needs=("cuda",),
            group="official-slstm-cuda",
            timeout=240,
            deferred=True,
        ),
        Case(
            "slstm",
            f"nn.LSTM({NH * DH}, {NH * DH}), cuDNN",
            f"{config} {tag}",
            lstm_case(B, S, NH * DH, device, dtype),
        ),
        # A Python loop over time steps: slow, so a shorter sequence.
        Case("slstm", "ours, PyTorch", slow, slstm_case("torch", B, NH, slow_S, DH, device, f32)),
        Case(
            "slstm",
            "official sLSTMCell, backend vanilla",
            slow,
            official_slstm_case("vanilla", B, NH, slow_S, DH, device, f32),
        ),
    ]
