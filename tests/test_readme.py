"""Every python block of the READMEs runs, so the docs cannot rot.

A block whose first line is `# Backends: a, b` runs on those backends only.

Each `print` in a block says what it prints, in a comment: on the line where
the call ends (`print(tuple(x.shape))  # (2, 3)`), or, when the output has
several lines, in the comment lines right below the call, one per line of
output. The test checks that the block prints exactly that.
"""

import ast
import io
import os
import re
import tokenize

import keras
import pytest

from tests.processes import ROOT

READMES = ["README.md", "README.zh-CN.md"]


def python_blocks(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def expected_prints(block):
    """What each `print` call of `block` must print, in the order written.

    Returns:
        A list of `(line, text)`: the line where the call starts, and the
        output its comment gives without the final newline, or `None` when
        it has no such comment.
    """
    lines = block.splitlines()
    comments = {
        token.start[0]: token.string
        for token in tokenize.generate_tokens(io.StringIO(block).readline)
        if token.type == tokenize.COMMENT
    }
    calls = sorted(
        (node.lineno, node.end_lineno)
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    )
    expected = []
    for start, end in calls:
        if end in comments:
            output = [comments[end]]
        else:
            output = []
            for line in lines[end:]:
                if not line.lstrip().startswith("#"):
                    break
                output.append(line)
        text = "\n".join(re.sub(r"^\s*# ?", "", line) for line in output)
        expected.append((start, text if output else None))
    return expected


def run_block(block, name="block"):
    """Runs `block`; returns what each of its `print` calls printed.

    Each call is recorded on its own, so other writes to stdout (such as
    `model.summary()`) do not get in between.
    """
    printed = []

    def record(*args, **kwargs):
        output = io.StringIO()
        print(*args, file=output, **kwargs)
        printed.append(output.getvalue().removesuffix("\n"))

    exec(
        compile(block, name, "exec"),
        {"__name__": "__main__", "print": record},
    )
    return printed


def print_mismatches(printed, expected):
    """Where `printed` differs from `expected` (see `expected_prints`)."""
    if len(printed) != len(expected):
        return [f"{len(printed)} prints ran, the block has {len(expected)}"]
    return [
        f"line {line}: printed {got!r}, the comment says {want!r}"
        if want is not None
        else f"line {line}: the print has no comment with its output"
        for got, (line, want) in zip(printed, expected, strict=True)
        if got != want
    ]


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
        printed = run_block(block, f"{readme} block {index}")
    finally:
        keras.distribution.set_distribution(None)
    mismatches = print_mismatches(printed, expected_prints(block))
    assert not mismatches, "\n".join(mismatches)


def test_print_mismatches_finds_a_wrong_comment():
    block = (
        "print((2, 3))  # (2, 3)\n"
        "print(\n    [1, 2]\n)  # [1, 3]\n"
        "print('a\\n b')\n"
        "# a\n"
        "#  b\n"
        "print(0)\n"
    )
    expected = expected_prints(block)
    assert expected == [(1, "(2, 3)"), (2, "[1, 3]"), (5, "a\n b"), (8, None)]
    assert print_mismatches(run_block(block), expected) == [
        "line 2: printed '[1, 2]', the comment says '[1, 3]'",
        "line 8: the print has no comment with its output",
    ]
    assert print_mismatches(["(2, 3)"], expected) == [
        "1 prints ran, the block has 4"
    ]
