"""Fixtures shared by the engine tests."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="session")
def vgg_digits(tmp_path_factory):
    """The 1.15 M-parameter VGG-style CNN trained here on 1,297 of scikit-learn's digits (500
    held out; benchmarks/models/vgg_digits.py): the compression tests' real CNN, trained once."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "models"))
    from vgg_digits import train

    return train(tmp_path_factory.mktemp("vgg"))
