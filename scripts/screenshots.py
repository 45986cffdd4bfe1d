"""Render every wizard page to PNG in docs/screenshots/ (run under Xvfb for a real window):

    xvfb-run -a -s "-screen 0 1280x800x24" python scripts/screenshots.py

Opens the sample, converts and quantizes it, runs a test input and a benchmark, exports the Docker
target, then grabs each page; then prunes the sample as eager PyTorch (`--only prune`: just that).
`--only graph`: the 10,000-node graph views; `--only frameworks`: the installed app's offer to
prepare PyTorch.
Keep it: the pictures can be regenerated after UI changes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.main_window import MainWindow  # noqa: E402
from app.netron_view import prepare_environment  # noqa: E402
from app.pages.convert_page import ConvertPage  # noqa: E402
from app.pages.export_page import ExportPage  # noqa: E402
from app.pages.inspect_page import InspectPage  # noqa: E402
from app.pages.load_page import LoadPage  # noqa: E402
from app.pages.test_page import TestPage  # noqa: E402
from app.session import Session  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def wait_for(window: MainWindow, step: str, timeout_ms: int = 600_000) -> None:
    loop = QEventLoop()
    window.step_finished.connect(lambda s, ok: loop.quit() if s == step else None)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()


def settle(ms: int = 300) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def grab(window: MainWindow, index: int, name: str) -> None:
    window.go_to(index)
    settle()
    prefix = f"{index + 1:02d}" if name != "dark" else "08"
    window.grab().save(str(OUT / f"{prefix}-{name}.png"))


def wait_until(condition, timeout_ms: int = 60_000) -> None:
    for _ in range(timeout_ms // 100):
        if condition():
            return
        settle(100)


def overlay_screen(window: MainWindow, inspect: InspectPage) -> None:
    """The native graph of the float model, coloured by the INT8 variant's SQNR per node."""
    window.go_to(1)
    inspect.tabs.setCurrentWidget(inspect.native)
    onnx = next(i for i in range(inspect.variant.count())
                if inspect.variant.itemText(i).startswith("ONNX"))  # fmt: skip
    inspect.variant.setCurrentIndex(onnx)  # the float graph: the INT8 SQNR is drawn on it
    wait_until(lambda: inspect.native.result is not None)
    inspect.native.measure_requested.emit(inspect.native.path or "")
    wait_for(window, "insight")
    key = next(o.key for o in inspect.native.available if o.key.startswith("sqnr:int8"))
    inspect.native.overlay.setCurrentIndex(inspect.native.overlay.findData(key))
    inspect.native.jump_to_worst()
    settle(500)
    window.grab().save(str(OUT / "02-inspect-overlay.png"))
    inspect.tabs.setCurrentWidget(inspect.compare)
    wait_until(lambda: inspect.compare.result is not None and len(inspect.compare.layouts) == 2)
    settle(500)
    window.grab().save(str(OUT / "02-inspect-compare.png"))
    inspect.tabs.setCurrentIndex(0)


def big_graph_screens(tmp: Path) -> None:
    """A 10,000-node graph in the native view: every node, then one box per block."""
    import onnx

    from app.pages.graph_panel import GraphPanel
    from workflows.synthetic import branching_model

    path = tmp / "branching-10k.onnx"
    onnx.save(branching_model(10_000), str(path))
    panel = GraphPanel()
    panel.resize(1280, 800)
    panel.show()
    panel.show_file(str(path))
    wait_until(lambda: panel.result is not None, 120_000)
    settle(300)
    panel.grab().save(str(OUT / "02-graph-10k.png"))
    panel.depth.setValue(2)
    wait_until(lambda: panel.result is not None and panel.result["depth"] == 2, 60_000)
    panel.open_block("stage1/block2")
    wait_until(lambda: panel.result["expanded"] == ["stage1/block2"], 60_000)
    settle(300)
    panel.grab().save(str(OUT / "02-graph-10k-blocks.png"))
    # The same graph with names that say nothing (Conv_12): blocks found from its structure.
    proto = onnx.load(str(path))
    for i, node in enumerate(proto.graph.node):
        node.name = f"{node.op_type}_{i}"
    anonymous = tmp / "anonymous-10k.onnx"
    onnx.save(proto, str(anonymous))
    panel.depth.setValue(1)
    panel.show_file(str(anonymous))
    wait_until(lambda: panel.result is not None and panel.result["model"] == str(anonymous))
    panel.open_block("block1")
    wait_until(lambda: panel.result["expanded"] == ["block1"], 60_000)
    settle(300)
    panel.grab().save(str(OUT / "02-graph-10k-structural.png"))
    panel.shutdown()
    panel.close()


