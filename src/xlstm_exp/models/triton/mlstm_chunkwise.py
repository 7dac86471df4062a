"""Chunkwise mLSTM in Triton, forward and backward (Beck et al. 2024, arXiv 2405.04517, App. A.3).

Same semantics as ``mlstm_chunkwise_with_state`` in ``xlstm_exp.models.mlstm``. Per (batch, head)
the sequence is cut into chunks of L steps; with b the cumulative log forget gate inside a chunk,
g its total and m the stabilisers:

- forward, states: C_{c+1} = exp(g + m_c - m_{c+1}) C_c
  + sum_j exp(g - b_j + i_j - m_{c+1}) v_j k_jᵀ (likewise n), one program per
  (batch-head, key block, value block) looping over the chunks;
- forward, outputs: per chunk the gated scores (q_i·k_j) exp(b_i - b_j + i_j - m_i) plus the
  incoming state weighted by exp(b_i + m_c - m_i), one program per (chunk, batch-head, value block);
- backward: the gradients of the chunk states by the reverse recurrence, then per chunk dq, dk
  (one kernel) and dv (another). The gate gradients need no kernel of their own: with the
  stabilisers fixed, h depends on q_t only through q_t exp(B_t) and on k_t only through
  k_t exp(i_t - B_t) (B the cumulative log forget gate over the sequence), so
  d i_t = k_t·dk_t and dB_t = q_t·dq_t - k_t·dk_t, and d log f is the reverse cumsum of dB.

States and all gate math stay in float32; matrix products take bfloat16 operands (float32
accumulation) for bfloat16 inputs on CUDA, and float32 operands otherwise (TF32 on CUDA when
``torch.get_float32_matmul_precision()`` allows it). The kernels (device code in
``mlstm_kernels`` and ``mlstm_grad_kernels``) run only as ``mlstm_launches`` describes them,
which is what ``ahead_of_time`` compiles for the GPUs it checks.
"""

import math
from typing import NamedTuple

import torch
import triton
from torch import Tensor

from xlstm_exp.models.mlstm import MLSTMState
from xlstm_exp.models.triton import MLSTM_CHUNK_SIZES
from xlstm_exp.models.triton.common import dot_settings
from xlstm_exp.models.triton.launch import Launch
from xlstm_exp.models.triton.mlstm_grad_kernels import (
    mlstm_bwd_qk_kernel,
    mlstm_bwd_states_kernel,
    mlstm_bwd_v_kernel,
)
from xlstm_exp.models.triton.mlstm_kernels import mlstm_fwd_output_kernel, mlstm_fwd_states_kernel


class MLSTMLaunches(NamedTuple):
    """The chunkwise mLSTM's kernels at one configuration, in launch order."""

    fwd_states: Launch
    fwd_output: Launch
    bwd_states: Launch
    bwd_qk: Launch
    bwd_v: Launch


# float32 products without TF32 run on CUDA cores, where Triton's dot keeps each thread's share
# of both operands over the whole reduction in registers: at L = 64 the L x L by L x 64 products
# already spill. There the chunks stop at this length, which also suits the arithmetic: the
# intra-chunk work grows with L, the state work does not, and these products are compute-bound.
FMA_MAX_CHUNK = 32


def _block(dim: int, most: int) -> int:
    """Feature block: a power of two, at least 16 (tl.dot's minimum), at most `most`."""
    return min(max(16, triton.next_power_of_2(dim)), most)


