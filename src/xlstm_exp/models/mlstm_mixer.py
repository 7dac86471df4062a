"""mLSTM mixer: the matrix-memory cell with its head-wise projections, gates and output norm."""

import math

import torch
from torch import nn

from xlstm_exp.models import triton as triton_kernels  # loads Triton only when called
from xlstm_exp.models.backend import check_backend, run_kernel
from xlstm_exp.models.block_diagonal import BlockDiagonalLinear
from xlstm_exp.models.init import InitScales, small_init_
from xlstm_exp.models.mixer import HEADS_HINT, Mixer
from xlstm_exp.models.mlstm import (
    MLSTMState,
    mlstm_chunkwise_with_state,
    mlstm_parallel_with_state,
    mlstm_step,
)
from xlstm_exp.models.norms import MultiHeadNorm
from xlstm_exp.models.registry import register_mixer
from xlstm_exp.models.triton import MLSTM_CHUNK_SIZES
from xlstm_exp.user_error import UserError


def mlstm_chunkwise_on_triton(*args, **kwargs) -> tuple[torch.Tensor, MLSTMState]:
    """The Triton kernel, looked up when called: importing its module needs Triton."""
    return triton_kernels.mlstm_chunkwise_triton(*args, **kwargs)


@register_mixer("mlstm")
class MLSTMMixer(Mixer):
    """The mLSTM layer of the paper's pre-up-projection block (Fig. 11).

    q and k come from the conv branch, v from the un-convolved input, each through a
    block-diagonal projection; the input and forget gates are one scalar per head from a linear
    map of (q, k, v). The cell output is normalised per head and gets a learnable skip from the
    conv branch; the block gates the result with its other branch. `impl` picks the training
    form: `chunkwise` (linear in the sequence length) or `parallel` (quadratic, one chunk);
    `backend` the chunkwise kernel (see `xlstm_exp.models.backend`). `chunk_size` is one of
    `MLSTM_CHUNK_SIZES` on every backend, so that one config runs on the CPU and the GPU alike.
    """

    reads_conv_branch = True
    paper_block = "pre"
    is_recurrent = True
    state_type = MLSTMState
    mixable = True
    has_kernel_backends = True

    def __init__(
        self,
        width: int,
        num_heads: int,
        dropout: float = 0.0,
        qkv_block_size: int = 4,
        chunk_size: int = 64,
        impl: str = "chunkwise",
        backend: str = "auto",
    ):
        super().__init__()
        if impl not in ("chunkwise", "parallel"):
            raise UserError(
                f"model.mixer_options.mlstm.impl={impl}: mLSTM impl must be 'chunkwise' or "
                "'parallel'"
            )
        if width % num_heads:
            raise UserError(f"width {width} does not split into {num_heads} heads; {HEADS_HINT}")
        if chunk_size not in MLSTM_CHUNK_SIZES:
            raise UserError(
                f"mLSTM chunk_size={chunk_size} must be one of "
                f"{', '.join(map(str, MLSTM_CHUNK_SIZES))} (the Triton kernel's tile sizes)"
            )
        self.num_heads = num_heads
        self.chunk_size = chunk_size
        self.impl = impl
        self.backend = check_backend(backend)
        self.q_proj = BlockDiagonalLinear(width, qkv_block_size)
        self.k_proj = BlockDiagonalLinear(width, qkv_block_size)
        self.v_proj = BlockDiagonalLinear(width, qkv_block_size)
        self.igate = nn.Linear(3 * width, num_heads)
        self.fgate = nn.Linear(3 * width, num_heads)
        self.norm = MultiHeadNorm(width, num_heads)
        self.skip = nn.Parameter(torch.ones(width))
        self.init_weights(InitScales(d_model=width))

    @staticmethod
    def width_multiple(num_heads: int) -> int:
        """Whole heads, and whole 4-wide blocks of the q/k/v projections."""
        return math.lcm(4, num_heads)

    def init_weights(self, scales: InitScales) -> None:
        # Official mLSTMLayer/mLSTMCell.reset_parameters: q/k/v small-init. Gates start
        # input-independent; forget biases spread over [3, 6] (bias_linspace_init_) so the heads
        # start with long but different memory spans; input biases N(0, 0.1).
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            small_init_(proj.weight, scales)
        nn.init.zeros_(self.fgate.weight)
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, self.num_heads))
        nn.init.zeros_(self.igate.weight)
        nn.init.normal_(self.igate.bias, std=0.1)
        nn.init.ones_(self.skip)
        nn.init.ones_(self.norm.weight)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, x_conv: torch.Tensor, state=None):
        q, k, v = self.q_proj(x_conv), self.k_proj(x_conv), self.v_proj(x)
        qkv = torch.cat([q, k, v], dim=-1)
        igate, fgate = self.igate(qkv).transpose(1, 2), self.fgate(qkv).transpose(1, 2)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if state is not None and x.shape[1] == 1:
            h, state = mlstm_step(
                q[:, :, 0], k[:, :, 0], v[:, :, 0], igate[..., 0], fgate[..., 0], state
            )
            h = h.unsqueeze(2)
        elif state is None and self.impl == "parallel":
            h, state = mlstm_parallel_with_state(q, k, v, igate, fgate)
        else:
            # The Triton kernel sends no gradient into a carried state; one that needs it stays
            # on the PyTorch form.
            needs_state_grad = state is not None and any(s.requires_grad for s in state)
            h, state = run_kernel(
                "mLSTM chunkwise",
                "torch" if needs_state_grad else self.backend,
                x.device,
                mlstm_chunkwise_on_triton,
                mlstm_chunkwise_with_state,
                q,
                k,
                v,
                igate,
                fgate,
                chunk_size=self.chunk_size,
                state=state,
            )
        h = h.transpose(1, 2).flatten(-2)
        return self.norm(h) + self.skip * x_conv, state
