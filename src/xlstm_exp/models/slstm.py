"""Functional sLSTM kernel (Beck et al. 2024, arXiv 2405.04517, Sec. 2.2 and App. A.2).

The recurrence h_{t-1} -> gates makes the sLSTM inherently sequential, so there is only a
recurrent form: a Python loop over time steps with one batched matmul per step.
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class SLSTMState(NamedTuple):
    """sLSTM memory, each ``(B, NH, DH)``: cell c, normaliser n, stabiliser m, last output h.

    c and n are stored divided by exp(m); m = -inf means empty memory.
    """

    c: Tensor
    n: Tensor
    m: Tensor
    h: Tensor


def slstm_recurrent(
    i: Tensor,
    f: Tensor,
    z: Tensor,
    o: Tensor,
    R: Tensor,
    state: SLSTMState | None = None,
) -> tuple[Tensor, SLSTMState]:
    """Run the stabilised sLSTM over a sequence; returns h ``(B, NH, S, DH)`` and the final state.

    i, f, z, o are the input-side gate pre-activations ``(B, NH, S, DH)``; R ``(4, NH, DH, DH)``
    holds the block-diagonal recurrent weights per gate (order i, f, z, o) and head, applied as
    ``h_{t-1} @ R[g]`` per head. Computes in at least float32; m carries no gradient because
    c/n does not depend on it.
    """
    batch, heads, _, dh = i.shape
    dtype = torch.promote_types(i.dtype, torch.float32)
    # Autocast would recast the per-step matmul to bf16/fp16 and compound the error over time.
    with torch.autocast(i.device.type, enabled=False):
        # Gates side by side on the feature axis: one matmul per step serves all four.
        pre = torch.cat([i, f, z, o], dim=-1).to(dtype)
        r = R.to(dtype).permute(1, 2, 0, 3).reshape(heads, dh, 4 * dh)
        if state is None:
            # Empty memory with m = -inf: the first step gets m_1 = ĩ_1, i' = 1 and n_1 = 1,
            # which the official kernel reaches with its n == 0 rule. m = 0 instead would let
            # a very negative first input gate underflow n_1 to 0 and give h = 0/0.
            zeros = pre.new_zeros(batch, heads, dh)
            c, n, m, h = zeros, zeros, pre.new_full((batch, heads, dh), -math.inf), zeros
        else:
            c, n, m, h = (x.to(dtype) for x in state)

        hs = []
        for x in pre.unbind(2):
            gates = x + (h.unsqueeze(-2) @ r).squeeze(-2)
            ig, fg, zg, og = gates.chunk(4, dim=-1)
            log_f = F.logsigmoid(fg)
            m_new = torch.maximum(log_f + m, ig).detach()
            write = torch.exp(ig - m_new)
            decay = torch.exp(log_f + m - m_new)
            c = decay * c + write * torch.tanh(zg)
            # n >= 1 by induction: m_new equals one of the two exponents, so write or decay is 1.
            n = decay * n + write
            h = torch.sigmoid(og) * c / n
            m = m_new
            hs.append(h)
        return torch.stack(hs, dim=2).to(i.dtype), SLSTMState(c, n, m, h)
