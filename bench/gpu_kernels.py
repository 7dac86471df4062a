"""GPU benchmark of the project's Triton kernels against the official xLSTM kernels, one run.

Three sections, side by side in the same run on the same card:

1. mLSTM chunkwise kernels, forward + backward in bf16: ours (Triton and PyTorch), the official
   ``mlstm_kernels`` Triton kernels, and flash attention (SDPA) as the reference point;
2. the sLSTM recurrence, forward + backward: ours (Triton, bf16 and float32; PyTorch), the
   official ``xlstm`` sLSTM cell (CUDA and vanilla backends), and cuDNN's ``nn.LSTM``;
3. one full training step (forward, cross-entropy, backward, fused AdamW) of our xLSTM[1:0],
   the official ``xLSTMLarge`` and a GPT of the same width and depth.

Each row is the median of the timed repeats after warm-ups (CUDA events on a GPU,
``time.perf_counter`` on a CPU). A failing row reports its error and the run goes on; the
official packages' kernels run in child processes, so that one that crashes (the official
``triton_xl_chunk`` is known to break Triton 3.6's compiler) or wrecks the CUDA context takes no
other row with it. The markdown tables are rewritten after every row.

    python bench/gpu_kernels.py --out "$OUT"            # on a GPU: writes gpu-<date>.md
    python bench/gpu_kernels.py --device cpu --quick    # a few seconds: checks the script's logic
"""

import argparse
import contextlib
import datetime
import gc
import importlib.metadata
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FULL = dict(
    mlstm=dict(B=8, NH=4, DH=256, S=(2048, 8192), torch_S=2048, attn_NH=8, attn_DH=64),
    slstm=dict(B=8, NH=4, DH=128, S=2048, slow_S=512),
    train=dict(vocab=50304, d=512, layers=8, heads=4, gpt_heads=8, B=8, S=2048),
    warmup=3,
    repeats=10,
)
QUICK = dict(
    mlstm=dict(B=2, NH=2, DH=32, S=(128, 256), torch_S=128, attn_NH=4, attn_DH=16),
    slstm=dict(B=2, NH=2, DH=16, S=64, slow_S=32),
    train=dict(vocab=512, d=64, layers=2, heads=2, gpt_heads=4, B=2, S=128),
    warmup=1,
    repeats=2,
)
SECTIONS = {
    "mlstm": "1. mLSTM chunkwise kernels: forward + backward",
    "slstm": "2. sLSTM recurrence: forward + backward",
    "train": "3. Training step: forward, cross-entropy, backward, fused AdamW step",
}


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


@dataclass
class Outcome:
    """What a row measured, or why it has no time."""

    ms: float | None = None
    tokens_per_s: float | None = None
    params: int | None = None
    peak_gib: float | None = None
    note: str = ""
    error: str = ""


# --- helpers -------------------------------------------------------------------------------


def short_error(err: BaseException | str) -> str:
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else "error")[:160]


def flash_only(device: torch.device):
    """Flash attention for SDPA on a GPU (an error rather than a silent slower kernel)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def median_ms(step: Callable[[], object], device: torch.device, warmup: int, repeats: int):
    for _ in range(warmup):
        step()
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    torch.cuda.synchronize()
    events = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)


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


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


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
        # Compiles its CUDA kernel first (~20 s and more): run last, in a child process.
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


# --- section 3: training step --------------------------------------------------------------


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
        Case(
            "train",
            f"official xLSTMLarge, {kernel} (NH={NH})",
            config,
            train_case(lambda: official_large(cfg, device), cfg, device),
            group="official-large",
        ),
        Case(
            "train",
            f"GPT, SDPA flash (NH={cfg['gpt_heads']})",
            config,
            train_case(gpt, cfg, device, attention=True),
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


# --- running -------------------------------------------------------------------------------


def triton_usable(device: torch.device) -> bool:
    from xlstm_exp.models.triton import triton_available

    # No interpreter runs here: on a CPU the Triton rows are skipped, not crawled through.
    return device.type == "cuda" and triton_available()


def unmet(case: Case, device: torch.device) -> list[str]:
    have = {"cuda": device.type == "cuda", "triton": triton_usable(device)}
    return [need for need in case.needs if not have[need]]


def run_case(case: Case, device: torch.device, sizes: dict) -> Outcome:
    if missing := unmet(case, device):
        return Outcome(error=f"skipped: needs {', '.join(missing)}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    bench = None
    try:
        bench = case.build()
        ms = median_ms(bench.step, device, sizes["warmup"], sizes["repeats"])
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        return Outcome(ms, bench.tokens / ms * 1e3, bench.params, peak, bench.note)
    except Exception as err:  # a failing row is reported in its table, the run goes on
        return Outcome(error=short_error(err))
    finally:
        del bench
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run_group(group: str, indices: list[int], args, remaining: float) -> dict[int, Outcome]:
    """Run a group's rows in a child process; rows it never reported get its exit status."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        results = Path(f.name)
    cmd = [sys.executable, __file__, "--device", args.device, "--group", group]
    cmd += ["--results", str(results)] + (["--quick"] if args.quick else [])
    # A session of its own: a timeout also ends the child's compilers.
    child = subprocess.Popen(cmd, start_new_session=True)
    try:
        code = child.wait(timeout=remaining)
        failure = (
            f"child process killed by signal {-code}"
            if code < 0
            else f"child process exited with {code}"
            if code
            else "child process gave no result"
        )
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        failure = f"timed out after {remaining:.0f} s"
    done = {}
    for line in results.read_text().splitlines():
        row = json.loads(line)
        index = row.pop("index")
        done[index] = Outcome(**row)
    results.unlink()
    return {i: done.get(i, Outcome(error=failure)) for i in indices}


