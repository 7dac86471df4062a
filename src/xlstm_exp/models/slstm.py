"""Functional sLSTM kernel (Beck et al. 2024, arXiv 2405.04517, Sec. 2.2 and App. A.2).

The recurrence h_{t-1} -> gates makes the sLSTM inherently sequential, so there is only a
recurrent form. On a CPU the cost is per-operation overhead, not arithmetic: a step touches a
few thousand numbers, and autograd would record ~20 nodes per step and replay them one by one.
So forward and backward through time are written by hand as an autograd Function: the forward
loop runs one matmul and a dozen fused element-wise operations per step, writing into
preallocated buffers; the backward computes every per-step derivative factor for all steps at
once, leaving a loop of seven operations per step, and the gradient of the recurrent weights as
one matmul over the whole sequence.
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


class _SLSTMRecurrence(torch.autograd.Function):
    """The recurrence in head-major layout: gate pre-activations ``(S, NH, B, 4, DH)`` (order
    i, f, z, o), recurrent weights ``(NH, DH, 4 * DH)``, states ``(NH, B, DH)``.

    Returns all outputs h ``(S, NH, B, DH)`` and the final c, n, m. Gradients flow to the gate
    pre-activations, the recurrent weights and the initial c, n, h, not through any m (h does
    not depend on m) nor into the final c, n, m.
    """

    @staticmethod
    def forward(ctx, pre: Tensor, r: Tensor, c0: Tensor, n0: Tensor, m0: Tensor, h0: Tensor):
        steps, heads, batch, _, dh = pre.shape
        gates = torch.empty_like(pre)  # pre-activations including the recurrent part
        c, n, m, h = (x.new_empty(steps + 1, heads, batch, dh) for x in (c0, n0, m0, h0))
        c[0], n[0], m[0], h[0] = c0, n0, m0, h0
        # Views per step made once: indexing inside the loop would cost as much as the maths.
        flat_pre = pre.view(steps, heads, batch, 4 * dh).unbind(0)
        flat_gates = gates.view(steps, heads, batch, 4 * dh).unbind(0)
        i, f, z, o = (x.unbind(0) for x in gates.unbind(3))
        c_at, n_at, m_at, h_at = (x.unbind(0) for x in (c, n, m, h))
        for t in range(steps):
            torch.baddbmm(flat_pre[t], h_at[t], r, out=flat_gates[t])
            decay_exponent = F.logsigmoid(f[t]).add_(m_at[t])
            torch.maximum(decay_exponent, i[t], out=m_at[t + 1])
            write = torch.sub(i[t], m_at[t + 1]).exp_()
            decay = decay_exponent.sub_(m_at[t + 1]).exp_()
            # n >= 1 by induction: m_t equals one of the two exponents, so write or decay is 1.
            torch.addcmul(write, decay, n_at[t], out=n_at[t + 1])
            torch.mul(decay, c_at[t], out=c_at[t + 1]).addcmul_(write, torch.tanh(z[t]))
            torch.sigmoid(o[t], out=h_at[t + 1]).mul_(c_at[t + 1]).div_(n_at[t + 1])
        ctx.save_for_backward(gates, r, c, n, m, h)
        final = c[steps], n[steps], m[steps]
        ctx.mark_non_differentiable(*final)
        return h[1:], *final

    @staticmethod
    def backward(ctx, grad_h: Tensor, *_):
        gates, r, c, n, m, h = ctx.saved_tensors
        steps, heads, batch, _, dh = gates.shape
        i, f, z, o = gates.unbind(3)
        log_f = F.logsigmoid(f)
        write = torch.exp(i - m[1:])
        decay = torch.exp(log_f + m[:-1] - m[1:])
        z_act, o_act = torch.tanh(z), torch.sigmoid(o)
        f_slope = torch.sigmoid(-f) * decay  # d decay / d f, divided by the memory it scales
        # Each step's gate gradients are fixed multiples of (dc_t, dn_t, dh_t):
        # di = w z dc + w dn, df = f' c_{t-1} dc + f' n_{t-1} dn, dz = w (1 - z^2) dc, do = o' dh.
        from_c = torch.stack([write * z_act, c[:-1] * f_slope, write * (1 - z_act.square())], 3)
        from_n = torch.stack([write, n[:-1] * f_slope], dim=3)
        from_h = c[1:] / n[1:] * o_act * (1 - o_act)
        # dh_t adds to (dc_t, dn_t) through h_t = o c_t / n_t.
        into_memory = torch.stack([o_act / n[1:], -h[1:] / n[1:]], dim=3)
        carry = decay.unsqueeze(3)

        grad_gates = torch.empty_like(gates)
        flat_grad_gates = grad_gates.view(steps, heads, batch, 4 * dh)
        grad_gates_at = flat_grad_gates.unbind(0)
        grad_c_gates = grad_gates[:, :, :, :3].unbind(0)
        grad_n_gates = grad_gates[:, :, :, :2].unbind(0)
        grad_o_gate = grad_gates[:, :, :, 3].unbind(0)
        from_c, from_n, from_h = from_c.unbind(0), from_n.unbind(0), from_h.unbind(0)
        into_memory, carry, grad_h = into_memory.unbind(0), carry.unbind(0), grad_h.unbind(0)
        r_t = r.transpose(1, 2)
        grad_memory = gates.new_zeros(heads, batch, 2, dh)  # (dc, dn) flowing back in time
        grad_c, grad_n = grad_memory[:, :, :1], grad_memory[:, :, 1:]
        grad_h_t = grad_h[steps - 1]
        for t in range(steps - 1, -1, -1):
            grad_memory.addcmul_(grad_h_t.unsqueeze(2), into_memory[t])
            torch.mul(from_c[t], grad_c, out=grad_c_gates[t])
            grad_n_gates[t].addcmul_(from_n[t], grad_n)
            torch.mul(grad_h_t, from_h[t], out=grad_o_gate[t])
            grad_memory.mul_(carry[t])
            if t:
                grad_h_t = torch.baddbmm(grad_h[t - 1], grad_gates_at[t], r_t)
        grad_r = grad_h0 = None
        if ctx.needs_input_grad[1]:
            inputs = h[:-1].permute(1, 3, 0, 2).reshape(heads, dh, steps * batch)
            grad_r = inputs @ flat_grad_gates.permute(1, 0, 2, 3).reshape(heads, -1, 4 * dh)
        if ctx.needs_input_grad[5]:
            grad_h0 = flat_grad_gates[0] @ r_t
        return grad_gates, grad_r, grad_memory[:, :, 0], grad_memory[:, :, 1], None, grad_h0


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
    ``h_{t-1} @ R[g]`` per head. Computes in at least float32. Gradients reach the inputs, R and
    an initial state's c, n, h; the final state's c, n, m carry none (only its h does).
    """
    gates = torch.stack([i, f, z, o], dim=3).transpose(1, 2)
    h, state = slstm_recurrent_gates(gates, R, state)
    return h.transpose(1, 2), state


