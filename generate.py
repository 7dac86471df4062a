"""Sample text from a checkpoint: `python generate.py ckpt_path=<file> prompt="..."` (README)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    from xlstm_exp.cli import require, user_errors_exit_2

    with user_errors_exit_2():
        for key, example in [
            ("ckpt_path", "ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"),
            ("prompt", 'prompt="The history of"'),
        ]:
            require(cfg, key, f"python generate.py {example}")
        from xlstm_exp.generate import generate

        generate(cfg)


if __name__ == "__main__":
    main()
