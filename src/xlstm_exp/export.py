"""export.py's job: a checkpoint as a Hugging Face-style model folder.

The folder is written next to `out` under a temporary name, loaded back and compared with the
checkpoint's model, and only then renamed to `out`: an interrupted or failed export leaves no
half-written folder, and an existing one is replaced only when asked (`overwrite=true`).
"""

import json
import os
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from xlstm_exp import console
from xlstm_exp.console_noise import route_dependency_output
from xlstm_exp.model_card import model_card
from xlstm_exp.models.language_model import LanguageModel
from xlstm_exp.trained_model import TOKENIZER_FILE, TRAINING_FILE, TrainedModel, load_trained
from xlstm_exp.user_error import UserError


def export(cfg: DictConfig) -> Path:
    """Write `cfg.out` from the checkpoint `cfg.ckpt_path`; returns the folder."""
    route_dependency_output()
    if Path(str(cfg.ckpt_path)).expanduser().is_dir():
        raise UserError(
            f"ckpt_path={cfg.ckpt_path} is a folder, already exported; give a .ckpt that "
            "train.py wrote"
        )
    trained = load_trained(cfg.ckpt_path)
    if not isinstance(trained.model, LanguageModel):
        raise UserError(
            f"ckpt_path={cfg.ckpt_path} holds a {type(trained.model).__name__} (a model "
            "config with its own _target_), which export.py does not write; it exports the "
            "framework's LanguageModel"
        )
    out = Path(str(cfg.out)).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not cfg.overwrite:
        raise UserError(
            f"out={out} exists and is not empty; choose another folder, or pass overwrite=true "
            "to replace it"
        )
    staging = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_folder(trained, staging)
        check_round_trip(trained.model, staging)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    console.info(f"exported {trained.source} to {out}")
    return out


def write_folder(trained: TrainedModel, folder: Path) -> None:
    """config.json and model.safetensors (the mixin's `save_pretrained`), tokenizer.json,
    training.json (where the model came from) and the README.md model card."""
    folder.mkdir(parents=True)
    # The card first: save_pretrained keeps a README.md it finds instead of writing its own.
    model_card(trained).save(folder / "README.md")
    trained.model.save_pretrained(folder)
    trained.text_tokenizer().save(str(folder / TOKENIZER_FILE))
    training = {
        "run_config": OmegaConf.to_container(trained.run_config, resolve=True),
        "global_step": trained.global_step,
        "train_tokens": trained.train_tokens,
        "metrics": trained.metrics,
        "exported_from": str(trained.source),
    }
    (folder / TRAINING_FILE).write_text(json.dumps(training, indent=2) + "\n")


@torch.no_grad()
def check_round_trip(model: LanguageModel, folder: Path) -> None:
    """The folder must load back to the same logits: a constructor argument the mixin could not
    write to config.json would otherwise be lost silently."""
    loaded = LanguageModel.from_pretrained(folder)
    probe = torch.arange(16).remainder(model.embedding.num_embeddings)[None]
    if not torch.equal(model.eval()(probe), loaded(probe)):
        raise RuntimeError(f"{folder} does not load back to the checkpoint's model")
