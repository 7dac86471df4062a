"""Generate text from a checkpoint: prefill a prompt, then sample token by token (generate.py)."""

import sys

import torch
from omegaconf import DictConfig

from xlstm_exp.data.tokenization import encode_text
from xlstm_exp.from_config import build_data
from xlstm_exp.sampling import check_sampling, generate_tokens
from xlstm_exp.trained_model import TrainedModel, load_trained
from xlstm_exp.user_error import UserError


def text_codec(trained: TrainedModel):
    """`(encode, decode)` for the model's vocabulary: the tokenizer the checkpoint or folder
    carries, else the data module that defines the vocabulary (built-in data needs no files)."""
    if trained.tokenizer is not None:
        tokenizer = trained.tokenizer
        return (lambda text: encode_text(tokenizer, text)), tokenizer.decode
    datamodule = build_data(trained.run_config.data)
    return datamodule.encode, datamodule.decode


def generate(cfg: DictConfig) -> str:
    """Print the prompt's continuation as it is sampled; returns the generated text."""
    check_sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p)
    trained = load_trained(cfg.ckpt_path)
    if trained.tokenizer is None and trained.run_config is None:
        raise UserError(f"{trained.source} has no tokenizer.json; export the model again")
    encode, decode = text_codec(trained)
    prompt = encode(cfg.prompt)
    if not prompt:
        raise UserError(f"prompt={cfg.prompt!r} encodes to no tokens; give it some text")
    generator = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
    tokens = generate_tokens(
        trained.model,
        torch.tensor([prompt]),
        cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        generator=generator,
    )
    new: list[int] = []
    shown = ""
    sys.stdout.write(cfg.prompt)
    for token in tokens:
        new.append(int(token))
        text = decode(prompt + new)[len(decode(prompt)) :]
        # Decoding the whole continuation each time keeps multi-token characters intact.
        sys.stdout.write(text[len(shown) :])
        sys.stdout.flush()
        shown = text
    sys.stdout.write("\n")
    return shown
