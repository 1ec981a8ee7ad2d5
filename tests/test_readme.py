"""Every python block of the READMEs runs, so the docs cannot rot.

A block whose first line is `# Backends: a, b` runs on those backends only.
"""

import os
import re

import keras
import pytest

from tests.processes import ROOT

READMES = ["README.md", "README.zh-CN.md"]


def python_blocks(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


BLOCKS = [
    pytest.param(readme, i, block, id=f"{readme}-{i}")
    for readme in READMES
    for i, block in enumerate(python_blocks(readme))
]


def test_readmes_have_examples():
    for readme in READMES:
        assert len(python_blocks(readme)) >= 7, readme


@pytest.mark.parametrize("readme,index,block", BLOCKS)
def test_readme_block_runs(readme, index, block, tmp_path, monkeypatch):
    backends = re.match(r"# Backends: (.*)\n", block)
    if backends and keras.backend.backend() not in re.split(
        r",\s*", backends.group(1)
    ):
        pytest.skip(f"a block for {backends.group(1)}")
    monkeypatch.chdir(tmp_path)  # blocks that save files write them here
    try:
        exec(
            compile(block, f"{readme} block {index}", "exec"),
            {"__name__": "__main__"},
        )
    finally:
        keras.distribution.set_distribution(None)