def mlstm_launches(
    head_dim_qk: int,
    head_dim_v: int,
    chunk: int,
    dtype: torch.dtype,
    on_cuda: bool = True,
    tf32: bool | None = None,
) -> MLSTMLaunches:
    """The five kernels as launched for inputs of `dtype`, the given head dims and chunks of
    `chunk` steps (see `dot_settings` for `tf32`); their ``L`` is the chunk length that runs,
    at most FMA_MAX_CHUNK for float32 products on CUDA cores. Head dims enter only through
    their blocks (BK, BV), so 64, 128 and 256 share every kernel."""
    dots = dot_settings(dtype, on_cuda, tf32)
    fma = on_cuda and not dots["BF16"] and dots["PRECISION"] == "ieee"
    L = min(chunk, FMA_MAX_CHUNK) if fma else chunk
    # The chunk kernels (output, dq/dk, dv) run one program per chunk and output block, each
    # recomputing the chunk's L x L products: output blocks of 64 keep that work from
    # multiplying. Their loops over the other head dim load L x step tiles next to the L x L
    # one: narrower at L = 128 and on CUDA cores, where those tiles are what spills.
    step = 16 if fma else 32 if L >= 128 else 64
    # dq and dk hold the most next to the L x L tile: with float32 operands at L = 128 their key
    # block narrows to 32 (twice the recomputed L x L products, no spilled tiles).
    qk_block = 32 if L >= 128 and not dots["BF16"] else 64
    # The state kernels scan all chunks, one program per state tile: 32 x 32 tiles give this
    # latency-bound scan four times the programs of 64 x 64 ones, and fit at L = 128.
    tile = 32
    # 8 warps spread the L x L tiles of long chunks. 2 stages: every loop prefetches one step;
    # the feature loops run 1 to 4 steps, and a third buffer took more shared memory than an
    # H100 has at L = 128.
    num_warps = 8 if L >= 64 else 4
    f32 = torch.float32
    gates = dict(ig_ptr=f32, fg_ptr=f32, m_ptr=f32)
    states = dict(C_ptr=f32, n_ptr=f32)
    backward = dict(den_ptr=f32, dhh_ptr=f32, dC_ptr=f32, **gates)

    def launch(kernel, most_k, most_v, **pointers):
        blocks = dict(BK=_block(head_dim_qk, most_k), BV=_block(head_dim_v, most_v))
        constexprs = dict(L=L, **blocks, **dots)
        floats = frozenset({"scale", "eps"})
        return Launch(kernel, constexprs, num_warps, pointers, floats, num_stages=2)

    return MLSTMLaunches(
        fwd_states=launch(
            mlstm_fwd_states_kernel, tile, tile, k_ptr=dtype, v_ptr=dtype, **gates, **states
        ),
        fwd_output=launch(
            mlstm_fwd_output_kernel,
            step,
            64,
            **dict.fromkeys(("q_ptr", "k_ptr", "v_ptr", "h_ptr"), dtype),
            den_ptr=f32,
            **gates,
            **states,
        ),
        bwd_states=launch(
            mlstm_bwd_states_kernel, tile, tile, q_ptr=dtype, dh_ptr=dtype, dn_ptr=f32, **backward
        ),
        bwd_qk=launch(
            mlstm_bwd_qk_kernel,
            qk_block,
            step,
            **dict.fromkeys(("q_ptr", "k_ptr", "v_ptr", "dh_ptr", "dq_ptr", "dk_ptr"), dtype),
            **dict.fromkeys(("dn_ptr", "qdq_ptr", "kdk_ptr"), f32),
            **states,
            **backward,
        ),
        bwd_v=launch(
            mlstm_bwd_v_kernel,
            step,
            64,
            **dict.fromkeys(("q_ptr", "k_ptr", "dh_ptr", "dv_ptr"), dtype),
            **backward,
        ),
    )


def _blocks(launch: Launch, DHK: int, DHV: int) -> tuple[int, int]:
    """How many key and value blocks `launch` cuts the head dims into."""
    return triton.cdiv(DHK, launch.constexprs["BK"]), triton.cdiv(DHV, launch.constexprs["BV"])


def _prepare_backward(launches: MLSTMLaunches, q, k, v, h, igate, fgate, C, n, m, den, eps):
    """Compile and load the backward kernels during the forward, so that one that cannot
    compile or fit on this device fails where backend=auto can still fall back, not in the
    middle of loss.backward(). Buffers of the forward stand in for the backward's own of the
    same dtypes (dh: h; dC, dn: C, n; dq, dk, dv: q, k, v; dhh, qdq, kdk: den)."""
    BH, NC = C.shape[0], C.shape[1] - 1
    S, DHK, DHV = q.shape[2], q.shape[3], v.shape[3]
    grid = (1, 1, 1)
    launches.bwd_states.prepare(grid, q, h, igate, fgate, m, den, den, C, n, S, NC, DHK, DHV, eps)
    launches.bwd_qk.prepare(
        grid, q, k, v, h, igate, fgate, C, n, m, den, den, C, n, q, k, den, den,
        BH, S, NC, DHK, DHV, DHK**-0.5, eps,
    )  # fmt: skip
    launches.bwd_v.prepare(
        grid, q, k, h, igate, fgate, m, den, den, C, v, S, NC, DHK, DHV, DHK**-0.5, eps
    )


