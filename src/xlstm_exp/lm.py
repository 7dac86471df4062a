"""LightningModule that trains any language model of `xlstm_exp.models` on next-token loss."""

import math
import random
from functools import partial
from time import perf_counter

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import SumMetric

from xlstm_exp import console
from xlstm_exp.answer_accuracy import AnswerAccuracy
from xlstm_exp.checkpoint import CONFIG_KEY, TOKENIZER_KEY
from xlstm_exp.data.contract import LanguageDataModule
from xlstm_exp.grad_norm import gradient_norm, shard_replicas
from xlstm_exp.models.language_model import LanguageModel
from xlstm_exp.models.mixer import Mixer
from xlstm_exp.models.seed_api import xLSTM
from xlstm_exp.perplexity import per_word_and_byte
from xlstm_exp.schedule import warmup_cosine

IGNORE_INDEX = -100


def weight_decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, undecayed) parameters: weight matrices only are decayed. Vectors (norms,
    biases, gates), the token embedding (the paper's recipe excludes it explicitly) and what a
    mixer declares in `Mixer.no_weight_decay` (the official groups leave out sLSTM's recurrent
    kernel and head-wise biases) keep their values."""
    kept = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for mixer in model.modules():
        if isinstance(mixer, Mixer):
            kept.update(id(p) for p in mixer.no_weight_decay())
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            is_matrix = param.ndim >= 2 and id(param) not in kept
            (decay if is_matrix else no_decay).append(param)
    return decay, no_decay


class LanguageModelingModule(L.LightningModule):
    """Next-token cross-entropy, AdamW with weight decay on weight matrices only, linear warm-up
    then cosine decay. Validation and test perplexity come from the summed NLL over every target
    token of the split, never from an average of per-batch perplexities."""

    def __init__(
        self,
        model: nn.Module,
        lr: float = 3e-3,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-5,
        warmup_steps: int = 50,
        min_lr_ratio: float = 0.1,
        run_config: dict | None = None,
    ):
        """`run_config`, the resolved run config, is stored in every checkpoint so that the
        model can be rebuilt from the checkpoint alone."""
        super().__init__()
        if isinstance(model, xLSTM) and model.bidirectional:
            raise ValueError(
                "a bidirectional model reads future tokens, so it cannot be trained as a causal "
                "language model; build it with bidirectional=False"
            )
        self.model = model
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, tuple(betas), eps
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio
        self.run_config = run_config
        self._rng_to_restore: dict | None = None
        self.eval_nll = nn.ModuleDict({s: SumMetric() for s in ("val", "test")})
        self.eval_tokens = nn.ModuleDict({s: SumMetric() for s in ("val", "test")})
        self.answer_accuracy: nn.ModuleDict | None = None  # made in `setup` for task data
        # Summed over all processes: the run's tokens, not one rank's share.
        self.train_tokens = 0
        self._step_tokens = 0
        self.train_seconds = 0.0
        # [training tokens seen, validation perplexity] at each validation: the learning curve
        # that sweep reports plot (lists, as metrics.json stores them).
        self.val_history: list[list] = []
        # The training step whose weights the latest validation during fit scored.
        self.validated_step: int | None = None
        self._batch_start = 0.0
        self._in_step = False

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)

    def _scores(self, batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Logits of the scored targets (not -100) `(N, vocab)` in row-major order, their summed
        NLL, and N."""
        input_ids, targets = batch[0], batch[1]
        scored = targets != IGNORE_INDEX
        if isinstance(self.model, LanguageModel):
            logits = self.model(input_ids, positions=scored)
        else:
            logits = self.model(input_ids)[scored]
        nll = F.cross_entropy(logits.float(), targets[scored], reduction="sum")
        return logits, nll, logits.shape[0]

    def setup(self, stage: str) -> None:
        # Data whose targets are answers to a task is also scored by accuracy.
        data = self.trainer.datamodule
        chance = data.chance_accuracy() if isinstance(data, LanguageDataModule) else None
        if chance is not None and self.answer_accuracy is None:
            self.answer_accuracy = nn.ModuleDict(
                {s: AnswerAccuracy(chance, data.answer_groups()) for s in ("val", "test")}
            )

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._batch_start = perf_counter()
        self._in_step = True

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        _, nll, count = self._scores(batch)
        loss = nll / count
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}; "
                "lower the learning rate or check the data"
            )
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/ppl", loss.exp())
        # Ranks may score different numbers of targets (padding), so the counts are summed.
        counted = torch.tensor(float(count), device=nll.device)
        self._step_tokens = int(self.trainer.strategy.reduce(counted, reduce_op="sum"))
        self.train_tokens += self._step_tokens
        self.log("train/tokens", float(self.train_tokens))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        strategy = self.trainer.strategy
        # Under FSDP each process holds a shard of every gradient: the norm sums all shards.
        replicas = shard_replicas(strategy)
        sum_over_processes = None
        if replicas is not None:

            def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
                return strategy.reduce(x, reduce_op="sum") / replicas

        norm = gradient_norm(self.parameters(), sum_over_processes)
        if norm is not None:
            self.log("grad_norm", norm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Plain containers and tensors only, so the checkpoint loads with weights_only=True.
        checkpoint[CONFIG_KEY] = self.run_config
        data = self.trainer.datamodule
        tokenizer = data.tokenizer_json() if isinstance(data, LanguageDataModule) else None
        if tokenizer is not None:
            checkpoint[TOKENIZER_KEY] = tokenizer
        checkpoint["rng"] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        checkpoint["train_tokens"] = self.train_tokens
        # With the tokens, so that a resumed run's throughput counts the time before it too; a
        # checkpoint written within a step (a callback at its end) counts that step's time.
        in_step = perf_counter() - self._batch_start if self._in_step else 0.0
        checkpoint["train_seconds"] = self.train_seconds + in_step
        checkpoint["val_history"] = self.val_history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._rng_to_restore = checkpoint.get("rng")
        self.train_tokens = checkpoint.get("train_tokens", 0)
        self.train_seconds = checkpoint.get("train_seconds", 0.0)
        self.val_history = [list(point) for point in checkpoint.get("val_history", [])]

    def on_train_start(self) -> None:
        # Restored only now: creating the dataloader iterators draws from the global RNG, which
        # the interrupted run had done before the checkpoint was written.
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore["torch"])
            random.setstate(self._rng_to_restore["python"])
            self._rng_to_restore = None

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        seconds = perf_counter() - self._batch_start
        self.train_seconds += seconds
        self._in_step = False
        self.log("train/tokens_per_s", self._step_tokens / max(seconds, 1e-9), prog_bar=True)

    def _eval_step(self, split: str, batch) -> None:
        logits, nll, count = self._scores(batch)
        self.eval_nll[split].update(nll)
        self.eval_tokens[split].update(count)
        if self.answer_accuracy is not None:
            targets = batch[1]
            predictions = torch.full_like(targets, IGNORE_INDEX)
            predictions[targets != IGNORE_INDEX] = logits.argmax(-1)
            groups = batch[2] if len(batch) > 2 else None
            self.answer_accuracy[split].update(predictions, targets, groups)

    def _eval_epoch_end(self, split: str) -> None:
        nll, tokens = self.eval_nll[split].compute(), self.eval_tokens[split].compute()
        self.eval_nll[split].reset()
        self.eval_tokens[split].reset()
        loss = nll / tokens
        # The sums are already reduced over processes; sync_dist only averages equal values.
        log = partial(self.log, sync_dist=True)
        log(f"{split}/loss", loss, prog_bar=split == "val")
        log(f"{split}/ppl", loss.exp(), prog_bar=split == "val")
        if split == "val" and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.val_history.append([self.train_tokens, float(loss.exp())])
            self.validated_step = self.global_step
        datamodule = self.trainer.datamodule
        if isinstance(datamodule, LanguageDataModule):
            counts = datamodule.eval_counts(split)
            for name, value in per_word_and_byte(float(nll), int(tokens), counts).items():
                log(f"{split}/{name}", value)
        if self.answer_accuracy is not None:
            for name, value in self.answer_accuracy[split].compute().items():
                log(f"{split}/{name}", value, prog_bar=split == "val" and name == "norm_acc")
            self.answer_accuracy[split].reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        decay, no_decay = weight_decay_groups(self.model)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
        )
        total = self.trainer.estimated_stepping_batches
        total = int(total) if math.isfinite(total) else None
        if total is None:
            console.warning(
                "the run's length in steps is unknown (a streamed epoch under max_epochs), so the "
                "learning rate stays at its peak after the warm-up; set trainer.max_steps or "
                "max_tokens for the cosine decay"
            )
        schedule = partial(
            warmup_cosine,
            warmup_steps=self.warmup_steps,
            total_steps=total,
            min_ratio=self.min_lr_ratio,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            # Named so that the LearningRateMonitor callback logs it as `lr`.
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"},
        }
