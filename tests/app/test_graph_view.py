"""The native graph view (issue 16): a 10,000-node graph drawn from a worker's layout, overlay
colours, jump to worst, threshold, search, blocks that open, and the node table's figures."""

from __future__ import annotations

import onnx
import pytest
from PySide6.QtCore import QPointF

from app.pages.graph_panel import GraphPanel
from app.widgets.graph_canvas import GraphCanvas
from workflows.graph_layout import layout
from workflows.synthetic import branching_model


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("graph") / "branching.onnx"
    onnx.save(branching_model(10_000), str(path))
    return path


def _insight(names: list[str], worst: str) -> dict:
    """An insight result naming these nodes (the view's input; the figures are made up)."""
    rows = [{"node": n, "op_type": "Conv", "sqnr_db": 45.0 - (i % 7), "accumulated_db": 40.0,
             "weight_sqnr_db": 40.0, "tensor": n} for i, n in enumerate(names)]  # fmt: skip
    next(r for r in rows if r["node"] == worst)["sqnr_db"] = 3.5
    times = {"run_ms": 10.0, "nodes": [{"node": n, "op_type": "Conv", "ms": 0.001 * (i % 5),
                                        "fused": [], "inserted_by_ort": False}
                                       for i, n in enumerate(names)]}  # fmt: skip
    return {"models": [
        {"name": "fp32", "reference": True, "times": times},
        {"name": "int8-static", "reference": False, "times": times,
         "errors": {"kind": "int8", "samples": 32, "nodes": rows, "worst": worst}},
    ]}  # fmt: skip


def test_canvas_draws_selects_and_zooms_around_the_cursor(qtbot):
    nodes = [{"name": f"n{i}", "op_type": "Relu", "inputs": [f"t{i - 1}"] if i else ["x"],
              "outputs": [f"t{i}"]} for i in range(50)]  # fmt: skip
    canvas = GraphCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(800, 600)
    canvas.show()
    canvas.set_layout(layout(nodes))
    canvas.jump_to(20)
    x, y = canvas.centres[20]
    centre = QPointF((x - canvas.origin.x()) * canvas.scale, (y - canvas.origin.y()) * canvas.scale)
    assert canvas.box_at(centre) == 20 and canvas.current == 20
    world = canvas.origin + centre / canvas.scale
    canvas.zoom(0.5, centre)
    assert (canvas.origin + centre / canvas.scale - world).manhattanLength() < 1e-6
    image = canvas.grab().toImage()
    assert image.width() == 800


def test_a_10k_graph_opens_with_overlays_worst_threshold_search_and_blocks(qtbot, big):
    panel = GraphPanel()
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    with qtbot.waitSignal(panel.laid_out, timeout=120_000):
        panel.show_file(str(big))
    canvas = panel.canvas
    assert canvas.count >= 10_000
    qtbot.waitUntil(lambda: len(canvas.paint_ms) > 0, timeout=10_000)
    shown = canvas.visible_world()
    assert shown.top() == 0 and 0 < shown.height() < 2000  # the top of the graph, readable

    names = panel.result["names"]
    worst = "stage9/block7/conv2"
    panel.set_insight(_insight(names, worst))
    labels = [panel.overlay.itemText(i) for i in range(panel.overlay.count())]
    assert labels == ["none", "time per node — fp32", "INT8 SQNR — int8-static",
                      "time per node — int8-static"]  # fmt: skip
    panel.overlay.setCurrentIndex(2)
    assert "INT8 SQNR — int8-static" in panel.legend.text()
    panel.jump_to_worst()
    target = names.index(worst)
    assert canvas.current == panel.result["node_box"][target]
    assert canvas.visible_world().contains(QPointF(*canvas.centres[canvas.current]))
    assert canvas.values[canvas.current] == "3.5 dB"
    red = canvas.colours[canvas.current]
    assert red.red() > 200 and red.green() < 80  # 3.5 dB: red
    # Threshold 20 dB (slider at a third of 60 dB): only the worst node stands out.
    panel.threshold.setValue(34)
    assert canvas.highlight == {canvas.current}
    assert panel.threshold_label.text() == "below 20.4 dB: 1 nodes"

    panel.search.setText("stage3/block6/merge2")
    box = panel.find_next()
    assert box >= 0 and names[panel.result["boxes"]["members"][box][0]] == "stage3/block6/merge2"
    assert canvas.current == box
    panel.search.setText("no such node")
    assert panel.find_next() == -1 and "No node matches" in panel.legend.text()

    with qtbot.waitSignal(panel.laid_out, timeout=60_000):
        panel.depth.setValue(2)  # one box per block
    blocks = canvas.count
    assert blocks < 1300 and canvas.labels[0] == "stage1/block1 · 6 ops"
    assert canvas.values[panel.result["node_box"][target]] == "3.5 dB"  # a block: its worst node
    with qtbot.waitSignal(panel.laid_out, timeout=60_000):
        panel.open_block("stage1/block2")
    assert canvas.count == blocks - 1 + 8
    panel.shutdown()


