"""Causal multi-head self-attention with rotary positions (the Transformer baseline's mixer)."""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from xlstm_exp.models.init import InitScales, small_init_, wang_init_
from xlstm_exp.models.mixer import HEADS_HINT, Mixer
from xlstm_exp.models.registry import register_mixer
from xlstm_exp.user_error import UserError


class KVCache(NamedTuple):
    """Rotated keys and values of all positions seen so far, each `(B, NH, T, DH)`."""

    k: torch.Tensor
    v: torch.Tensor


def rotate(x: torch.Tensor, inv_freq: torch.Tensor, offset: int) -> torch.Tensor:
    """Rotary position embedding of `x` `(B, NH, S, DH)` for positions offset..offset+S-1."""
    positions = torch.arange(offset, offset + x.shape[2], device=x.device, dtype=inv_freq.dtype)
    angles = torch.outer(positions, inv_freq)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


@register_mixer("attention")
class AttentionMixer(Mixer):
    """Scaled-dot-product attention (PyTorch's fused kernels). Rotary positions instead of learned
    ones, so the model runs on sequences longer than it was trained on."""

    reads_conv_branch = False
    paper_block = "post"  # the usual pre-norm Transformer block
    is_recurrent = False
    state_type = KVCache

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0, rope_base: float = 1e4):
        super().__init__()
        if width % num_heads or (width // num_heads) % 2:
            raise UserError(
                f"width {width} must split into {num_heads} heads of even size; {HEADS_HINT}"
            )
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv_proj = nn.Linear(width, 3 * width, bias=False)
        self.out_proj = nn.Linear(width, width, bias=False)
        head_dim = width // num_heads
        inv_freq = rope_base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.init_weights(InitScales(d_model=width))

    @staticmethod
    def width_multiple(num_heads: int) -> int:
        """Heads of even size (rotary positions rotate pairs of features)."""
        return 2 * num_heads

    def init_weights(self, scales: InitScales) -> None:
        # The official code's scheme for any projection (GPT-NeoX's): small-init into the
        # heads, Wang-init back into the residual stream.
        small_init_(self.qkv_proj.weight, scales)
        for weight in self.output_projections():
            wang_init_(weight, scales)

    def output_projections(self) -> list[nn.Parameter]:
        return [self.out_proj.weight]

    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state: KVCache | None = None):
        batch, length, width = x_conv.shape
        qkv = self.qkv_proj(x_conv).view(batch, length, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        past = 0 if state is None else state.k.shape[2]
        q, k = rotate(q, self.inv_freq, past), rotate(k, self.inv_freq, past)
        if state is not None:
            k, v = torch.cat([state.k, k], dim=2), torch.cat([state.v, v], dim=2)
        # With a cache the causal mask is offset by the cached length (SDPA's is_causal aligns
        # the mask to the top-left, which is only right without a cache).
        mask = None
        if past and length > 1:
            mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device)
            mask = mask.tril(diagonal=past)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=not past and length > 1,
        )
        return self.out_proj(y.transpose(1, 2).reshape(batch, length, width)), KVCache(k, v)
