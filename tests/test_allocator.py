"""The allocator setting that lets CPU training steps reuse freed memory."""

import subprocess
import sys

import pytest

# Page faults of the last two of six training steps of an MLP on 8192 tokens (~70k per step
# when every large activation is mapped afresh).
STEP_FAULTS = """
import resource, sys, torch
from xlstm_exp.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
model = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 512))
x = torch.randn(8192, 512)
for step in range(6):
    if step == 4:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(x).sum().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in():
    def faults(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", STEP_FAULTS, mode], capture_output=True, text=True, check=True
        )
        return int(done.stdout)

    default, kept = faults("default"), faults("keep")
    assert default > 50_000, "glibc maps large blocks afresh by default"
    assert kept < default / 3
