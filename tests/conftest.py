import os

# Tests never reach W&B servers.
os.environ.setdefault("WANDB_MODE", "disabled")
