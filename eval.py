"""Evaluate a checkpoint: `python eval.py ckpt_path=<file> [data=...]` (see README)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from xlstm_exp.cli import require, user_errors_exit_2

    with user_errors_exit_2():
        require(
            cfg, "ckpt_path", "python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"
        )
        from xlstm_exp.evaluate import evaluate

        evaluate(cfg)


if __name__ == "__main__":
    main()
