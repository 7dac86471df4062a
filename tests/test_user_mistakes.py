"""Mistakes users make with the commands: clear errors before any work, never a raw dump."""

import pytest
import torch
from helpers import TINY, compose_train, run_script
from wikitext_mirror import tiny_mirror

from xlstm_exp.checkpoint import CONFIG_KEY, check_same_model
from xlstm_exp.lm import LanguageModelingModule
from xlstm_exp.models import LanguageModel
from xlstm_exp.run import train
from xlstm_exp.sampling import check_sampling, generate_tokens


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ((10, -1.0, None, None), "temperature=-1.0"),
        ((10, 1.0, None, 1.5), "top_p=1.5"),
        ((10, 1.0, None, 0.0), "top_p=0.0"),
        ((10, 1.0, -3, None), "top_k=-3"),
        ((-1, 1.0, None, None), "max_new_tokens=-1"),
    ],
)
def test_sampling_settings_are_checked(args, key):
    with pytest.raises(ValueError, match=f"{key} is invalid"):
        check_sampling(*args)
    model = LanguageModel(20, d_model=8, num_layers=1, num_heads=1, mixer="lstm")
    with pytest.raises(ValueError, match=key):
        next(generate_tokens(model, torch.zeros(1, 2, dtype=torch.long), *args))


def test_valid_sampling_settings_pass():
    for args in [(0, 0.0, 0, 1.0), (5, 0.7, 40, 0.9), (5, 1.0, None, None)]:
        check_sampling(*args)


def checkpoint_of(model: LanguageModel, config: dict) -> dict:
    return {"state_dict": LanguageModelingModule(model).state_dict(), CONFIG_KEY: config}


def test_another_model_is_named_by_its_differing_keys():
    stored = {"model": {"mixer": "mlstm", "d_model": 16}, "block": {"kind": "auto"}}
    checkpoint = checkpoint_of(LanguageModel(30, 16, 1, 2, mixer="mlstm"), stored)
    same = LanguageModel(30, 16, 1, 2, mixer="mlstm")
    check_same_model(checkpoint, same, stored, "run.ckpt")
    other = LanguageModel(30, 16, 1, 2, mixer="lstm")
    asked = {"model": {"mixer": "lstm", "d_model": 16}, "block": {"kind": "auto"}}
    with pytest.raises(
        ValueError,
        match=r"run.ckpt holds another model.*model.mixer=lstm "
        r"\(checkpoint: mlstm\).*drop the overrides",
    ):
        check_same_model(checkpoint, other, asked, "run.ckpt")


def test_an_mlstm_chunk_size_without_a_kernel_tile_stops_the_build(tmp_path):
    # On every backend, CPU included: the same config must not fail later on a GPU.
    overrides = [*TINY, "model=xlstm", "model.mixer_options.mlstm.chunk_size=48"]
    cfg = compose_train(overrides, tmp_path / "run")
    with pytest.raises(
        ValueError,
        match=r"^mLSTM chunk_size=48 must be one of 16, 32, 64, 128 \(the Triton kernel's tile "
        r"sizes\)$",
    ):
        train(cfg)


@pytest.mark.slow
def test_another_model_or_vocabulary_stops_before_loading(tmp_path):
    train(compose_train([*TINY, "model=mlstm"], tmp_path / "run"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match=r"model.mixer=lstm \(checkpoint: mlstm\)"):
        train(compose_train([*TINY, "model=lstm", f"ckpt_path={last}"], tmp_path / "again"))
    # Scoring the built-in corpus's model on WikiText: another vocabulary, named by its keys.
    mirror = tiny_mirror(tmp_path / "mirror")
    other_data = [
        "data=wikitext2",
        f"data.path={mirror}",
        "data.name=tiny-v1",
        "tokenizer=bpe",  # the checkpoint's tokenizer is the default; this one is another
        "tokenizer.vocab_size=300",
        f"tokenizer.cache_dir={tmp_path / 'cache'}",
    ]
    scored = run_script("eval.py", f"ckpt_path={last}", *other_data, f"hydra.run.dir={tmp_path}/e")
    assert scored.returncode != 0 and "holds another model" in scored.stderr
    assert "data.name=tiny-v1" in scored.stderr and "size mismatch" not in scored.stderr


@pytest.mark.slow
def test_entry_points_refuse_bad_arguments_in_one_line(tmp_path):
    missing = run_script("eval.py", f"hydra.run.dir={tmp_path}/e")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: ckpt_path is missing; pass it, e.g. python eval.py "
        "ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"
    ]
    bad = run_script(
        "generate.py",
        "ckpt_path=x.ckpt",
        "prompt=hi",
        "temperature=-1",
        f"hydra.run.dir={tmp_path}/g",
    )
    assert bad.returncode != 0 and "temperature=-1 is invalid" in bad.stderr
    report = run_script("-m", "xlstm_exp.report", str(tmp_path / "no-such-sweep"))
    assert report.returncode == 2 and "Traceback" not in report.stderr
    assert "no-such-sweep is not a folder" in report.stderr