def test_compare_side_by_side_colours_and_follows_counterparts(qtbot, tmp_path):
    from app.pages.compare_panel import STATUS_COLOURS, ComparePanel
    from tests.workflows.test_compare import _fusable_model
    from workflows.data import load_dataset
    from workflows.formats import load_model
    from workflows.quantization.quantizers import quantize_static_qdq

    ref = _fusable_model(tmp_path / "m.fp32.onnx")
    q = tmp_path / "m.int8-static.onnx"
    quantize_static_qdq(ref, q, load_dataset(None, load_model(ref).inputs, synthetic_count=8))
    panel = ComparePanel()
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    panel.set_files([("fp32 — m.fp32.onnx", ref), ("int8-static — m.int8-static.onnx", q)])
    with qtbot.waitSignal(panel.compared, timeout=120_000) as blocker:
        panel.refresh()
    result = blocker.args[0]
    assert result["summary"]["unmatched"] == 0
    left_names = panel.layouts["left"]["names"]
    status = {r["node"]: r["status"] for r in result["nodes"]}
    for name, box in zip(left_names, panel.layouts["left"]["node_box"], strict=True):
        assert panel.left.colours[box] == STATUS_COLOURS[status[name]], name
    right_names = panel.layouts["right"]["names"]
    inserted = {e["node"] for e in result["inserted"]}
    assert inserted and all(panel.right.colours[right_names.index(n)] == STATUS_COLOURS["inserted"]
                            for n in inserted)  # fmt: skip
    assert panel.changes.rowCount() == sum(s != "kept" for s in status.values())
    # A click on the float model's MatMul shows what it became on the right.
    row = next(r for r in result["nodes"] if r["node"] == "matmul")
    panel.left.jump_to(left_names.index("matmul"))
    assert right_names[panel.right.current] == row["counterparts"][0]
    panel.shutdown()


def test_edit_dialog_reads_its_fields(qtbot):
    from app.pages.edit_dialog import EditDialog

    dialog = EditDialog([{"name": "x", "shape": "[1, 3]"}], [{"name": "y"}])
    qtbot.addWidget(dialog)
    dialog.dims.setText("x:0=batch, x:1=3")
    dialog.rename.setText("x=image")
    assert dialog.options() == {"outputs": [], "drop_outputs": [],
                                "dims": {"x:0": "batch", "x:1": 3}, "rename": {"x": "image"}}  # fmt: skip
    dialog.dims.setText("x:0")
    with pytest.raises(ValueError, match="INPUT:AXIS=VALUE"):
        dialog.options()
    dialog.dims.setText("")
    dialog.rename.setText("")
    with pytest.raises(ValueError, match="Nothing to edit"):
        dialog.options()


def test_an_edit_from_the_inspect_page_is_recorded_and_shown(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow
    from app.pages.inspect_page import InspectPage
    from app.pages.load_page import LoadPage
    from app.session import Session
    from tests.workflows.test_edit import _two_headed

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)  # not this machine's recent files
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings")
    )
    src = _two_headed(tmp_path / "m.onnx")
    window = MainWindow(Session(output_root=tmp_path / "runs"))
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.step_finished, timeout=120_000,
                          check_params_cb=lambda s, ok: s == "inspect"):  # fmt: skip
        window.page(LoadPage).load(str(src))
    inspect = window.page(InspectPage)
    with qtbot.waitSignal(window.step_finished, timeout=120_000,
                          check_params_cb=lambda s, ok: s == "edit") as blocker:  # fmt: skip
        inspect.run_edit({"dims": {"image:0": "batch", "meta:0": "batch"},
                          "rename": {"logits": "scores"}})  # fmt: skip
    assert blocker.args[1], window.last_error
    result = window.session.results["edit"]
    assert result["outputs"] == ["scores", "aux"] and result["validation"]["max_abs_diff"] <= 1e-6
    labels = [inspect.variant.itemText(i) for i in range(inspect.variant.count())]
    assert labels[-1] == "edited — m.edited.onnx"
    assert "Edited: image:0: 1 -> batch" in inspect.native.legend.text()
    steps = [s.name for s in window.session.workflow().steps]
    assert steps == ["edit"]  # replayable: dockyard-cli run takes it as a workflow step
    window.close()
