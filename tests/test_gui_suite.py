"""The GUI tests (tests/app), run by `pytest` in a fresh process of their own: Qt WebEngine and
TensorFlow cannot share one (see pytest_ignore_collect in conftest.py)."""

from __future__ import annotations

import pytest

from tests.subsuite import run_in_own_process


@pytest.mark.timeout(1800)
def test_gui_suite_in_its_own_process():
    run_in_own_process("tests/app", timeout=1700)
