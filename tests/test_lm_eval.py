"""The lm-eval adapter (`xlstm_exp.lm_eval`): its scores against direct computations with the
model, the WikiText tasks against the project's own whole-split perplexity on the tiny mirror,
generation's stop strings, and the command line (also without lm-eval installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager
from wikitext_mirror import T, make, rows_of, tiny_mirror

from xlstm_exp.evaluation import stream_metrics
from xlstm_exp.lm_eval import TASKS_DIR, XLSTMLM
from xlstm_exp.lm_eval import adapter as adapter_module
from xlstm_exp.lm_eval.__main__ import lm_eval_argv
from xlstm_exp.lm_eval.tasks.wikitext_docs import articles
from xlstm_exp.models.language_model import LanguageModel
from xlstm_exp.stream_eval import sliding_window_nll
from xlstm_exp.user_error import UserError

ROOT = Path(__file__).resolve().parents[1]
LONG = " ".join(["the city was in the school , and his game ( season ) ."] * 4)  # > T words


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="module")
def data(mirror: Path, tmp_path_factory: pytest.TempPathFactory):
    return make(mirror, tmp_path_factory.mktemp("cache"), kind="word")


@pytest.fixture(scope="module")
def folders(data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Exported folders of tiny untrained models (context length T), one per mixer."""
    folders = {}
    for mixer in ("mlstm", "slstm", "lstm", "attention"):
        torch.manual_seed(0)
        model = LanguageModel(data.vocab_size, d_model=32, num_layers=2, mixer=mixer)
        # A larger head than the initialisation's, so that next-token distributions differ
        # clearly between contexts and a misplaced target or lost state shows in the scores.
        torch.nn.init.normal_(model.head.weight, std=0.5)
        folder = tmp_path_factory.mktemp(mixer)
        model.save_pretrained(folder)
        data.tokenizer.save(str(folder / "tokenizer.json"))
        run_config = {"data": {"context_length": T}}
        (folder / "training.json").write_text(json.dumps({"run_config": run_config}))
        folders[mixer] = folder
    return folders


def adapter(folder: Path, double: bool = False, **options) -> XLSTMLM:
    """The adapter on `folder`; `double` runs its model in float64, for exact comparisons."""
    lm = XLSTMLM(pretrained=str(folder), **options)
    if double:
        lm.model.double()
    return lm


def request(kind: str, *arguments) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=arguments, idx=0)


@torch.no_grad()
def direct(model, tokens: list[int], first: int) -> tuple[float, bool]:
    """log_softmax of one forward over `tokens`: the summed log-probability of tokens[first:]
    and whether each was the most likely token."""
    ids = torch.tensor(tokens)
    logprobs = model(ids[None, :-1])[0].double().log_softmax(-1)
    targets = ids[1:]
    picked = logprobs[torch.arange(len(targets)), targets][first - 1 :]
    return picked.sum().item(), bool((logprobs.argmax(-1) == targets)[first - 1 :].all())


def encoded(lm: XLSTMLM, context: str, continuation: str) -> tuple[list[int], int]:
    """The tokens and first target index of a request, as lm-eval's `TemplateLM` splits them."""
    if not context:
        return [lm.prefix_token_id, *lm.tok_encode(continuation)], 1
    context_ids = lm.tok_encode(context)
    return lm.tok_encode(context + continuation), len(context_ids)


def greedy_word(lm: XLSTMLM, context: str) -> str:
    """The model's most likely next word after `context`, as a continuation."""
    with torch.no_grad():
        logits = lm.model(torch.tensor([lm.tok_encode(context)]))[0, -1]
    return " " + lm.tok_decode([int(logits.argmax())])


@pytest.mark.parametrize("mixer", ["mlstm", "attention"])
def test_loglikelihood_equals_a_direct_log_softmax_batched_or_not(folders, mixer):
    """Contexts longer than the window: a recurrent model carries its state through all of it,
    the Transformer scores from the last `window` tokens. Batches mix lengths (right padding)."""
    lm = adapter(folders[mixer], double=True, batch_size=3)
    pairs = [
        ("", "the city was in the school"),
        ("the of and", " in to a"),
        (LONG, " school city"),
        ("he was", greedy_word(lm, "he was")),
        ("game", " season ."),
    ]
    batched = lm.loglikelihood([request("loglikelihood", *pair) for pair in pairs])
    one_by_one = adapter(folders[mixer], double=True, batch_size=1).loglikelihood(
        [request("loglikelihood", *pair) for pair in pairs]
    )
    expected = []
    for context, continuation in pairs:
        tokens, first = encoded(lm, context, continuation)
        if mixer == "attention":
            kept = tokens[-(T + 1) :]
            tokens, first = kept, first - (len(tokens) - len(kept))
        expected.append(direct(lm.model, tokens, first))
    assert len(lm.tok_encode(LONG)) > 2 * T
    assert [greedy for _, greedy in expected] == [False, False, False, True, False]
    for got, alone, want in zip(batched, one_by_one, expected, strict=True):
        assert got[1] == alone[1] == want[1]
        assert got[0] == pytest.approx(want[0], rel=1e-10)
        assert alone[0] == pytest.approx(want[0], rel=1e-10)


