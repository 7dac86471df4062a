"""The LightningModule's evaluation numbers and optimiser recipe."""

import math

import lightning as L
import pytest
import torch

from xlstm_exp.data.synthetic import SyntheticDataModule
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models import LanguageModel


class CountedData(SyntheticDataModule):
    """Synthetic data that claims two tokens per word and three bytes per token."""

    def eval_counts(self, split):
        tokens = int(self.tokens(split).numel() - 1)
        return {"tokens": tokens, "words": tokens / 2, "bytes": 3 * tokens}


def validate(datamodule, **trainer_options):
    torch.manual_seed(0)
    model = LanguageModel(datamodule.vocab_size, d_model=16, num_layers=1, mixer="lstm")
    module = LanguageModelingModule(model)
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, **trainer_options
    )
    return trainer.validate(module, datamodule=datamodule, verbose=False)[0], module


def small_data(cls=SyntheticDataModule):
    return cls(
        num_words=50,
        num_names=4,
        train_tokens=2000,
        val_tokens=1000,
        test_tokens=1000,
        context_length=64,
        batch_size=4,
    )


def test_perplexity_is_exp_of_the_summed_nll_over_all_tokens():
    datamodule = small_data()
    results, module = validate(datamodule)
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in datamodule.val_dataloader():
            logits = module.model(inputs)
            total += torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
            ).item()
            count += int((targets != -100).sum())
    assert count == 999, "every validation target once, padding ignored"
    assert results["val/loss"] == pytest.approx(total / count, rel=1e-5)
    assert results["val/ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_word_ppl_and_bits_per_byte_from_the_data_counts():
    results, _ = validate(small_data(CountedData))
    assert results["val/word_ppl"] == pytest.approx(results["val/ppl"] ** 2, rel=1e-5)
    assert results["val/bpb"] == pytest.approx(results["val/loss"] / (3 * math.log(2)), rel=1e-5)


def test_no_word_ppl_when_only_part_of_the_split_was_scored():
    results, _ = validate(small_data(CountedData), limit_val_batches=1)
    assert "val/word_ppl" not in results and "val/ppl" in results


def test_weight_decay_only_on_weight_matrices():
    model = LanguageModel(50, d_model=16, num_layers=1, mixer="slstm", block="post")
    module = LanguageModelingModule(model, weight_decay=0.1)
    module.trainer = L.Trainer(max_steps=10, logger=False)
    decay, no_decay = module.configure_optimizers()["optimizer"].param_groups
    decayed = {id(p) for p in decay["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in decayed}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "embedding.weight" not in names and "head.weight" in names
    assert not any("norm" in n or n.endswith("bias") for n in names)
