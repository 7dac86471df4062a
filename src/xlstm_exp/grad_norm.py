"""The gradient norm of the whole model, also when processes hold only shards of it."""

from collections.abc import Callable, Iterable

import torch
from lightning.pytorch.strategies import FSDPStrategy, Strategy
from torch import nn


def shard_replicas(strategy: Strategy) -> int | None:
    """How many processes hold each gradient shard when gradients are sharded (FSDP), else
    None: under DDP or one device every process holds whole gradients. HYBRID_SHARD shards
    within a node and replicates across nodes."""
    if not isinstance(strategy, FSDPStrategy):
        return None
    hybrid = "HYBRID" in str(strategy.sharding_strategy)
    return strategy.num_nodes if hybrid else 1


def gradient_norm(
    parameters: Iterable[nn.Parameter],
    sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor | None:
    """The L2 norm of all gradients (None when there are none). With sharded gradients,
    `sum_over_processes` sums each process's squared norm of its shards into the global one."""
    squares = [p.grad.detach().float().square().sum() for p in parameters if p.grad is not None]
    if not squares:
        return None
    total = torch.stack(squares).sum()
    if sum_over_processes is not None:
        total = sum_over_processes(total)
    return total.sqrt()
