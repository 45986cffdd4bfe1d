"""GUI test hygiene."""

import gc
import os

import pytest

from workflows.warm import DISABLE_ENV

# No warm step workers behind every test's window (each would import torch on 2 cores);
# tests/app/test_warm_app.py turns them on where they are the subject.
os.environ.setdefault(DISABLE_ENV, "1")


@pytest.fixture(autouse=True)
def _free_windows_between_tests():
    """Free each test's windows right after it, not whenever Python's cyclic GC next runs.

    A closed window is only garbage (its Python wrapper sits in reference cycles through its
    signal connections); left to the GC, it is destroyed at a random moment of a later test,
    web view and threads included, from inside that test's event loop, which crashed Qt
    WebEngine now and then. The app itself keeps one window for its whole life.
    """
    yield
    gc.collect()
