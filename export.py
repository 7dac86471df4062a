"""Export a checkpoint: `python export.py ckpt_path=<file> out=<folder>` (see README)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from xlstm_exp.cli import require, user_errors_exit_2

    with user_errors_exit_2():
        for key, example in [
            ("ckpt_path", "ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"),
            ("out", "out=exported/mlstm-wt2"),
        ]:
            require(cfg, key, f"python export.py {example}")
        from xlstm_exp.export import export

        export(cfg)


if __name__ == "__main__":
    main()
