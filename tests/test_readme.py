"""The README's Python examples run as written."""

import re

from helpers import ROOT

from xlstm_exp.models.registry import MIXERS


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    registered = dict(MIXERS)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        # The "Add a cell" example registers a mixer; the other tests see the shipped ones.
        MIXERS.clear()
        MIXERS.update(registered)
