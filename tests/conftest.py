"""Shared test settings: quiet TensorFlow, offscreen Qt, and the sample's location."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE
