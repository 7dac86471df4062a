"""Per-token generation latency and state memory as the context grows, at matched model size.

    python bench/generation_latency.py [--params 10M] [--positions 1024 4096 16384 65536]

For each model the step at position P runs with the state a P-token prefix leaves: the recurrent
models' state has the same size at every position, so it comes from a short prefill; the
Transformer's KV cache holds P entries (filled with random keys and values, which cost the
same as real ones, so the benchmark needs no P-token prefill). Prints a markdown table, writes
it to bench/results/ and, with matplotlib installed, a plot next to it.
"""

import argparse
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from xlstm_exp.models import LanguageModel
from xlstm_exp.models.attention_mixer import KVCache
from xlstm_exp.models.blocks import BlockState
from xlstm_exp.models.sizing import parse_count, solve_width
from xlstm_exp.models.state import state_bytes

# Each cell in the block the paper pairs it with; the baselines in the pre-norm Transformer block.
MODELS = {"lstm": "post", "slstm": "post", "mlstm": "pre", "transformer": "post"}
MIXER = {"transformer": "attention"}


def build(name: str, params: int, vocab: int, layers: int, heads: int) -> LanguageModel:
    def make(width: int) -> LanguageModel:
        return LanguageModel(
            vocab,
            d_model=width,
            num_layers=layers,
            num_heads=heads,
            mixer=MIXER.get(name, name),
            block=MODELS[name],
        )

    width, _ = solve_width(params, make, multiple=2 * heads)
    torch.manual_seed(0)
    return make(width).eval()


def state_at(model: LanguageModel, position: int, vocab: int) -> list:
    _, state = model(torch.randint(0, vocab, (1, 16)), return_state=True)
    if "attention" not in model.layer_mixers:
        return state
    grown = []
    for block in state:
        k = torch.randn(*block.mixer.k.shape[:2], position, block.mixer.k.shape[3])
        grown.append(BlockState(block.conv, KVCache(k, torch.randn_like(k))))
    return grown


@torch.no_grad()
def step_latency_ms(model: LanguageModel, state: list, vocab: int, steps: int) -> float:
    token = torch.randint(0, vocab, (1,))
    for _ in range(3):  # warm-up
        model.step(token, state)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        _, state = model.step(token, state)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="10M", help="matched parameter count per model")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--positions", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per point (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = {}
    for name in MODELS:
        model = build(name, parse_count(args.params), args.vocab, args.layers, args.heads)
        for position in args.positions:
            state = state_at(model, position, args.vocab)
            latency = step_latency_ms(model, state, args.vocab, args.steps)
            rows[name, position] = (latency, state_bytes(state) / 2**20)
            print(
                f"{name:12s} position {position:6d}: {latency:7.2f} ms/token, "
                f"state {rows[name, position][1]:8.2f} MiB",
                flush=True,
            )

    machine = f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}"
    header = " | ".join(f"{p:,}" for p in args.positions)
    lines = [
        f"Per-token generation latency, ms (state memory, MiB) at context position; "
        f"models at {args.params} parameters, {args.layers} blocks, vocab {args.vocab}; "
        f"{machine}; {date.today()}.",
        "",
        f"| model | {header} |",
        "|---" * (len(args.positions) + 1) + "|",
    ]
    for name in MODELS:
        cells = " | ".join(
            f"{rows[name, p][0]:.2f} ({rows[name, p][1]:.2f})" for p in args.positions
        )
        lines.append(f"| {name} | {cells} |")
    table = "\n".join(lines)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{date.today()}-generation-latency"
    stem.with_suffix(".md").write_text(table + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in MODELS:
        axes[0].plot(args.positions, [rows[name, p][0] for p in args.positions], "o-", label=name)
        axes[1].plot(args.positions, [rows[name, p][1] for p in args.positions], "o-", label=name)
    for ax, label in zip(axes, ["ms per token", "state memory (MiB)"], strict=True):
        ax.set(xscale="log", yscale="log", xlabel="context position", ylabel=label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    print(f"wrote {stem}.md and .png")


if __name__ == "__main__":
    main()
