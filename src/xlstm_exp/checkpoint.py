"""Reading checkpoints without unpickling arbitrary objects, with errors that name the file."""

from pathlib import Path

import torch

# Where a checkpoint keeps the resolved run config, so eval.py can rebuild the model from the
# checkpoint alone.
CONFIG_KEY = "xlstm_exp_config"
# The data's tokenizer (a `tokenizers` JSON string), so generate.py needs no data files.
TOKENIZER_KEY = "tokenizer"


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents, loaded with `weights_only=True` (tensors and plain Python
    containers only), on the CPU."""
    if not str(path).strip():
        raise ValueError(
            "ckpt_path is empty: give the checkpoint file, e.g. ckpt_path=.../last.ckpt"
        )
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (check ckpt_path)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"checkpoint {path} cannot be read (truncated, corrupt or not a checkpoint of this "
            f"framework): {error}"
        ) from error
