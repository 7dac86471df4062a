"""A LanguageModel from plain options, its size solved for a parameter target (fair
comparisons)."""

from collections.abc import Mapping

from torch import nn

from xlstm_exp.models.blocks import BLOCKS, resolve_block
from xlstm_exp.models.language_model import LanguageModel, layer_blocks, width_multiple
from xlstm_exp.models.sizing import SolvedSize, parse_count, solve_size


def with_up_width(block: str | Mapping, kind: str, up_width: int | None) -> str | Mapping:
    """`block` with `up_width` set for its `kind` of block (unchanged for None)."""
    if up_width is None:
        return block
    spec = {"kind": block} if isinstance(block, str) else dict(block)
    spec[kind] = {**(spec.get(kind) or {}), "up_width": up_width}
    return spec


def build_language_model(
    vocab_size: int,
    block: str | Mapping = "auto",
    target_params: str | int | None = None,
    **options,
) -> tuple[LanguageModel, SolvedSize | None]:
    """`LanguageModel(vocab_size, block=block, **options)`; with `target_params`, `d_model`
    (and where needed the up-projection width of the main mixer's blocks) is solved so that
    the total parameter count lands within 2% of it. Returns the model and the solved size."""
    if target_params is None:
        return LanguageModel(vocab_size, block=block, **options), None
    mixer, num_heads = options.get("mixer", "mlstm"), options.get("num_heads", 4)
    layout = {k: options[k] for k in ("slstm_at", "slstm_block", "mix_with") if k in options}
    layers = layer_blocks(options.get("num_layers", 2), mixer, block, **layout)
    kind, block_options = resolve_block(block, mixer)
    block_class = BLOCKS[kind]

    def make(width: int, up_width: int | None, backend: str = "torch") -> LanguageModel:
        # The search counts with PyTorch kernels: the count is the same, and widths it only
        # tries must not trip the Triton kernels' limits (nor warn about them).
        spec = with_up_width(block, kind, up_width)
        return LanguageModel(
            vocab_size, block=spec, **{**options, "d_model": width, "backend": backend}
        )

    def default_up(width: int) -> int:
        return block_options.get("up_width") or block_class.default_up_width(
            width, num_heads, block_options.get("proj_factor"), mixer
        )

    size = solve_size(
        parse_count(target_params),
        make,
        multiple=width_multiple(num_heads, layers),
        up_multiple=block_class.up_width_step(num_heads, mixer),
        default_up=default_up,
    )
    return make(size.width, size.up_width, options.get("backend", "auto")), size


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total and non-embedding parameters (the latter as the model defines it, if it does)."""
    total = sum(p.numel() for p in model.parameters())
    non_embedding = total
    if isinstance(model, LanguageModel):
        non_embedding = model.num_parameters(non_embedding=True)
    return {"params": total, "params_non_embedding": non_embedding}
