import os

import torch

# Tests never reach W&B servers.
os.environ.setdefault("WANDB_MODE", "disabled")
# Without CUDA the Triton kernels run through Triton's interpreter. Triton reads the switch when
# it is first imported, which other libraries (Lightning) may do while tests are collected, so
# it is set here, before any test module loads. backend=auto never picks Triton on a CPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
