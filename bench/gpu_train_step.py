"""Section 3 of the GPU benchmark that ``gpu_kernels.py`` runs: one full training step.

Forward, cross-entropy, backward and a fused AdamW step of our xLSTM[1:0], the official
``xLSTMLarge`` and a GPT of the same width and depth.
"""

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from gpu_cell_cases import Bench, Case, flash_only
from torch import nn


def train_case(make_model: Callable[[], nn.Module], cfg: dict, device, attention=False):
    def build():
        model = make_model().to(device).train()
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
        x, y = torch.randint(cfg["vocab"], (2, cfg["B"], cfg["S"]), device=device)
        bf16 = device.type == "cuda"

        def step():
            ctx = flash_only(device) if attention else contextlib.nullcontext()
            with ctx, torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
                if isinstance(logits, tuple):  # xLSTMLarge: (logits, state)
                    logits = logits[0]
                loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return Bench(step, cfg["B"] * cfg["S"], params=params)

    return build


def official_large(cfg: dict, device) -> nn.Module:
    from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

    # Without Triton (a CPU dry run) the official model takes its PyTorch kernels.
    triton = device.type == "cuda"
    config = xLSTMLargeConfig(
        embedding_dim=cfg["d"],
        num_heads=cfg["heads"],
        num_blocks=cfg["layers"],
        vocab_size=cfg["vocab"],
        chunkwise_kernel="chunkwise--triton_limit_chunk"
        if triton
        else "chunkwise--native_autograd",
        sequence_kernel="native_sequence__triton" if triton else "native_sequence__native",
        step_kernel="triton" if triton else "native",
        mode="train",
        # Its mLSTM layers unpack (h, state) from the kernel, which returns the state only when
        # asked: with False the layer fails. The model then returns (logits, state).
        return_last_states=True,
    )
    return xLSTMLarge(config)


def train_cases(cfg: dict, device) -> list[Case]:
    from xlstm_exp.models import LanguageModel

    V, d, L, NH = cfg["vocab"], cfg["d"], cfg["layers"], cfg["heads"]
    config = f"vocab={V} d={d} blocks={L} B={cfg['B']} S={cfg['S']}" + (
        " bf16 autocast" if device.type == "cuda" else " fp32"
    )

    def ours(backend):
        return lambda: LanguageModel(V, d, L, NH, mixer="mlstm", block="pre", backend=backend)

    def gpt():
        return LanguageModel(V, d, L, cfg["gpt_heads"], mixer="attention", block="post")

    kernel = "triton_limit_chunk" if device.type == "cuda" else "native_autograd"
    return [
        Case(
            "train",
            f"ours xLSTM[1:0], Triton (NH={NH})",
            config,
            train_case(ours("triton"), cfg, device),
            needs=("cuda", "triton"),
        ),
        # Before the official model: its child process (import, Triton compiles) may take the
        # rest of the stage's time.
        Case(
            "train",
            f"GPT, SDPA flash (NH={cfg['gpt_heads']})",
            config,
            train_case(gpt, cfg, device, attention=True),
        ),
        Case(
            "train",
            f"official xLSTMLarge, {kernel} (NH={NH})",
            config,
            train_case(lambda: official_large(cfg, device), cfg, device),
            group="official-large",
        ),
        # The slowest row and the least needed: after the others, if time is left.
        Case(
            "train",
            f"ours xLSTM[1:0], PyTorch (NH={NH})",
            config,
            train_case(ours("torch"), cfg, device),
            deferred=True,
        ),
    ]
