"""A mistake the user can fix ends in one line, `error: ...`, and exit status 2; a bug, or
HYDRA_FULL_ERROR=1, keeps the traceback. (Argument and setting checks themselves: see
test_user_mistakes.py.)"""

import math

import pytest
from helpers import ENV, TINY, compose_train, run_script

from xlstm_exp.cli import user_errors_exit_2
from xlstm_exp.from_config import build_data
from xlstm_exp.run import run_job

NOT_DATA = [o for o in TINY if not o.startswith("data.")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "args"),
    [
        ("data.path", ["data=wikitext2", "data.path=/nonexistent", "data.name=wikitext-2-v1"]),
        ("ckpt_path", ["ckpt_path={tmp}/missing.ckpt"]),
        ("model.d_model", ["model.d_model=-5"]),
    ],
)
def test_train_py_reports_a_mistake_in_one_line(key, args, tmp_path):
    """Before, each printed a traceback (from wikitext_source.py, checkpoint.py, torch's
    sparse.py) and Hydra's advice to set HYDRA_FULL_ERROR, and exited with status 1."""
    args = [arg.format(tmp=tmp_path) for arg in args]
    tiny = NOT_DATA if key == "data.path" else TINY  # TINY's data keys are the built-in corpus's
    result = run_script("train.py", *tiny, *args, f"hydra.run.dir={tmp_path}/run")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}="), result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr


@pytest.mark.slow
def test_hydra_full_error_shows_the_traceback_of_a_user_error(tmp_path):
    """Before, a missing ckpt_path printed its one line even with HYDRA_FULL_ERROR=1."""
    result = run_script(
        "eval.py", f"hydra.run.dir={tmp_path}", env={**ENV, "HYDRA_FULL_ERROR": "1"}
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "UserError: ckpt_path is missing" in result.stderr


def test_a_multirun_job_records_its_user_error_in_one_line_and_the_sweep_goes_on(tmp_path, capsys):
    """Before, error.txt (whose last line the sweep's FAILED row shows) held a traceback."""
    cfg = compose_train([*TINY, "model.d_model=-5", "hydra.mode=MULTIRUN"], tmp_path / "0")
    assert math.isnan(run_job(cfg))
    line = "error: model.d_model=-5 must be a positive integer; pass e.g. model.d_model=128"
    assert (tmp_path / "0" / "error.txt").read_text() == f"{line}\n"
    stderr = capsys.readouterr().err
    assert "the sweep goes on" in stderr and line in stderr and "Traceback" not in stderr


def test_a_user_error_wrapped_by_hydra_instantiate_exits_2_and_a_bug_propagates(
    tmp_path, capsys, monkeypatch
):
    """Hydra wraps a data module's constructor errors in an InstantiationException, which the
    handler must look through; before, there was no handler at all."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    cfg = compose_train(["data=formal", "data.task=nope"], tmp_path)
    with pytest.raises(SystemExit) as stopped, user_errors_exit_2():
        build_data(cfg.data)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("error: unknown formal task 'nope' (data.task=nope)")
    with pytest.raises(ZeroDivisionError), user_errors_exit_2():
        _ = 1 / 0