def slstm_recurrent_gates(
    gates: Tensor, R: Tensor, state: SLSTMState | None = None
) -> tuple[Tensor, SLSTMState]:
    """`slstm_recurrent` with the gate pre-activations stacked as ``(B, S, NH, 4, DH)`` (the
    layout the mixer's projections produce); returns h ``(B, S, NH, DH)`` and the final state."""
    batch, _, heads, _, dh = gates.shape
    dtype = torch.promote_types(gates.dtype, torch.float32)
    # Autocast would recast the per-step matmul to bf16/fp16 and compound the error over time.
    with torch.autocast(gates.device.type, enabled=False):
        pre = gates.to(dtype).permute(1, 2, 0, 3, 4).contiguous()
        r = R.to(dtype).permute(1, 2, 0, 3).reshape(heads, dh, 4 * dh)
        if state is None:
            # Empty memory with m = -inf: the first step gets m_1 = ĩ_1, i' = 1 and n_1 = 1,
            # which the official kernel reaches with its n == 0 rule. m = 0 instead would let
            # a very negative first input gate underflow n_1 to 0 and give h = 0/0.
            zeros = pre.new_zeros(heads, batch, dh)
            c0, n0, m0, h0 = zeros, zeros, pre.new_full((heads, batch, dh), -math.inf), zeros
        else:
            c0, n0, m0, h0 = (x.to(dtype).transpose(0, 1) for x in state)
        h, c, n, m = _SLSTMRecurrence.apply(pre, r, c0, n0, m0, h0)
        h = h.permute(2, 0, 1, 3)
        final = SLSTMState(*(x.transpose(0, 1) for x in (c, n, m)), h[:, -1])
        return h.to(gates.dtype), final
