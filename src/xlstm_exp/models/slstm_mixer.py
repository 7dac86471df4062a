"""sLSTM mixer: the scalar-memory cell with exponential gating and head-wise recurrence."""

import torch
from torch import nn

from xlstm_exp.models import triton as triton_kernels  # loads Triton only when called
from xlstm_exp.models.backend import check_backend, run_kernel, warn_once
from xlstm_exp.models.block_diagonal import BlockDiagonalLinear
from xlstm_exp.models.init import InitScales, powerlaw_forget_bias, small_init_
from xlstm_exp.models.mixer import HEADS_HINT, Mixer
from xlstm_exp.models.norms import MultiHeadNorm
from xlstm_exp.models.registry import register_mixer
from xlstm_exp.models.slstm import SLSTMState, slstm_recurrent_gates
from xlstm_exp.models.triton import SLSTM_MAX_HEAD_DIM
from xlstm_exp.user_error import UserError


def slstm_recurrent_gates_triton(
    gates: torch.Tensor, R: torch.Tensor, state: SLSTMState | None = None
) -> tuple[torch.Tensor, SLSTMState]:
    """`slstm_recurrent_gates` on the Triton kernel, which takes each gate head-major."""
    i, f, z, o = gates.permute(3, 0, 2, 1, 4)  # each (B, NH, S, DH)
    h, state = triton_kernels.slstm_recurrent_triton(i, f, z, o, R, state)
    return h.transpose(1, 2), state


@register_mixer("slstm")
class SLSTMMixer(Mixer):
    """The sLSTM layer of the paper's post-up-projection block (Fig. 10).

    Input and forget gates read the conv branch, cell input and output gate the plain input,
    each through a head-wise (block-diagonal) projection; the recurrence mixes memory only within
    a head. The output is normalised per head. `backend` picks the recurrence kernel (see
    `xlstm_exp.models.backend`); the Triton kernel takes heads of up to `SLSTM_MAX_HEAD_DIM`.
    """

    reads_conv_branch = True
    paper_block = "post"
    is_recurrent = True
    state_type = SLSTMState
    mixable = True
    has_kernel_backends = True

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0, backend: str = "auto"):
        super().__init__()
        self.backend = check_backend(backend)
        if width % num_heads:
            raise UserError(f"width {width} does not split into {num_heads} heads; {HEADS_HINT}")
        self.num_heads = num_heads
        head_dim = width // num_heads
        self.fits_triton = head_dim <= SLSTM_MAX_HEAD_DIM
        if not self.fits_triton:
            too_wide = (
                f"sLSTM head dim {head_dim} (width {width} / num_heads {num_heads}) is over the "
                f"Triton kernel's limit of {SLSTM_MAX_HEAD_DIM}"
            )
            more_heads = f"raise num_heads to at least {-(-width // SLSTM_MAX_HEAD_DIM)}"
            if self.backend == "triton":
                raise UserError(f"{too_wide}: {more_heads}, or use backend=torch")
            if self.backend == "auto":
                warn_once(
                    f"{too_wide}, so CUDA runs will use the PyTorch recurrence (slower); "
                    f"{more_heads} to use the kernel"
                )
        # One matmul per input: (i, f) from the conv branch, (z, o) from the plain input.
        self.if_proj = BlockDiagonalLinear(width, head_dim, maps=2)
        self.zo_proj = BlockDiagonalLinear(width, head_dim, maps=2)
        self.bias = nn.Parameter(torch.empty(num_heads, 4, head_dim))  # gates i, f, z, o
        self.recurrent = nn.Parameter(torch.empty(4, num_heads, head_dim, head_dim))
        self.norm = MultiHeadNorm(width, num_heads)
        self.init_weights(InitScales(d_model=width))

    @staticmethod
    def width_multiple(num_heads: int) -> int:
        return num_heads

    def init_weights(self, scales: InitScales) -> None:
        # Official sLSTMLayer/sLSTMCell.reset_parameters: gate projections small-init; recurrent
        # weights zero (recurrent_weight_init="zeros"), so early training sees a gated
        # feed-forward cell and the recurrence grows only where it helps; forget biases by the
        # depth-dependent power law (bias_init="powerlaw_blockdependent"), other biases zero.
        small_init_(self.if_proj.weight, scales)
        small_init_(self.zo_proj.weight, scales)
        nn.init.zeros_(self.recurrent)
        nn.init.zeros_(self.bias)
        with torch.no_grad():
            self.bias[:, 1] = powerlaw_forget_bias(self.bias.shape[-1], scales)
        nn.init.ones_(self.norm.weight)

    def no_weight_decay(self) -> list[nn.Parameter]:
        # The official optimiser groups decay only parameters named "weight": neither the
        # recurrent kernel nor the head-wise gate biases.
        return [self.recurrent, self.bias]

    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state=None):
        batch, length, _ = x.shape
        per_head = (batch, length, self.num_heads, 2, -1)
        gates = torch.cat(
            [self.if_proj(x_conv).reshape(per_head), self.zo_proj(x).reshape(per_head)], 3
        )
        gates = gates + self.bias
        # The Triton kernel sends no gradient into a carried state, nor takes wide heads.
        needs_state_grad = state is not None and any(s.requires_grad for s in state)
        backend = self.backend if self.fits_triton and not needs_state_grad else "torch"
        h, state = run_kernel(
            "sLSTM recurrence",
            backend,
            x.device,
            slstm_recurrent_gates_triton,
            slstm_recurrent_gates,
            gates,
            self.recurrent,
            state,
        )
        return self.norm(h.flatten(-2)), state