def child_main(args, cases: list[Case], device, sizes: dict) -> None:
    for i, case in enumerate(cases):
        if case.group == args.group:
            outcome = run_case(case, device, sizes)
            with open(args.results, "a") as f:
                f.write(json.dumps({"index": i, **asdict(outcome)}) + "\n")


def fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def report(cases: list[Case], outcomes: dict[int, Outcome], header: list[str]) -> str:
    lines = header[:]
    for section, title in SECTIONS.items():
        train = section == "train"
        lines += ["", f"## {title}", ""]
        columns = ["case", "config", "ms", "tokens/s", "vs first", "peak GiB"]
        columns += ["params"] if train else []
        lines += ["| " + " | ".join(columns + ["notes"]) + " |", "|---" * (len(columns) + 1) + "|"]
        first: dict[str, float] = {}  # the ratio's base: a config's first row with a time
        for i, case in enumerate(cases):
            if case.section != section:
                continue
            out = outcomes.get(i, Outcome(error="not run yet"))
            ratio = None
            if out.ms is not None:
                ratio = out.ms / first.setdefault(case.config, out.ms)
            cells = [
                case.name,
                case.config,
                fmt(out.ms, ".2f"),
                fmt(out.tokens_per_s, ",.0f"),
                fmt(ratio, ".3g"),
                fmt(out.peak_gib, ".1f"),
            ]
            cells += [fmt(out.params, ",")] if train else []
            note = "; ".join(x for x in (out.note, out.error) if x).replace("|", "\\|")
            lines.append("| " + " | ".join(cells + [note]) + " |")
    return "\n".join(lines) + "\n"


def environment(device: torch.device, sizes: dict, args) -> list[str]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        card = (
            f"{props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB"
        )
    else:
        card = f"CPU dry run ({os.cpu_count()} cores): no Triton, no CUDA rows"
    clock = "CUDA events" if device.type == "cuda" else "time.perf_counter"
    return [
        f"# GPU benchmark: Triton kernels, {datetime.date.today()}",
        "",
        f"- card: {card}",
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}), triton {version('triton')}, "
        f"xlstm {version('xlstm')}, mlstm_kernels {version('mlstm_kernels')}",
        f"- each row: median of {sizes['repeats']} after {sizes['warmup']} warm-ups ({clock}); "
        "`vs first`: the time over that of the section's first timed row of the same config",
        f"- command: `python bench/gpu_kernels.py {' '.join(sys.argv[1:])}`",
    ]


def run_all(cases: list[Case], args, device: torch.device, sizes: dict) -> None:
    """Run every row (deferred ones last, groups in child processes) within the time budget,
    rewriting the markdown report after each."""
    start = time.monotonic()
    header = environment(device, sizes, args)
    suffix = ("-cpu" if device.type == "cpu" else "") + ("-quick" if args.quick else "")
    path = args.out / f"gpu-{datetime.date.today()}{suffix}.md"
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes: dict[int, Outcome] = {}
    printed: set[int] = set()
    order = sorted(range(len(cases)), key=lambda i: cases[i].deferred)
    for i in order:
        if i in outcomes:  # ran with its group
            continue
        case = cases[i]
        remaining = args.budget - (time.monotonic() - start)
        if remaining <= 0:
            outcomes[i] = Outcome(error=f"skipped: time budget of {args.budget:.0f} s spent")
        elif case.group and not unmet(case, device):
            members = [j for j, c in enumerate(cases) if c.group == case.group]
            print(f"--- child process for {case.group}: rows {members}", flush=True)
            outcomes.update(run_group(case.group, members, args, min(case.timeout, remaining)))
        else:
            outcomes[i] = run_case(case, device, sizes)
        for j in sorted(set(outcomes) - printed):
            out, c = outcomes[j], cases[j]
            result = f"{out.ms:.2f} ms" if out.ms is not None else out.error
            print(
                f"[{time.monotonic() - start:5.0f} s] {c.name} | {c.config}: {result}", flush=True
            )
        printed.update(outcomes)
        path.write_text(report(cases, outcomes, header))
    print("\n" + path.read_text())
    print(f"written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repeats")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("OUT", tempfile.gettempdir())),
        help="folder for gpu-<date>.md (default: $OUT, else the temporary folder)",
    )
    parser.add_argument(
        "--prebuild",
        action="store_true",
        help="only compile the official sLSTM CUDA kernel for the benchmark's config and exit "
        "(bench/gpu.sh runs this beside the tests, so the benchmark finds it compiled)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=float("inf"),
        help="seconds after which no further case starts",
    )
    # A child process runs one group's rows and appends their outcomes to --results.
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args()

    device = torch.device(args.device)
    sizes = QUICK if args.quick else FULL
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cases = (
        mlstm_cases(sizes["mlstm"], device, dtype)
        + slstm_cases(sizes["slstm"], device, dtype)
        + train_cases(sizes["train"], device)
    )
    if args.prebuild:
        cfg = sizes["slstm"]
        official_slstm_cell("cuda", cfg["B"], cfg["NH"], cfg["DH"], dtype)
        return
    if args.group:
        child_main(args, cases, device, sizes)
        return

    run_all(cases, args, device, sizes)


if __name__ == "__main__":
    main()
