import os

import torch

# Tests never reach W&B servers.
os.environ.setdefault("WANDB_MODE", "disabled")
# Under pytest-xdist each worker gets its share of the cores, for its own process and for the
# train.py runs it starts: OpenMP threads of two workers contending for the same cores run many
# times slower than one thread each.
workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if workers > 1:
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
# Without CUDA the Triton kernels run through Triton's interpreter. Triton reads the switch when
# it is first imported, which other libraries (Lightning) may do while tests are collected, so
# it is set here, before any test module loads. backend=auto never picks Triton on a CPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
