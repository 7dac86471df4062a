"""Numbers that must stay right beyond one process and one precision: the gradient norm under
FSDP, the learning-rate schedule of a run of unknown length, whole-stream scores on the
trainer's device and precision, and messages from one process only."""

import copy
import json
import logging
import math

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_only
from torch.distributed.fsdp import FullyShardedDataParallel
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from xlstm_exp import console
from xlstm_exp.data.synthetic import SyntheticDataModule
from xlstm_exp.evaluation import stream_metrics
from xlstm_exp.grad_norm import gradient_norm, shard_replicas
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models import LanguageModel
from xlstm_exp.models.blocks import PreUpProjectionBlock
from xlstm_exp.stream_eval import stateful_nll


def sharded_norms(rank: int, store: str, out: str) -> None:
    """One of two FSDP processes: the norm of its own gradient shards, the norm summed over
    both, and the norm of an unsharded copy of the model given the same batch."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = LanguageModel(50, d_model=32, num_layers=2)
        whole = copy.deepcopy(model)
        sharded = FullyShardedDataParallel(
            model,
            device_id=torch.device("cpu"),
            use_orig_params=True,
            auto_wrap_policy=ModuleWrapPolicy({PreUpProjectionBlock}),
        )
        batch = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(1))
        sharded(batch).logsumexp(-1).mean().backward()
        whole(batch).logsumexp(-1).mean().backward()

        def summed(x: torch.Tensor) -> torch.Tensor:
            dist.all_reduce(x)
            return x

        norms = {
            "local": float(gradient_norm(sharded.parameters())),
            "global": float(gradient_norm(sharded.parameters(), summed)),
            "whole": float(gradient_norm(whole.parameters())),
        }
        with open(f"{out}.{rank}.json", "w") as f:
            json.dump(norms, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gradient_norm_under_fsdp_is_the_whole_models(tmp_path):
    mp.spawn(sharded_norms, args=(str(tmp_path / "store"), str(tmp_path / "norms")), nprocs=2)
    ranks = [json.loads((tmp_path / f"norms.{r}.json").read_text()) for r in range(2)]
    for norms in ranks:
        assert norms["global"] == pytest.approx(norms["whole"], rel=1e-5)
        assert norms["local"] < 0.95 * norms["whole"], "one shard holds only part of the norm"
    # Disjoint shards: their squared norms add up to the whole model's.
    assert sum(n["local"] ** 2 for n in ranks) == pytest.approx(ranks[0]["whole"] ** 2, rel=1e-5)


def test_gradients_count_as_sharded_under_fsdp_only():
    assert shard_replicas(FSDPStrategy()) == 1
    policy = ModuleWrapPolicy({PreUpProjectionBlock})
    hybrid = FSDPStrategy(sharding_strategy="HYBRID_SHARD", auto_wrap_policy=policy)
    hybrid.num_nodes = 3
    assert shard_replicas(hybrid) == 3, "each shard is held once per node"
    assert shard_replicas(DDPStrategy()) is None
    assert shard_replicas(SingleDeviceStrategy("cpu")) is None


def test_learning_rate_holds_its_peak_when_the_run_length_is_unknown(monkeypatch, caplog):
    # A streamed epoch under max_epochs: Lightning cannot count the steps in advance.
    monkeypatch.setattr(
        L.Trainer, "estimated_stepping_batches", property(lambda self: float("inf"))
    )
    module = LanguageModelingModule(
        LanguageModel(50, d_model=16, num_layers=1, mixer="lstm"), lr=1e-3, warmup_steps=10
    )
    module.trainer = L.Trainer(max_epochs=2, logger=False)
    with caplog.at_level(logging.WARNING, logger="xlstm_exp"):
        scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    factors = [scheduler.lr_lambdas[0](step) for step in (0, 9, 10, 1000, 10**6)]
    assert factors == [0.1, 1.0, 1.0, 1.0, 1.0]
    assert "trainer.max_steps or max_tokens" in caplog.text
    # With a known length the same recipe decays to min_lr_ratio.
    monkeypatch.setattr(L.Trainer, "estimated_stepping_batches", property(lambda self: 100))
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert scheduler.lr_lambdas[0](100) == pytest.approx(0.1)


class PrecisionProbe(LanguageModel):
    """Records the autocast state and parameter device of every forward."""

    def forward(self, *args, **kwargs):
        self.seen.append((torch.is_autocast_enabled("cpu"), self.embedding.weight.device.type))
        return super().forward(*args, **kwargs)


def test_stream_scores_run_in_the_trainers_precision_on_its_device():
    data = SyntheticDataModule(
        num_words=50, num_names=4, train_tokens=2000, val_tokens=300, test_tokens=300
    )
    data.context_length = 64
    data.setup()
    torch.manual_seed(0)
    model = PrecisionProbe(data.vocab_size, d_model=32, num_layers=1, mixer="mlstm")
    model.seen = []
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False)
    metrics = stream_metrics(trainer, model, data, window=64)
    assert model.seen and set(model.seen) == {(True, trainer.strategy.root_device.type)}
    # bf16 products: the score moves from the float32 one by rounding, not more.
    full, count = stateful_nll(model, data.tokens("val"), 64)
    assert metrics["val/stateful_loss"] != full / count
    assert metrics["val/stateful_loss"] == pytest.approx(full / count, rel=0.02)
    assert math.isfinite(metrics["test/stateful_ppl"])


def test_messages_come_from_the_rank_zero_process_only(monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="xlstm_exp"):
        monkeypatch.setattr(rank_zero_only, "rank", 1)
        console.info("from rank one")
        console.warning("warning from rank one")
        monkeypatch.setattr(rank_zero_only, "rank", 0)
        console.info("from rank zero")
    assert [r.getMessage() for r in caplog.records] == ["from rank zero"]
