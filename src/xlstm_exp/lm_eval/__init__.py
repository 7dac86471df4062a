"""lm-evaluation-harness support: the `xlstm_exp` model (`adapter.XLSTMLM`, registered with
lm-eval when this package is imported) and the WikiText tasks in `tasks/` (`TASKS_DIR`), run by
`python -m xlstm_exp.lm_eval` (README)."""

import sys
from pathlib import Path

from xlstm_exp.cli import user_errors_exit_2
from xlstm_exp.user_error import UserError

try:
    import lm_eval  # noqa: F401
except ImportError as error:
    missing = UserError(
        'lm-eval is an optional extra; install it with pip install -e ".[eval]" '
        "(which make install does)"
    )
    # `python -m xlstm_exp.lm_eval` imports this package before its __main__ runs, so only here
    # can the command report a user error in one line; Python sets sys.argv[0] to "-m" while
    # it locates the module.
    if sys.argv[:1] == ["-m"]:
        with user_errors_exit_2():
            raise missing from error
    raise missing from error

from xlstm_exp.lm_eval.adapter import XLSTMLM  # noqa: E402

TASKS_DIR = Path(__file__).parent / "tasks"

__all__ = ["TASKS_DIR", "XLSTMLM"]
