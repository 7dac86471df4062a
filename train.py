"""Train a language model: `python train.py model=mlstm block=pre` (see README and conf/)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here so that a bad command line fails before the ~10 s of framework imports.
    from xlstm_exp.cli import user_errors_exit_2

    with user_errors_exit_2():
        from xlstm_exp.run import run_job

        return run_job(cfg)


if __name__ == "__main__":
    main()
