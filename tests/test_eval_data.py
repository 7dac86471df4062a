"""eval.py on other data than the checkpoint's: read with the checkpoint's tokenizer."""

import json

import pytest
from helpers import TINY, compose_train, run_script
from wikitext_mirror import tiny_mirror

from xlstm_exp.run import train

pytestmark = pytest.mark.slow


def test_eval_on_named_data_takes_the_checkpoints_word_level_tokenizer(tmp_path):
    mirror = tiny_mirror(tmp_path / "mirror")
    data = ["data=wikitext2", f"data.path={mirror}", "data.name=tiny-v1"]
    word_level = ["tokenizer=word", f"tokenizer.cache_dir={tmp_path / 'cache'}"]
    tiny = [o for o in TINY if not o.startswith("data.")]
    shape = ["data.context_length=32", "data.batch_size=4"]
    trained = train(compose_train([*tiny, *data, *shape, *word_level], tmp_path / "run"))
    (best,) = (tmp_path / "run" / "checkpoints").glob("best-step*.ckpt")  # what `trained` scored
    # The user names the data only: no tokenizer=word, which the checkpoint's vocabulary needs.
    result = run_script(
        "eval.py", f"ckpt_path={best}", *data, *shape, f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["val/ppl"] == pytest.approx(trained["val/ppl"], rel=1e-5)
    # Word level: a token is a word, so the per-word perplexity is the per-token one.
    assert metrics["val/word_ppl"] == pytest.approx(metrics["val/ppl"], rel=1e-5)