@pytest.mark.parametrize("mixer", ["mlstm", "slstm", "lstm"])
def test_rolling_loglikelihood_carries_the_state_exactly(folders, mixer):
    """Documents longer than the window score as one forward over the start token and the
    whole text, alone or batched with a shorter one."""
    lm = adapter(folders[mixer], double=True, batch_size=2)
    documents = [LONG, "the game was in the city .\n he had a season ."]
    rolling = lm.loglikelihood_rolling([request("loglikelihood_rolling", d) for d in documents])
    alone = lm.loglikelihood_rolling([request("loglikelihood_rolling", documents[0])])
    for document, score in zip(documents, rolling, strict=True):
        tokens = [lm.prefix_token_id, *lm.tok_encode(document)]
        assert score == pytest.approx(direct(lm.model, tokens, 1)[0], rel=1e-10)
    assert alone[0] == pytest.approx(rolling[0], rel=1e-10)


def test_attention_rolling_slides_its_window(folders):
    lm = adapter(folders["attention"], double=True, stride=5)
    tokens = torch.tensor([lm.prefix_token_id, *lm.tok_encode(LONG)])
    (score,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", LONG)])
    assert score == pytest.approx(-sliding_window_nll(lm.model, tokens, T, 5)[0], rel=1e-10)
    assert score != pytest.approx(direct(lm.model, tokens.tolist(), 1)[0], rel=1e-3)


@pytest.mark.parametrize("mixer", ["mlstm", "attention"])
def test_wikitext_stream_reproduces_the_projects_whole_split_perplexity(
    folders, data, mirror, mixer
):
    """lm-eval's evaluator on the task against `stream_metrics` (eval.py's whole-split scores,
    `stateful_word_ppl`) on the data module's own token stream and counts."""
    lm = adapter(folders[mixer], batch_size=4)
    metadata = {"data_path": str(mirror), "data_name": "tiny-v1"}
    tasks = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    results = simple_evaluate(
        model=lm, tasks=["wikitext_stream", "wikitext_articles"], task_manager=tasks
    )["results"]
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    own = stream_metrics(trainer, lm.model, data)  # eval.py's whole-split scores
    stream = results["wikitext_stream"]
    assert stream["word_perplexity,none"] == pytest.approx(own["test/stateful_word_ppl"], rel=1e-6)
    assert stream["bits_per_byte,none"] == pytest.approx(own["test/stateful_bpb"], rel=1e-6)
    assert results["wikitext_articles"]["sample_len"] == 3  # the test split's articles


def test_articles_start_at_titles_as_the_document_level_dataset(mirror):
    rows = rows_of(mirror, "tiny-v1", "test")
    pages = articles(rows)
    assert [page.split("\n")[0] for page in pages] == [f" = Article {n} = " for n in range(3)]
    sections = sum(row.startswith(" = = ") for row in rows)
    assert sections and sum(page.count(" = = Section ") for page in pages) == sections
    # The original file: blank lines are a space, the text before the first title is blank.
    assert " \n" + "\n".join(pages) == "".join(row or " \n" for row in rows)
    table = ["", " = Top = \n", " = 1 <unk> / s and k = \n", " = a row of a table \n"]
    # As the dataset has it: a line between " = " and " = " is a title, one only opened is not.
    assert len(articles(table)) == 2


def test_generate_until_cuts_at_the_first_stop_string(folders, monkeypatch):
    lm = adapter(folders["mlstm"])
    generated, generate_tokens = [], adapter_module.generate_tokens

    def counted(*args, **kwargs):
        for token in generate_tokens(*args, **kwargs):
            generated.append(token)
            yield token

    free = {"until": [], "max_gen_toks": 12}
    (text,) = lm.generate_until([request("generate_until", "the city", free)])
    words = text.split()
    assert len(words) >= 6, text
    stop = f" {words[3]} {words[4]}"
    stops = {"until": [stop, "never generated"], "max_gen_toks": 12}
    short = {"until": [], "max_gen_toks": 3}
    monkeypatch.setattr(adapter_module, "generate_tokens", counted)
    (cut,) = lm.generate_until([request("generate_until", "the city", stops)])
    assert len(generated) < 12  # generation stopped once the stop string was there
    (three,) = lm.generate_until([request("generate_until", "the city", short)])
    assert cut == text[: text.find(stop)] and stop not in cut
    assert text.startswith(three) and len(three.split()) < len(words)


def test_the_command_line_adds_the_model_tasks_and_device():
    argv = lm_eval_argv(["--model_args", "pretrained=x", "--tasks", "wikitext_stream"], "T", False)
    assert argv == [
        "run",
        *["--model_args", "pretrained=x", "--tasks", "wikitext_stream"],
        *["--include_path", "T", "--model", "xlstm_exp", "--device", "cpu"],
    ]
    given = lm_eval_argv(["run", "--model=hf", "--device", "cuda:1"], "T", True)
    assert given == ["run", "--model=hf", "--device", "cuda:1", "--include_path", "T"]
    assert lm_eval_argv(["ls", "tasks"], "T", True) == ["ls", "tasks", "--include_path", "T"]
    with pytest.raises(UserError, match="--include_path"):
        lm_eval_argv(["--include_path", "mine"], "T", False)


def test_without_lm_eval_the_command_names_the_eval_extra(tmp_path, monkeypatch):
    # lm-eval made unimportable in the child process, as if it were not installed.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['lm_eval'] = None\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HYDRA_FULL_ERROR": "0"}
    command = [sys.executable, "-m", "xlstm_exp.lm_eval", "--tasks", "wikitext_stream"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    hint = 'install it with pip install -e ".[eval]" (which make install does)'
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: lm-eval is an optional extra; {hint}\n"
    # Imported from Python, the package raises the same error.
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    monkeypatch.delitem(sys.modules, "xlstm_exp.lm_eval")
    with pytest.raises(UserError, match=r"\.\[eval\]"):
        __import__("xlstm_exp.lm_eval")
