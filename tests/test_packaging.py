"""The sdist and the wheel build, hold the package, and install on their own.

`python -m build` builds the sdist from the checkout and then the wheel from
that sdist, so the wheel only builds if the sdist holds everything setup.py
reads. The wheel is then installed into a folder of its own and imported from
there, away from the editable checkout.
"""

import json
import os
import tarfile
import zipfile

import keras
import pytest

import keras_self_attention
from tests.processes import ROOT, run_python

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="what is packaged does not depend on the backend; runs once, "
    "under KERAS_BACKEND=tensorflow (or unset)",
)

VERSION = keras_self_attention.__version__
PACKAGE = "keras_self_attention"
MODULES = sorted(
    f"{PACKAGE}/{name}"
    for name in os.listdir(os.path.join(ROOT, PACKAGE))
    if name.endswith(".py")
)

# Runs in the installed copy: where it was imported from, its version, and
# the shape of a layer's output.
CHECK_INSTALLED = """
import json
import numpy as np
import keras_self_attention
from keras_self_attention import SeqSelfAttention

layer = SeqSelfAttention(attention_width=3)
outputs = layer(np.random.rand(2, 5, 4).astype("float32"))
print(json.dumps({
    "file": keras_self_attention.__file__,
    "version": keras_self_attention.__version__,
    "shape": list(outputs.shape),
}))
"""


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """Builds the sdist, then the wheel from it; returns both paths."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation builds with the setuptools of this environment
    # (requirements-dev.txt asks for one with bdist_wheel built in), so the
    # test needs no network: an isolated build downloads setuptools into a
    # fresh environment for each of the two builds.
    run_python("-m", "build", "--no-isolation", "--outdir", out, ROOT)
    sdist = out / f"{PACKAGE}-{VERSION}.tar.gz"
    wheel = out / f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    assert sorted(os.listdir(out)) == [wheel.name, sdist.name]
    return sdist, wheel


def test_sdist_holds_the_package_and_what_setup_py_reads(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        prefix = f"{PACKAGE}-{VERSION}/"
        names = {name.removeprefix(prefix) for name in archive.getnames()}
    for name in ["setup.py", "requirements.txt", "README.md", "LICENSE"]:
        assert name in names
    assert set(MODULES) <= names
    shipped_tops = {name.split("/")[0] for name in names}
    for junk in ["tests", "benchmarks", "docs", ".ci", "build", "dist"]:
        assert junk not in shipped_tops
    assert not [name for name in names if name.endswith((".pyc", ".pyo"))]


def test_wheel_holds_the_package_only(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"{PACKAGE}-{VERSION}.dist-info/METADATA")
    assert sorted(n for n in names if not n.startswith(f"{PACKAGE}-")) == (
        MODULES
    )
    assert f"Version: {VERSION}" in metadata.decode().splitlines()


def test_installed_wheel_imports_and_runs(dists, tmp_path):
    _, wheel = dists
    target = tmp_path / "site"
    run_python(
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-index",
        "--target",
        target,
        wheel,
    )
    # Outside the repository, so the checkout is not on `sys.path`; Keras
    # and numpy still come from this environment.
    done = run_python(
        "-c",
        CHECK_INSTALLED,
        backend="tensorflow",
        cwd=tmp_path,
        PYTHONPATH=str(target),
        timeout=120,
    )
    installed = json.loads(done.stdout.splitlines()[-1])
    assert os.path.commonpath(
        [os.path.realpath(installed["file"]), os.path.realpath(target)]
    ) == os.path.realpath(target)
    assert installed["version"] == VERSION
    assert installed["shape"] == [2, 5, 4]
