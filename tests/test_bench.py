"""The throughput benchmark: its plain references and a smoke run of the harness."""

import re
import subprocess
import sys

import pytest
from helpers import ENV, ROOT

sys.path.insert(0, str(ROOT / "bench"))
from plain_models import PlainLM  # noqa: E402

from xlstm_exp.models import LanguageModel  # noqa: E402


@pytest.mark.parametrize("mixer", ["lstm", "attention"])
def test_plain_references_are_the_same_networks_as_ours(mixer):
    """Equal parameter shapes, so a throughput gap is overhead, not a different model."""
    ours = LanguageModel(8192, 256, 4, 4, mixer=mixer, block="post")
    plain = PlainLM(8192, 256, 4, 4, mixer)
    shapes = sorted(tuple(p.shape) for p in ours.parameters())
    assert shapes == sorted(tuple(p.shape) for p in plain.parameters())


@pytest.mark.slow
def test_quick_benchmark_writes_a_table_with_ratios_and_loop_overhead(tmp_path):
    rows = "ours-(mlstm-pre|lstm-post)|plain-lstm"
    command = [sys.executable, "bench/throughput.py", "--quick", "--steps", "1", "--warmup", "1"]
    command += ["--no-bf16", "--contexts", "16", "--only", rows, "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (report,) = tmp_path.glob("*.md")
    text = report.read_text()
    assert re.search(r"\| lstm \| post \| ours \| 16 \| float32 \| [\d.]+M \| [\d,]+ \|", text)
    assert re.search(r"\| \d+\.\d\dx plain \|", text)
    assert re.search(r"overhead [+-]\d+\.\d%", text)
    assert re.search(r"\| LSTM vs plain nn.LSTM \| >= 0.9 \| \d+\.\d\d \|", text)
