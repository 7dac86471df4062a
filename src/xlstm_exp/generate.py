"""Generate text from a checkpoint: prefill a prompt, then sample token by token (generate.py)."""

import sys

import torch
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer

from xlstm_exp.checkpoint import TOKENIZER_KEY, load_checkpoint, run_config
from xlstm_exp.from_config import build_data, build_model
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.sampling import check_sampling, generate_tokens
from xlstm_exp.user_error import UserError


def text_codec(checkpoint: dict, trained: DictConfig):
    """`(encode, decode)` for the checkpoint's vocabulary: the tokenizer it carries, else the
    data module that defines the vocabulary (the built-in corpus needs no files)."""
    if checkpoint.get(TOKENIZER_KEY):
        tokenizer = Tokenizer.from_str(checkpoint[TOKENIZER_KEY])
        return (lambda text: tokenizer.encode(text).ids), tokenizer.decode
    datamodule = build_data(trained.data)
    return datamodule.encode, datamodule.decode


def generate(cfg: DictConfig) -> str:
    """Print the prompt's continuation as it is sampled; returns the generated text."""
    check_sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    trained = OmegaConf.create(run_config(checkpoint, cfg.ckpt_path))
    vocab_size = checkpoint["state_dict"]["model.embedding.weight"].shape[0]
    module = LanguageModelingModule(build_model(trained, vocab_size)[0])
    module.load_state_dict(checkpoint["state_dict"])
    encode, decode = text_codec(checkpoint, trained)
    prompt = encode(cfg.prompt)
    if not prompt:
        raise UserError(f"prompt={cfg.prompt!r} encodes to no tokens; give it some text")
    generator = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
    tokens = generate_tokens(
        module.model,
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
