import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def requirements(name):
    lines = (line.split("#")[0].strip() for line in read(name).splitlines())
    return [line for line in lines if line and not line.startswith("-")]


version = re.search(
    r'^__version__ = "([^"]+)"',
    read("keras_self_attention/__init__.py"),
    re.M,
).group(1)

setup(
    name="keras-self-attention",
    version=version,
    description="Sequence self-attention layers for Keras 3 on every backend",
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["keras_self_attention*"]),
    python_requires=">=3.10",
    install_requires=requirements("requirements.txt"),
    extras_require={"plot": ["matplotlib"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