def prune_screen(tmp: Path) -> None:
    """The Convert & Quantize page after pruning the sample as eager PyTorch (live plot), and
    the Summary's trade-off chart once the pruned model is quantized and benchmarked."""
    window = MainWindow(Session(output_root=Path(tmp) / "prune"))
    window.show()
    settle()
    load = window.page(LoadPage)
    load.model_file.edit.setText(str(ROOT / "resources/sample/digits_cnn.py"))
    load.input_shape.setText("x=1x1x8x8")
    load.load(str(ROOT / "resources/sample/digits_cnn.safetensors"))
    wait_for(window, "inspect")
    window.go_to(2)
    convert = window.page(ConvertPage)
    convert.compression.distill_steps.setValue(300)
    convert.compression.prune()
    wait_for(window, "prune")
    grab(window, 2, "prune")
    # Pruned + quantized variants, timed: the Summary's trade-off chart with five points.
    for box in convert.modes.values():
        box.setChecked(True)
    convert.quantize()
    wait_for(window, "quantize")
    window.go_to(3)
    window.page(TestPage).benchmark()
    wait_for(window, "benchmark")
    grab(window, 5, "tradeoff")
    export = window.page(ExportPage)
    window.go_to(4)
    export.variant.setCurrentIndex(export.variant.findData("int8-static"))
    grab(window, 4, "export-variant")
    window.close()


def framework_offer_screen(tmp: Path) -> None:
    """The installed app without PyTorch opening the sample .pt2: the one-time offer."""
    from PySide6.QtWidgets import QMessageBox

    window = MainWindow(Session(output_root=tmp))
    window.framework_offer.available = lambda family: False  # as in the core bundle
    window.show()
    window.page(LoadPage).open_sample()
    wait_for(window, "inspect")
    wait_until(lambda: any(b.isVisible() for b in window.findChildren(QMessageBox)))
    settle(500)
    screen = QApplication.primaryScreen()
    screen.grabWindow(0).copy(window.frameGeometry()).save(str(OUT / "09-framework-offer.png"))
    window.close()


def main() -> None:
    only_prune = sys.argv[1:] == ["--only", "prune"]
    prepare_environment()
    app = QApplication.instance() or QApplication(sys.argv)
    app.setOrganizationName("Dockyard-screenshots")
    from workflows.resources import resource

    app.setStyleSheet(resource("styles", "app.qss").read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        from PySide6.QtCore import QSettings

        # Fresh settings: the pictures must not depend on this machine's recent files.
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(
            QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(Path(tmp) / "settings")
        )
        if only_prune:
            prune_screen(Path(tmp))
            return
        if sys.argv[1:] == ["--only", "frameworks"]:
            framework_offer_screen(Path(tmp))
            return
        if sys.argv[1:] == ["--only", "graph"]:
            big_graph_screens(Path(tmp))
            return
        window = MainWindow(Session(output_root=Path(tmp)))
        window.show()
        settle()
        grab(window, 0, "load-empty")
        window.page(LoadPage).open_sample()
        wait_for(window, "inspect")
        grab(window, 0, "load")
        inspect = window.page(InspectPage)
        window.go_to(1)
        wait_until(lambda: inspect.netron.drawn > 0)
        settle(500)  # Netron fits the graph after drawing
        grab(window, 1, "inspect")
        inspect.tabs.setCurrentIndex(inspect.tabs.count() - 1)
        window.grab().save(str(OUT / "02-inspect-tables.png"))
        inspect.tabs.setCurrentIndex(0)
        window.go_to(2)
        convert = window.page(ConvertPage)
        convert.convert()
        wait_for(window, "validate")
        convert.modes["fp16"].setChecked(True)
        convert.quantize()
        wait_for(window, "quantize")
        grab(window, 2, "convert-quantize")
        overlay_screen(window, inspect)
        big_graph_screens(Path(tmp))
        test = window.page(TestPage)
        np.save(Path(tmp) / "one.npy", np.load(ROOT / "resources/sample/digits_test.npz")["x"][0])
        test.input.edit.setText(str(Path(tmp) / "one.npy"))
        window.go_to(3)
        test.predict()
        wait_for(window, "predict")
        test.benchmark()
        wait_for(window, "benchmark")
        grab(window, 3, "test")
        window.go_to(4)
        export = window.page(ExportPage)
        for box in export.targets.values():
            box.setChecked(True)  # the Summary then shows every kind of card
        export.export()
        wait_for(window, "export-tfserving")  # the last target
        grab(window, 4, "export")
        grab(window, 5, "summary")
        from app.settings import SettingsDialog, apply_theme

        dialog = SettingsDialog(window)
        dialog.show()
        settle()
        dialog.grab().save(str(OUT / "07-settings.png"))
        dialog.close()
        apply_theme("Dark")
        grab(window, 2, "dark")
        window.close()
        prune_screen(Path(tmp))
    print(f"wrote {len(list(OUT.glob('*.png')))} screenshots to {OUT}")


if __name__ == "__main__":
    main()
