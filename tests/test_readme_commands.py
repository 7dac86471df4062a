"""Every command line the README shows runs as it says, at a test's budget.

The README's bash blocks are read here; each command must appear in RUNS below (a new README
command without a way to run it fails the first test), with the overrides that shrink it.
"""

import re
import shlex

import pytest
import torch
from helpers import ROOT, TINY, run_script
from omegaconf import OmegaConf
from wikitext_mirror import make, tiny_mirror

from xlstm_exp import LanguageModel
from xlstm_exp.export import export

pytestmark = pytest.mark.slow

MIRROR = "/data/wikitext"  # where the README's WikiText commands read a local copy
BUDGET = [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2"]
# Commands that need GPUs, a cluster or a W&B account: their config composes (--cfg job), which
# catches a misspelt key, but nothing trains here.
COMPOSE_ONLY = {
    "python train.py trainer=ddp": "needs GPUs",
    "python train.py trainer=ddp trainer.devices=4 trainer.num_nodes=2": "needs 8 GPUs",
    "python train.py trainer=fsdp model.d_model=2048": "needs GPUs",
    "WANDB_MODE=online python train.py -m model=slstm,mlstm": "needs a W&B account",
    "python train.py -m hydra/launcher=slurm_requeue hydra.launcher.partition=gpu trainer=gpu "
    "model=slstm,mlstm": "needs a SLURM cluster",
}
SLURM = (
    "python train.py -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu "
    "hydra.launcher.timeout_min=720 hydra.launcher.nodes=2 hydra.launcher.tasks_per_node=4 "
    "hydra.launcher.gpus_per_node=4 hydra.launcher.cpus_per_task=8 trainer=ddp "
    "trainer.devices=4 trainer.num_nodes=2 model=slstm,mlstm"
)
TASK_BUDGET = [
    *(o for o in BUDGET if not o.startswith("data.")),
    "data.train_examples=64",
    "data.eval_examples=16",
    "data.batch_size=8",
]
# Command -> extra arguments that shrink it to a test's budget.
RUNS = {
    "python train.py data=formal data.task=parity model=slstm": [
        *TASK_BUDGET,
        "data.eval_lengths=[40,60]",
    ],
    "python train.py -m experiment=formal_cpu": [
        *TASK_BUDGET,
        "model=lstm",
        "data.task=parity",
        "data.eval_lengths=[40,60]",
    ],
    "python train.py -m experiment=mqar_cpu": [
        *TASK_BUDGET,
        "model=lstm",
        "data.context_length=64",
        "data.vocab_size=64",
        "optimizer.lr=1e-3",
    ],
    "python train.py": BUDGET,
    "python train.py model=transformer": BUDGET,
    "python train.py model=slstm ckpt_path=auto hydra.run.dir=logs/train/runs/slstm-1": BUDGET,
    "python train.py model=slstm trainer.max_steps=1000": BUDGET,
    "python train.py -m model=slstm,mlstm,lstm,transformer": BUDGET,
    "python train.py model=slstm block=pre": BUDGET,
    "python train.py model=slstm ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt": [
        *TINY,
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
    ],
    "python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt": [],
    "python export.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt out=exported/slstm": [],
    "python eval.py ckpt_path=exported/slstm": [],
    "python -m xlstm_exp.lm_eval --model_args pretrained=exported/mlstm-wt2 --tasks "
    'wikitext_stream,wikitext_articles --metadata \'{"data_path": "<local WikiText folder>", '
    '"data_name": "wikitext-2-v1"}\'': [],
    "python train.py -m hparams_search=mlstm_optuna": [*BUDGET, "hydra.sweeper.n_trials=1"],
    "python train.py -m hparams_search=mlstm_optuna max_tokens=2e7 hydra.sweeper.n_trials=50 "
    "hydra.sweeper.storage=sqlite:///optuna.db": [
        *BUDGET,
        "max_tokens=512",
        "hydra.sweeper.n_trials=1",
    ],
    "python train.py -m model=lstm,slstm,mlstm,transformer model.target_params=5M seed=1,2,3 "
    "optimizer.lr=1e-3,3e-3": [*BUDGET, "model.target_params=1M", "seed=1", "optimizer.lr=1e-3"],
    "python -m xlstm_exp.report logs/train/multiruns/<timestamp>": [],
    'python generate.py ckpt_path=<run>/checkpoints/last.ckpt prompt="Leli ka" max_new_tokens=50 '
    "temperature=0.8 top_k=50 seed=1": [],
    "python eval.py ckpt_path=<run>/checkpoints/last.ckpt eval.stateful=true": [],
    "python train.py logger=csv": BUDGET,
    "python train.py data=wikitext2 data.path=/data/wikitext data.name=wikitext-2-v1 "
    "tokenizer=word": [*BUDGET],
    "python train.py -m experiment=wt2_cpu model=lstm,slstm,mlstm,transformer seed=1,2 "
    "optimizer.lr=2e-3,6e-3 data.path=<local WikiText folder> data.name=wikitext-2-v1 "
    "logger=csv": [
        *BUDGET,
        "model=lstm",
        "seed=1",
        "optimizer.lr=2e-3",
        "max_tokens=null",
        "model.target_params=null",
        "tokenizer.vocab_size=300",
    ],
}


def readme_commands() -> list[str]:
    """The commands of the README's bash blocks (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith(("#", "make ", "source ")):
                commands.append(" ".join(line.split()))
    return commands


def test_every_readme_command_has_a_way_to_run_here():
    known = {*RUNS, *COMPOSE_ONLY, SLURM}
    assert set(readme_commands()) <= known, set(readme_commands()) - known
    assert known <= set(readme_commands()), "RUNS lists a command the README no longer shows"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of the README's sLSTM command, for the commands that read its checkpoint, with its
    last checkpoint exported to `<run>/exported`, for those that read an exported folder."""
    out = tmp_path_factory.mktemp("readme") / "run"
    result = run_script("train.py", "model=slstm", *BUDGET, f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = out / "checkpoints" / "last.ckpt"
    export(
        OmegaConf.create({"ckpt_path": str(ckpt), "out": str(out / "exported"), "overwrite": False})
    )
    return out


def wikitext_model(tmp_path) -> tuple[str, str]:
    """An exported (untrained) model on the tiny mirror's word-level vocabulary, for the
    lm-eval command; returns the mirror and the folder."""
    mirror = tiny_mirror(tmp_path / "mirror")
    data = make(mirror, tmp_path / "cache", kind="word")
    folder = tmp_path / "model"
    torch.manual_seed(0)
    LanguageModel(data.vocab_size, d_model=32).save_pretrained(folder)
    data.tokenizer.save(str(folder / "tokenizer.json"))
    return str(mirror), str(folder)


def on_test_data(args: list[str], extra: list[str], tmp_path) -> tuple[list[str], list[str]]:
    """A WikiText command pointed at the tests' tiny mirror."""
    mirror = tiny_mirror(tmp_path / "mirror")
    args = [a.replace(MIRROR, str(mirror)).replace("wikitext-2-v1", "tiny-v1") for a in args]
    extra = [o for o in extra if not o.startswith("data.")]
    return args, [
        *extra,
        "data.context_length=16",
        "data.batch_size=4",
        f"tokenizer.cache_dir={tmp_path}",
    ]


def run_readme(command: str, extra: list[str], tmp_path, trained):
    command = command.replace("out=exported/slstm", f"out={tmp_path / 'exported'}")
    command = command.replace("exported/slstm", f"{trained}/exported")
    command = command.replace("logs/train/runs/<run>", str(trained)).replace("<run>", str(trained))
    command = command.replace("sqlite:///optuna.db", f"sqlite:///{tmp_path}/optuna.db")
    command = command.replace("<local WikiText folder>", MIRROR)
    script, *args = shlex.split(command.removeprefix("python "))
    if args[:1] == ["xlstm_exp.lm_eval"]:
        mirror, folder = wikitext_model(tmp_path)
        args = [a.replace("exported/mlstm-wt2", folder) for a in args]
        args = [a.replace(MIRROR, mirror).replace("wikitext-2-v1", "tiny-v1") for a in args]
        return run_script("-m", *args)
    if script == "-m":  # python -m xlstm_exp.report <folder>: the folder of a sweep made here
        sweep = tmp_path / "sweep"
        made = run_script("train.py", "-m", "model=lstm", *BUDGET, f"hydra.sweep.dir={sweep}")
        assert made.returncode == 0, made.stderr[-3000:]
        return run_script("-m", args[0], str(sweep))
    if f"data.path={MIRROR}" in command:
        args, extra = on_test_data(args, extra, tmp_path)
    where = "hydra.sweep.dir" if "-m" in args or "hparams_search" in command else "hydra.run.dir"
    args = [a for a in args if not a.startswith(f"{where}=")]  # the command's own folder
    return run_script(script, *args, *extra, f"{where}={tmp_path / 'out'}")


@pytest.mark.parametrize("command", sorted(RUNS))
def test_readme_command_runs(command, tmp_path, trained):
    result = run_readme(command, RUNS[command], tmp_path, trained)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", sorted([*COMPOSE_ONLY, SLURM]))
def test_readme_command_composes(command):
    """`--cfg job` does not combine with -m: the first value of each swept key stands in."""
    words = [w for w in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=\S*", w)]  # WANDB_MODE
    script, *args = [w for w in words if w not in ("python", "-m")]
    args = [a.split(",")[0] for a in args]
    result = run_script(script, *args, "--cfg", "job")
    assert result.returncode == 0, result.stderr[-3000:]
