"""Exported model folders: `save_pretrained`/`from_pretrained` round trips, refused folders and
weights files, and export.py's folder read back by eval.py and generate.py."""

import json

import pytest
import torch
from helpers import TINY, run_script
from omegaconf import OmegaConf

from xlstm_exp import LanguageModel
from xlstm_exp.export import export
from xlstm_exp.generate import generate
from xlstm_exp.models.registry import MIXERS
from xlstm_exp.trained_model import load_trained
from xlstm_exp.user_error import UserError

VOCAB = 50
SHAPES = {
    **{name: {"mixer": name} for name in sorted(MIXERS)},
    "xlstm[1:1] tied, own up width": {
        "mixer": "mlstm",
        "slstm_at": "1:1",
        "tie_weights": True,
        "block": {"kind": "auto", "pre": {"up_width": 96}},
    },
}


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("options", SHAPES.values(), ids=SHAPES.keys())
def test_a_saved_model_loads_back_to_equal_logits(options, tmp_path):
    model = LanguageModel(VOCAB, d_model=32, num_heads=4, **options).eval()
    model.save_pretrained(tmp_path)
    loaded = LanguageModel.from_pretrained(tmp_path)
    assert torch.equal(model(tokens()), loaded(tokens()))
    assert (loaded.head.weight is loaded.embedding.weight) == bool(options.get("tie_weights"))


@pytest.fixture
def saved(tmp_path):
    LanguageModel(VOCAB, d_model=32).save_pretrained(tmp_path)
    return tmp_path


def test_weights_altered_in_place_are_refused_naming_the_file(saved):
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # a tensor byte: the header still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match=rf"{weights}: the tensors do not match the digest"):
        LanguageModel.from_pretrained(saved)


def test_truncated_weights_are_refused_naming_the_file(saved):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(UserError, match=rf"{weights} is not a readable safetensors file"):
        LanguageModel.from_pretrained(saved)


def test_a_folder_without_config_names_the_file(saved):
    (saved / "config.json").unlink()
    with pytest.raises(UserError, match=rf"{saved / 'config.json'}: no such file"):
        LanguageModel.from_pretrained(saved)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("mixer", "gru", "config.json: \"mixer\": unknown mixer 'gru'"),
        ("mix_with", "gru", "config.json: \"mix_with\": unknown mixer 'gru'"),
        ("hidden", 3, r"config.json: unknown keys \['hidden'\]"),
        ("vocab_size", None, 'config.json: "vocab_size" must be an integer'),
    ],
)
def test_a_bad_config_names_the_file_and_the_key(saved, key, value, message):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(UserError, match=message):
        LanguageModel.from_pretrained(saved)


def test_weights_of_another_model_are_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "num_layers": 3}))
    with pytest.raises(UserError, match="holds weights of another model"):
        LanguageModel.from_pretrained(saved)


@pytest.mark.slow
def test_an_exported_run_scores_and_generates_as_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    trained = run_script("train.py", *TINY, "model=slstm", f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    ckpt, out = metrics["best_checkpoint"], tmp_path / "exported"
    export(OmegaConf.create({"ckpt_path": ckpt, "out": str(out), "overwrite": False}))
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "training.json",
    ]
    card = (out / "README.md").read_text()
    assert f"{metrics['test/ppl']:.4g}" in card and "library_name: xlstm-exp" in card

    from_ckpt, from_folder = load_trained(ckpt), load_trained(out)
    probe = torch.arange(20)[None]
    assert torch.equal(from_ckpt.model(probe), from_folder.model(probe))

    scored = run_script("eval.py", f"ckpt_path={out}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert scored.returncode == 0, scored.stderr[-3000:]
    rescored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert rescored["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)
    assert rescored["global_step"] == metrics["best_step"]

    asked = {"prompt": "Leli ka", "max_new_tokens": 8, "temperature": 1.0, "top_k": None}
    asked |= {"top_p": None, "seed": 3}
    texts = [generate(OmegaConf.create({**asked, "ckpt_path": str(p)})) for p in (ckpt, out)]
    assert texts[0] == texts[1] and texts[0]

    again = OmegaConf.create({"ckpt_path": ckpt, "out": str(out), "overwrite": False})
    with pytest.raises(UserError, match="exists and is not empty"):
        export(again)
    assert (out / "model.safetensors").is_file()  # the refused export left the folder alone
