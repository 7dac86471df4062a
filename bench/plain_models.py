"""Plain-PyTorch references for the LSTM and Transformer baselines.

The same networks as the project's `lstm` and `transformer` models in post-up-projection blocks
(pre-norm residual mixer, gated GeLU MLP, final norm, untied head; rotary positions for
attention), written the short way: `nn.LSTM` and `scaled_dot_product_attention` called directly,
no registry, no state plumbing. Equal parameters and equal arithmetic, so a throughput gap
between them and the project's models is the project's overhead.
"""

import torch
import torch.nn.functional as F
from torch import nn


def _rotary(x: torch.Tensor) -> torch.Tensor:
    dh = x.shape[-1]
    inv_freq = 1e4 ** (-torch.arange(0, dh, 2, dtype=torch.float32) / dh)
    angles = torch.outer(torch.arange(x.shape[2], dtype=torch.float32), inv_freq)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class PlainAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(_rotary(q), _rotary(k), v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, s, d))


class PlainLSTM(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.lstm = nn.LSTM(d, d, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class PlainBlock(nn.Module):
    def __init__(self, d: int, heads: int, mixer: type[nn.Module]):
        super().__init__()
        hidden = 8 * -(-d // 6)  # 4/3 of d rounded up to a multiple of 8, as the project's MLP
        self.norm1, self.norm2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.mixer = mixer(d, heads)
        self.up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        gate, up = self.up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.gelu(gate) * up)


class PlainLM(nn.Module):
    """`mixer` is "lstm" or "attention"."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int, mixer: str):
        super().__init__()
        cls = {"lstm": PlainLSTM, "attention": PlainAttention}[mixer]
        self.embedding = nn.Embedding(vocab, d)
        self.blocks = nn.Sequential(*(PlainBlock(d, heads, cls) for _ in range(layers)))
        self.norm = nn.LayerNorm(d, bias=False)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.embedding(idx))))
