"""Shared test settings: quiet TensorFlow, offscreen Qt, and the sample's location."""

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")  # offscreen plugin chatter
# Step logs of the CLI commands the tests run go to a throwaway folder, not the user's.
os.environ.setdefault("DOCKYARD_LOG_DIR", tempfile.mkdtemp(prefix="dockyard-test-logs-"))


def pytest_configure(config) -> None:
    # Before pytest-qt makes the QApplication: Qt WebEngine (the Netron view) needs this first.
    # Without Qt installed (an engine-only environment) there is nothing to prepare: the engine
    # tests need no Qt (tests/test_engine_without_qt.py proves it).
    try:
        from app.netron_view import prepare_environment
    except ImportError:
        return
    prepare_environment()


ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


APP_TESTS = ROOT / "tests" / "app"
REAL_MODEL_TESTS = ROOT / "tests" / "real_models"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Which subsuite runners were selected: the first to run starts them all (tests/subsuite.py)."""
    from tests import subsuite

    files = {item.nodeid.split("::")[0] for item in session.items}
    subsuite.SELECTED.update(folder for f, folder in subsuite.RUNNERS.items() if f in files)


def _only(folder: Path, config: pytest.Config) -> bool:
    return all(Path(arg.split("::")[0]).resolve().is_relative_to(folder) for arg in config.args)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The GUI tests and the real-model suite run in processes of their own
    (tests/test_gui_suite.py, tests/test_real_models_suite.py) unless asked for alone.

    TensorFlow and a started Qt WebEngine (the Netron view) cannot share a process: importing TF
    after WebEngine segfaults, and with both loaded the interpreter aborts at exit ("free():
    invalid pointer"). The app never imports TensorFlow (its steps run in child processes), but
    the engine tests do, in pytest's own process.

    The real models take pytest's process to 5 GB at their peak, and Linux hands a process's
    peak RSS on to every child it starts (ru_maxrss survives fork and exec): libFuzzer then
    counted 5 GB against its 4 GB limit in every later fuzzing child.
    """
    for folder in (APP_TESTS, REAL_MODEL_TESTS):
        if collection_path == folder and not _only(folder, config):
            return True
    return None
