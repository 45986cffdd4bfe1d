"""The real-model suite (tests/real_models), run by `pytest` in a fresh process of its own: at its
peak it takes a process to 5 GB, which would then count against every later child's memory
figures (see pytest_ignore_collect in conftest.py). `pytest -m "not real_models"` skips it."""

from __future__ import annotations

import pytest

from tests.subsuite import run_in_own_process


@pytest.mark.real_models
@pytest.mark.timeout(2400)
def test_real_model_suite_in_its_own_process():
    run_in_own_process("tests/real_models", timeout=2300)
