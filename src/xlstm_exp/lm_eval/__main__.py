"""`python -m xlstm_exp.lm_eval [lm-eval options]`: lm-eval's own command line with the
`xlstm_exp` model and this package's WikiText tasks, e.g.

    python -m xlstm_exp.lm_eval --model_args pretrained=<folder> --tasks wikitext_stream \\
        --metadata '{"data_path": "/data/wikitext", "data_name": "wikitext-2-v1"}'

It adds `--model xlstm_exp` when no model is named, `--include_path` at `tasks/`, and, unless a
`--device` (or a `--config` file) is given, `--device cuda` where PyTorch sees a GPU, else
`cpu` (lm-eval's own default is cuda:0, wherever it runs).
"""

import sys

import torch
from lm_eval.__main__ import cli_evaluate

from xlstm_exp.cli import user_errors_exit_2
from xlstm_exp.lm_eval import TASKS_DIR
from xlstm_exp.user_error import UserError

SUBCOMMANDS = ("run", "ls", "validate")


def given(args: list[str], *flags: str) -> bool:
    return any(arg == flag or arg.startswith(f"{flag}=") for arg in args for flag in flags)


def lm_eval_argv(args: list[str], tasks_dir: str, cuda: bool) -> list[str]:
    """lm-eval's arguments for ours, its subcommand first (`run` when none is named, as lm-eval
    itself assumes)."""
    command, rest = (args[0], args[1:]) if args and args[0] in SUBCOMMANDS else ("run", args)
    if given(rest, "--include_path"):
        # lm-eval's command line takes one task folder, and this one must be it.
        raise UserError(
            "--include_path is set to xlstm_exp's task folder; name your own tasks by their "
            "YAML files instead (--tasks path/to/task.yaml)"
        )
    added = ["--include_path", tasks_dir]
    if command == "run":
        if not given(rest, "--model", "-M"):
            added += ["--model", "xlstm_exp"]
        if not given(rest, "--device", "--config", "-C"):
            added += ["--device", "cuda" if cuda else "cpu"]
    return [command, *rest, *added]


def main() -> None:
    """Run lm-eval's command line; a user error (a missing model folder, data that cannot be
    read, ...) ends in one line and status 2, as in the other entry points."""
    with user_errors_exit_2():
        arguments = lm_eval_argv(sys.argv[1:], str(TASKS_DIR), torch.cuda.is_available())
        sys.argv = [sys.argv[0], *arguments]
        cli_evaluate()


if __name__ == "__main__":
    main()
