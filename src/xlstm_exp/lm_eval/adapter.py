"""The `xlstm_exp` model of lm-evaluation-harness: a trained model (a train.py checkpoint or an
exported folder) behind lm-eval's `LM` interface.

Recurrent models (mLSTM, sLSTM, LSTM) see unlimited context: an input longer than `window`
tokens runs window by window, each from the state the previous one ended in, as
`stream_eval.stateful_nll` scores a split. The Transformer keeps the last `window` tokens of a
context, as lm-eval's Hugging Face models keep their maximum length, and scores a whole document
with a window slid by `stride` (`stream_eval.sliding_window_nll`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from omegaconf import OmegaConf
from torch import nn
from tqdm import tqdm

from xlstm_exp.data.tokenization import encode_text
from xlstm_exp.sampling import generate_tokens
from xlstm_exp.stream_eval import is_recurrent, sliding_window_nll
from xlstm_exp.trained_model import load_trained, start_token_id
from xlstm_exp.user_error import UserError

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 128  # for a model whose run config does not name its training context
DEFAULT_MAX_GEN_TOKS = 256


@torch.no_grad()
def scored_targets(
    model: nn.Module,
    sequences: Sequence[Sequence[int]],
    first_targets: Sequence[int],
    window: int,
    recurrent: bool,
) -> list[tuple[float, bool]]:
    """For each token sequence, the summed log-probability of its tokens from index
    `first_targets[i]` on, each given all tokens before it, and whether every one of them was
    the most likely token.

    The sequences are right-padded into one batch: the models are causal, so padding after a
    sequence never reaches its scores. A recurrent model runs windows of `window` inputs, each
    from the state the previous one ended in (the windows `stateful_nll` uses); any other model
    gets one forward, so its sequences must be at most `window + 1` tokens long."""
    device = next(model.parameters()).device
    longest = max(len(tokens) for tokens in sequences)
    # A spare column, so that every window's targets are as long as its inputs.
    ids = torch.zeros(len(sequences), longest + 1, dtype=torch.long)
    for row, tokens in enumerate(sequences):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    ids = ids.to(device)
    lengths = torch.tensor([len(tokens) for tokens in sequences], device=device)[:, None]
    firsts = torch.tensor(list(first_targets), device=device)[:, None]
    rows = torch.arange(len(sequences), device=device)[:, None]
    logprob = torch.zeros(len(sequences), dtype=torch.float64, device=device)
    misses = torch.zeros(len(sequences), dtype=torch.long, device=device)
    state = None
    for start in range(0, longest - 1, window):
        inputs = ids[:, start : min(start + window, longest)]
        width = inputs.shape[1]
        targets = ids[:, start + 1 : start + 1 + width]
        index = torch.arange(start + 1, start + 1 + width, device=device)[None]
        scored = (index >= firsts) & (index < lengths)
        if recurrent:
            # The head only where a target is scored: at a large vocabulary it dominates.
            logits, state = model(inputs, state=state, return_state=True, positions=scored)
        else:
            logits = model(inputs)[scored]
        # At least float32 for the softmax, whatever precision the model ran in.
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        chosen = targets[scored]
        owner = rows.expand_as(scored)[scored]
        values = logits.log_softmax(-1).gather(-1, chosen[:, None])[:, 0]
        logprob.index_add_(0, owner, values.double())
        misses.index_add_(0, owner, (logits.argmax(-1) != chosen).long())
    return [
        (value, miss == 0) for value, miss in zip(logprob.tolist(), misses.tolist(), strict=True)
    ]


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[start : start + size] for start in range(0, len(order), size)]


def positive(key: str, value: object) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise UserError(f"{key}={value} in --model_args must be a positive whole number")
    return number


def checked_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(
            f"device={name} is not a PyTorch device ({error}); e.g. cpu or cuda"
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name}, but PyTorch sees no CUDA device here; pass --device cpu")
    return device


def cut_at_stops(text: str, until: Sequence[str]) -> str:
    """`text` up to the first occurrence of any of the stop strings."""
    return text[: min((text.find(stop) for stop in until if stop in text), default=len(text))]


def generation_settings(gen_kwargs: dict) -> tuple[list[str], int, dict]:
    """Stop strings, the most tokens to generate and `generate_tokens`' sampling options of
    lm-eval's generation arguments: greedy unless `do_sample` or a positive `temperature`."""
    options = dict(gen_kwargs)
    until = options.pop("until", None) or []
    # An empty stop string would cut every text to nothing.
    until = [stop for stop in ([until] if isinstance(until, str) else until) if stop]
    max_new = int(options.pop("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
    temperature = float(options.pop("temperature", 0.0) or 0.0)
    do_sample = bool(options.pop("do_sample", temperature > 0))
    sampling = {
        "temperature": (temperature or 1.0) if do_sample else 0.0,
        "top_k": options.pop("top_k", None),
        "top_p": options.pop("top_p", None),
    }
    if options:
        log.warning("xlstm_exp ignores the generation arguments %s", sorted(options))
    return until, max_new, sampling


@register_model("xlstm_exp")
class XLSTMLM(TemplateLM):
    """A trained xlstm-exp model for lm-eval: `--model xlstm_exp --model_args
    pretrained=<exported folder or .ckpt>[,window=N][,stride=N]`.

    `window` (default: the training run's `data.context_length`, else 128) is how many tokens
    one forward takes; `stride` (default: half the window) moves the Transformer's sliding
    window over a whole document. `batch_size` counts sequences per forward; lm-eval's automatic
    sizing (`auto`) is not offered, so `max_batch_size`, which only that uses, is ignored.
    """

    def __init__(
        self,
        pretrained: str,
        device: str = "cpu",
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        window: int | None = None,
        stride: int | None = None,
    ) -> None:
        super().__init__()
        if str(batch_size).startswith("auto"):
            raise UserError(f"batch_size={batch_size}: xlstm_exp takes a number, e.g. 16")
        self.batch_size = positive("batch_size", batch_size)
        trained = load_trained(pretrained)
        self.source = trained.source
        self.tokenizer = trained.text_tokenizer()
        self._device = checked_device(str(device))
        self.model = trained.model.to(self._device).eval()
        self.recurrent = is_recurrent(self.model)
        trained_context = None
        if trained.run_config is not None:
            trained_context = OmegaConf.select(trained.run_config, "data.context_length")
        self.window = positive("window", window or trained_context or DEFAULT_WINDOW)
        self.stride = positive("stride", stride or max(1, self.window // 2))
        if self.stride > self.window:
            raise UserError(f"stride={self.stride} must be at most window={self.window}")
        self._start_id = start_token_id(self.tokenizer)

    @property
    def eot_token_id(self) -> int:
        """The token every training stream began with: what a scored text is conditioned on."""
        return self._start_id

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs
    ) -> list[int]:
        """Token ids as the data modules encode text, line by line; the start token is added
        where lm-eval asks for it (`prefix_token_id`), never here."""
        return encode_text(self.tokenizer, string)

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    def get_model_info(self) -> dict:
        """What lm-eval records in the results' config besides the model arguments."""
        return {
            "model_source": str(self.source),
            "model_num_parameters": sum(p.numel() for p in self.model.parameters()),
            "scoring": (
                f"state carried across windows of {self.window}"
                if self.recurrent
                else f"window of {self.window}, stride {self.stride} for whole documents"
            ),
        }

    def _loglikelihood_tokens(
        self,
        requests: list[tuple[tuple[str, str], list[int], list[int]]],
        disable_tqdm: bool = False,
    ) -> list[tuple[float, bool]]:
        results: list[tuple[float, bool]] = [(0.0, True)] * len(requests)
        # Longest first, so that a batch too large for memory fails at once, and batches hold
        # sequences of similar length (little padding).
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1] + requests[i][2]))
        with tqdm(total=len(requests), desc="loglikelihood", disable=disable_tqdm) as bar:
            for batch in batches(order, self.batch_size):
                sequences, firsts = zip(
                    *(self._scored(*requests[i][1:]) for i in batch), strict=True
                )
                scores = scored_targets(self.model, sequences, firsts, self.window, self.recurrent)
                for i, score in zip(batch, scores, strict=True):
                    results[i] = score
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], score)
                bar.update(len(batch))
        return results

    def _scored(self, context: list[int], continuation: list[int]) -> tuple[list[int], int]:
        """The tokens a request runs on and the index of its first scored one."""
        tokens = context + continuation
        if not self.recurrent:
            if len(continuation) > self.window:
                raise UserError(
                    f"a continuation of {len(continuation)} tokens does not fit the attention "
                    f"window={self.window}; pass a larger window in --model_args"
                )
            tokens = tokens[-(self.window + 1) :]
        return tokens, len(tokens) - len(continuation)

    def loglikelihood_rolling(
        self, requests: list[Instance], disable_tqdm: bool = False
    ) -> list[float]:
        """The log-likelihood of each document as one stream: the start token, then the text."""
        streams = [[self.prefix_token_id, *self.tok_encode(r.args[0])] for r in requests]
        results = [0.0] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: -len(streams[i]))
        # The Transformer's sliding window runs one document at a time.
        size = self.batch_size if self.recurrent else 1
        with tqdm(total=len(requests), desc="loglikelihood_rolling", disable=disable_tqdm) as bar:
            for batch in batches(order, size):
                if self.recurrent:
                    scores = scored_targets(
                        self.model, [streams[i] for i in batch], [1] * len(batch), self.window, True
                    )
                    values = [value for value, _ in scores]
                else:
                    tokens = torch.tensor(streams[batch[0]], device=self._device)
                    values = [-sliding_window_nll(self.model, tokens, self.window, self.stride)[0]]
                for i, value in zip(batch, values, strict=True):
                    results[i] = value
                    self.cache_hook.add_partial("loglikelihood_rolling", requests[i].args, value)
                bar.update(len(batch))
        return results

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Each context's continuation, one request at a time (prompts differ in length and the
        models take no padding mask), up to the first stop string or `max_gen_toks` tokens."""
        texts = []
        for request in tqdm(requests, desc="generate_until", disable=disable_tqdm):
            context, gen_kwargs = request.args
            until, max_new, sampling = generation_settings(gen_kwargs)
            prompt = self.tok_encode(context) or [self.prefix_token_id]
            if not self.recurrent:
                prompt = prompt[-self.window :]
            text = self._generate(prompt, until, max_new, sampling)
            self.cache_hook.add_partial("generate_until", request.args, text)
            texts.append(text)
        return texts

    def _generate(self, prompt: list[int], until: list[str], max_new: int, sampling: dict) -> str:
        # The continuation is the text the new tokens add to the prompt's decoded text, so
        # that a word-level tokenizer's space before the first new word is kept.
        prompt_text = self.tok_decode(prompt)
        new: list[int] = []
        text = ""
        ids = torch.tensor([prompt], device=self._device)
        for token in generate_tokens(self.model, ids, max_new, **sampling):
            new.append(int(token))
            text = self.tok_decode(prompt + new)[len(prompt_text) :]
            if any(stop in text for stop in until):
                break
        return cut_at_stops(text, until)
