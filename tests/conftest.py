"""Shared test settings: quiet TensorFlow, offscreen Qt, and the sample's location."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")  # offscreen plugin chatter


def pytest_configure(config) -> None:
    # Before pytest-qt makes the QApplication: Qt WebEngine (the Netron view) needs this first.
    from app.netron_view import prepare_environment

    prepare_environment()


ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE
