"""The language-model stack: embedding -> residual blocks -> final norm -> vocabulary head."""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import nn

from xlstm_exp.models.blocks import BlockState, build_block, resolve_block
from xlstm_exp.models.init import InitScales, small_init_
from xlstm_exp.models.pretrained_config import WEIGHTS_FILE, check_pretrained_config
from xlstm_exp.models.registry import MIXERS, check_mixer_options, mixer_class
from xlstm_exp.models.weights_file import load_weights, save_weights
from xlstm_exp.user_error import UserError


def slstm_positions(num_layers: int, slstm_at: Sequence[int] | str | None) -> list[int]:
    """Which blocks are sLSTM blocks in an xLSTM[a:b] mix.

    `slstm_at` is a list of 0-based block indices (the official code's convention), `"all"`, or a
    paper-style ratio `"a:b"` (a mLSTM blocks per b sLSTM blocks), which spreads
    `round(num_layers * b / (a + b))` sLSTM blocks evenly over the stack.
    """
    if slstm_at is None:
        return []
    if isinstance(slstm_at, str):
        if slstm_at == "all":
            return list(range(num_layers))
        try:
            a, b = (float(part) for part in slstm_at.split(":"))
        except ValueError:
            a = b = -1.0  # not two numbers: refused below
        if a < 0 or b < 0 or a + b == 0:
            raise UserError(
                f"model.slstm_at={slstm_at} is neither a ratio a:b of non-negative numbers nor "
                "'all'; pass e.g. model.slstm_at=7:1 or a list of block indices"
            )
        count = round(num_layers * b / (a + b))
        return sorted({int((j + 0.5) * num_layers / count) for j in range(count)})
    positions = sorted(int(p) for p in slstm_at)
    if any(not 0 <= p < num_layers for p in positions):
        raise UserError(
            f"model.slstm_at={positions} is out of range for model.num_layers={num_layers}; "
            f"give block indices from 0 to {num_layers - 1}"
        )
    return positions


def layer_blocks(
    num_layers: int,
    mixer: str,
    block: str | Mapping,
    slstm_at: Sequence[int] | str | None = None,
    slstm_block: str | Mapping | None = None,
    mix_with: str = "slstm",
) -> list[tuple[str, str | Mapping]]:
    """(mixer, block spec) of every layer. In an xLSTM[a:b] mix the layers at `slstm_at` run
    `mix_with` (the paper's sLSTM), built as `slstm_block` when it is given; every other layer
    runs `mixer` in `block`. Both cells of a mix must be declared `Mixer.mixable`."""
    mixed = set(slstm_positions(num_layers, slstm_at))
    if mixed:
        refused = [name for name in (mixer, mix_with) if not mixer_class(name).mixable]
        if refused:
            mixable = sorted(name for name, cls in MIXERS.items() if cls.mixable)
            raise UserError(
                f"{', '.join(refused)} cannot be mixed into an xLSTM[a:b] stack "
                f"(model.mixer={mixer}, model.mix_with={mix_with}, model.slstm_at); "
                f"mixable cells: {', '.join(mixable)}"
            )
    mixed_block = block if slstm_block is None else slstm_block
    return [(mix_with, mixed_block) if i in mixed else (mixer, block) for i in range(num_layers)]


def width_multiple(num_heads: int, layers: list[tuple[str, str | Mapping]]) -> int:
    """What `d_model` must be a multiple of: post-up-projection blocks run their mixer at
    `d_model`, which must suit its heads; pre-up-projection blocks round their own inner width."""
    multiple = 1
    for name, spec in layers:
        if resolve_block(spec, name)[0] == "post":
            multiple = math.lcm(multiple, mixer_class(name).width_multiple(num_heads))
    return multiple


class LanguageModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="xlstm-exp",
    tags=["xlstm", "text-generation"],
    paper_url="https://arxiv.org/abs/2405.04517",
):
    """A causal language model built from one mixer kind and one block kind per layer.

    `mixer` names a registered mixer (`registry.MIXERS`); `block` is a block spec (see
    `blocks.resolve_block`): `auto`, the default, puts every mixer in its paper block, `pre` or
    `post` forces one kind on every layer. For xLSTM[a:b] mixes, `slstm_at` turns some blocks
    into `mix_with` blocks (sLSTM), built as `slstm_block` (default: as `block` says).
    `mixer_options` maps a mixer name to extra keyword arguments for it. `backend` picks the
    kernels of the mixers that have several (`auto`, `torch`, `triton`; see `models.backend`).

    `save_pretrained`, `from_pretrained` and `push_to_hub` come from huggingface_hub's mixin,
    which records the constructor's arguments as `config.json`; the weights go to
    `model.safetensors` with a digest of the tensors in its header (`models.weights_file`).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.0,
        mixer: str = "mlstm",
        block: str | Mapping = "auto",
        slstm_at: Sequence[int] | str | None = None,
        slstm_block: str | Mapping | None = None,
        mix_with: str = "slstm",
        mixer_options: Mapping[str, Mapping] | None = None,
        tie_weights: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        self.d_model = d_model
        mixer_class(mixer)  # an unknown name fails here, with the valid ones
        unknown = sorted(set(mixer_options or {}) - set(MIXERS))
        if unknown:
            raise UserError(
                f"model.mixer_options names unknown mixers {unknown}; known: {sorted(MIXERS)}"
            )
        mixer_options = {name: dict((mixer_options or {}).get(name) or {}) for name in MIXERS}
        for name, options in mixer_options.items():
            check_mixer_options(name, options)
        for name, cls in MIXERS.items():
            if cls.has_kernel_backends:
                mixer_options[name]["backend"] = backend
        layers = layer_blocks(num_layers, mixer, block, slstm_at, slstm_block, mix_with)
        self.layer_mixers = [name for name, _ in layers]
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            build_block(spec, d_model, name, num_heads, dropout, mixer_options[name])
            for name, spec in layers
        )
        self.norm = nn.LayerNorm(d_model, bias=False)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.reset_parameters()
        if tie_weights:
            self.head.weight = self.embedding.weight

    @property
    def block_kinds(self) -> list[str]:
        """The block kind (`pre`, `post`) of every layer, as built."""
        return [block.kind for block in self.blocks]

    @property
    def block_label(self) -> str:
        """The block kinds the stack uses, e.g. `post`, or `pre+post` for a paper xLSTM[a:b]."""
        return "+".join(dict.fromkeys(self.block_kinds))

    @property
    def is_recurrent(self) -> bool:
        """Whether every layer carries a fixed-size state (`Mixer.is_recurrent`), so that a
        stream can be scored window after window from the state the last one ended in."""
        return all(block.mixer.is_recurrent for block in self.blocks)

    def reset_parameters(self) -> None:
        """The official xLSTM initialisation (xlstm 2.0.6 `xLSTMLMModel.reset_parameters`):
        small-init embedding and head, unit norms, and each block as its official layer does,
        told its depth (see `models.init`)."""
        small_init_(self.embedding.weight, InitScales(self.d_model))
        if self.head.weight is not self.embedding.weight:
            small_init_(self.head.weight, InitScales(self.d_model))
        nn.init.ones_(self.norm.weight)
        for index, block in enumerate(self.blocks):
            block.init_weights(InitScales(self.d_model, len(self.blocks), index))

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count; `non_embedding` leaves out the token embedding and the head."""
        params = {id(p): p for p in self.parameters()}
        if non_embedding:
            params.pop(id(self.embedding.weight), None)
            params.pop(id(self.head.weight), None)
        return sum(p.numel() for p in params.values())

    def forward(
        self,
        input_ids: torch.Tensor,
        state: list[BlockState] | None = None,
        return_state: bool = False,
        positions: torch.Tensor | None = None,
    ):
        """Logits `(B, S, vocab)` for `input_ids` `(B, S)`; with `return_state`, also the state
        after the last token, which a later call can continue from. With `positions`, a `(B, S)`
        boolean mask, only the logits there, `(N, vocab)` in row-major order: at a large
        vocabulary the head dominates the cost, and tasks score a few positions per sequence."""
        x = self.dropout(self.embedding(input_ids))
        new_state = []
        for i, block in enumerate(self.blocks):
            x, block_state = block(x, None if state is None else state[i])
            new_state.append(block_state)
        if positions is not None:
            x = x[positions]
        logits = self.head(self.norm(x))
        return (logits, new_state) if return_state else logits

    def step(self, token_ids: torch.Tensor, state: list[BlockState] | None):
        """One token per sequence, `(B,)` -> logits `(B, vocab)` and the new state."""
        logits, state = self.forward(token_ids.view(-1, 1), state, return_state=True)
        return logits[:, 0], state

    def _save_pretrained(self, save_directory: Path) -> None:
        save_weights(self, Path(save_directory) / WEIGHTS_FILE)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict | None = None,
        map_location: str = "cpu",
        **options,
    ) -> "LanguageModel":
        """The mixin's loading step: the config is checked first, and every weight must be in
        the file (the mixin's own step loads what it finds, unless told `strict`). `model_id`
        is a folder, or a Hub repo whose config.json the mixin has already fetched."""
        folder = Path(model_id)
        if not folder.is_dir():
            weights = hf_hub_download(
                model_id,
                WEIGHTS_FILE,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
            )
            folder = Path(weights).parent
        arguments = [name for name in cls._hub_mixin_init_parameters if name != "self"]
        check_pretrained_config(config, folder, arguments)
        try:
            model = cls(**options)
        except UserError as error:
            raise UserError(f"{folder / 'config.json'}: {error}") from error
        load_weights(model, folder / WEIGHTS_FILE, map_location)
        return model.eval()
