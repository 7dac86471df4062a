"""Depthwise causal convolution along time, with a buffer for step-wise use."""

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv1d(nn.Module):
    """Depthwise conv over the time axis of `(B, S, C)` inputs; output t sees inputs <= t only.

    The state is the last `kernel_size - 1` inputs, so a sequence processed in pieces (or token by
    token) gives the same outputs as in one piece.
    """

    def __init__(self, channels: int, kernel_size: int = 4):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=True)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            state = x.new_zeros(x.shape[0], self.kernel_size - 1, x.shape[2])
        padded = torch.cat([state.to(x.dtype), x], dim=1)
        if x.dtype == torch.float64:
            # PyTorch's depthwise conv1d has no fast float64 path on the CPU: the same sum over
            # the few taps is orders of magnitude faster there. In float32 and bf16 conv1d is
            # the faster of the two.
            length, weight = x.shape[1], self.conv.weight[:, 0]
            y = self.conv.bias + sum(
                padded[:, k : k + length] * weight[:, k] for k in range(self.kernel_size)
            )
        else:
            y = F.conv1d(
                padded.transpose(1, 2), self.conv.weight, self.conv.bias, groups=self.conv.groups
            ).transpose(1, 2)
        return y, padded[:, padded.shape[1] - (self.kernel_size - 1) :]