class _MLSTMChunkwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, igate, fgate, init, chunk_size, eps):
        B, NH, S, DHK = q.shape
        DHV = v.shape[-1]
        # A short sequence is one chunk, padded only up to tl.dot's minimum of 16 rows.
        chunk = min(chunk_size, max(16, triton.next_power_of_2(S)))
        launches = mlstm_launches(DHK, DHV, chunk, q.dtype, q.is_cuda)
        NC = triton.cdiv(S, launches.fwd_states.constexprs["L"])
        BH = B * NH
        q, k, v, igate, fgate = (x.contiguous() for x in (q, k, v, igate, fgate))
        f32 = dict(device=q.device, dtype=torch.float32)
        C = torch.empty(BH, NC + 1, DHV, DHK, **f32)
        n = torch.empty(BH, NC + 1, DHK, **f32)
        m = torch.empty(BH, NC + 1, **f32)
        if init is None:
            C[:, 0], n[:, 0], m[:, 0] = 0.0, 0.0, -math.inf
        else:
            C[:, 0], n[:, 0], m[:, 0] = (x.reshape(BH, *x.shape[2:]) for x in init)
        h = torch.empty_like(v)
        den = torch.empty(BH, S, **f32)
        sizes = (S, NC, DHK, DHV, DHK**-0.5)
        launches.fwd_states(
            (BH, *_blocks(launches.fwd_states, DHK, DHV)), k, v, igate, fgate, C, n, m, *sizes
        )
        nbv = _blocks(launches.fwd_output, DHK, DHV)[1]
        launches.fwd_output((NC, BH, nbv), q, k, v, igate, fgate, C, n, m, h, den, *sizes, eps)
        if any(ctx.needs_input_grad):
            _prepare_backward(launches, q, k, v, h, igate, fgate, C, n, m, den, eps)
        ctx.save_for_backward(q, k, v, igate, fgate, C, n, m, den, h)
        ctx.launches, ctx.eps = launches, eps
        # Copies: the buffers are saved for the backward and must not be changed by the caller.
        final = (
            C[:, NC].reshape(B, NH, DHV, DHK).clone(),
            n[:, NC].reshape(B, NH, DHK).clone(),
            m[:, NC].reshape(B, NH).clone(),
        )
        ctx.mark_non_differentiable(*final)
        return h, *final

    @staticmethod
    def backward(ctx, dh, *_):
        q, k, v, igate, fgate, C, n, m, den, h = ctx.saved_tensors
        launches, eps = ctx.launches, ctx.eps
        BH, NC = C.shape[0], C.shape[1] - 1
        S, DHK, DHV = q.shape[2], q.shape[3], v.shape[3]
        scale = DHK**-0.5
        dh = dh.to(q.dtype).contiguous()
        dhh = (dh.float() * h.float()).sum(-1)
        f32 = dict(device=q.device, dtype=torch.float32)
        dC = torch.empty(BH, NC, DHV, DHK, **f32)
        dn = torch.empty(BH, NC, DHK, **f32)
        launches.bwd_states(
            (BH, *_blocks(launches.bwd_states, DHK, DHV)),
            q, dh, igate, fgate, m, den, dhh, dC, dn, S, NC, DHK, DHV, eps,
        )  # fmt: skip
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        nbk = _blocks(launches.bwd_qk, DHK, DHV)[0]
        qdq = torch.empty(nbk, BH, S, **f32)
        kdk = torch.empty(nbk, BH, S, **f32)
        launches.bwd_qk(
            (NC, BH, nbk),
            q, k, v, dh, igate, fgate, C, n, m, den, dhh, dC, dn, dq, dk, qdq, kdk,
            BH, S, NC, DHK, DHV, scale, eps,
        )  # fmt: skip
        launches.bwd_v(
            (NC, BH, _blocks(launches.bwd_v, DHK, DHV)[1]),
            q, k, dh, igate, fgate, m, den, dhh, dC, dv, S, NC, DHK, DHV, scale, eps,
        )  # fmt: skip
        qdq, kdk = qdq.sum(0).view_as(igate), kdk.sum(0).view_as(igate)
        d_log_f = (qdq - kdk).flip(-1).cumsum(-1).flip(-1)
        dfgate = d_log_f * torch.sigmoid(-fgate)
        return dq, dk, dv, kdk, dfgate, None, None, None


def mlstm_chunkwise_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    igate: Tensor,
    fgate: Tensor,
    chunk_size: int = 64,
    state: MLSTMState | tuple[Tensor, Tensor, Tensor] | None = None,
    eps: float = 1e-6,
) -> tuple[Tensor, MLSTMState]:
    """Chunkwise mLSTM from ``state`` (None: empty memory); returns h and the final state.

    q, k ``(B, NH, S, DHK)``, v ``(B, NH, S, DHV)``, igate, fgate ``(B, NH, S)`` pre-activations
    in float32, bfloat16 or float16; k and v are taken in q's dtype and the gates in float32, h
    comes back in q's dtype, the state in float32 and detached. ``chunk_size`` is one of
    ``MLSTM_CHUNK_SIZES``; float32 products on CUDA cores (TF32 off) run chunks of at most
    ``FMA_MAX_CHUNK`` steps, the same result up to rounding. Gradients reach q, k, v and the gates
    but not an initial state, so one that requires grad is refused (use the PyTorch form).
    """
    if q.shape[2] == 0:
        raise ValueError("mlstm_chunkwise_triton needs at least one time step")
    if chunk_size not in MLSTM_CHUNK_SIZES:
        # Only these tile sizes are compiled and checked ahead of time (see ahead_of_time).
        raise ValueError(
            f"chunk_size must be a power of two from 16 to 128 ({MLSTM_CHUNK_SIZES}), "
            f"got {chunk_size}"
        )
    if q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"mlstm_chunkwise_triton supports float32/bfloat16/float16, not {q.dtype}")
    if state is not None and any(x.requires_grad for x in state):
        raise ValueError(
            "mlstm_chunkwise_triton does not propagate gradients into the initial state; "
            "pass a detached state or use mlstm_chunkwise_with_state"
        )
    init = None if state is None else tuple(x.float() for x in state)
    # One dtype per launch: the configurations compiled ahead of time are the ones that run.
    k, v, igate, fgate = k.to(q.dtype), v.to(q.dtype), igate.float(), fgate.float()
    h, C, n, m = _MLSTMChunkwise.apply(q, k, v, igate, fgate, init, chunk_size, eps)
    return h, MLSTMState(C, n, m)
