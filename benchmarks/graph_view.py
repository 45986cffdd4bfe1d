"""The native graph view against Netron on one synthetic graph of residual and inception-style
blocks (issue 16, item 3; targets: first drawn <= 1.5 s and >= 2x faster than Netron's draw,
worst event-loop stall <= 50 ms). Both are measured in this one run, on the same file, in the
same process, a 5 ms QTimer probing the event loop. Prints numbers; asserts nothing.

    QT_QPA_PLATFORM=offscreen python benchmarks/graph_view.py [--nodes 10000] [--warm]

`--warm`: the layout runs in an idle pre-imported worker, as in the app once it has started
(without it each layout starts a fresh Python process: the slower case).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Probe:
    """Ticks of a 5 ms timer: the longest gap is the worst stall of the event loop."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()

    def reset(self) -> None:
        self.ticks = [time.perf_counter()]

    def worst_ms(self) -> float:
        gaps = [b - a for a, b in zip(self.ticks, self.ticks[1:], strict=False)]
        return max(0.0, (max(gaps, default=0.005) - 0.005) * 1000)


def wait(condition, seconds: float) -> bool:
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    started = time.perf_counter()
    while not condition() and time.perf_counter() - started < seconds:
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.001)
    return condition()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--warm", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")
    if not args.warm:
        os.environ["DOCKYARD_NO_WARM_WORKERS"] = "1"

    import onnx

    from app.main_window import freeze_startup_objects
    from app.netron_view import NetronView, prepare_environment
    from workflows.machine import cpu_features
    from workflows.synthetic import branching_model

    prepare_environment()
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from app.pages.graph_panel import GraphPanel

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "branching.onnx"
        proto = branching_model(args.nodes)
        onnx.save(proto, str(path))
        nodes = len(proto.graph.node)
        probe = Probe()
        if args.warm:
            from workflows import warm

            warm.pool().want("onnx")
            wait(lambda: "onnx" in warm.pool().idle(), 120)

        panel = GraphPanel()
        panel.resize(1280, 800)
        panel.show()
        wait(lambda: bool(panel.canvas.paint_ms), 5)
        freeze_startup_objects()  # as the app does once its window has painted
        laid: list[dict] = []
        panel.laid_out.connect(laid.append)
        probe.reset()
        started = time.perf_counter()
        panel.show_file(str(path))
        painted = len(panel.canvas.paint_ms)
        wait(lambda: laid and len(panel.canvas.paint_ms) > painted, 120)
        native_s = time.perf_counter() - started
        native_stall = probe.worst_ms()
        layout_s = laid[0]["seconds"] if laid else float("nan")

        # Navigating: jumps along the graph, zooming out to the whole graph and back, blocks.
        probe.reset()
        paints_before = len(panel.canvas.paint_ms)
        for box in range(0, panel.canvas.count, max(1, panel.canvas.count // 20)):
            panel.canvas.jump_to(box)
            wait(lambda: False, 0.02)
        for _ in range(25):
            panel.canvas.zoom(0.8)
            wait(lambda: False, 0.02)
        for _ in range(25):
            panel.canvas.zoom(1.25)
            wait(lambda: False, 0.02)
        laid.clear()
        panel.depth.setValue(2)
        wait(lambda: bool(laid), 60)
        laid.clear()
        panel.open_block("stage1/block2")
        wait(lambda: bool(laid), 60)
        wait(lambda: False, 0.3)
        navigate_stall = probe.worst_ms()
        paints = panel.canvas.paint_ms[paints_before:]
        panel.shutdown()
        panel.close()

        netron = NetronView()
        netron.resize(1280, 800)
        netron.show()
        netron.prepare()
        wait(lambda: netron._view is not None, 30)
        probe.reset()
        started = time.perf_counter()
        netron.show_model(path)
        drew = wait(lambda: netron.drawn >= nodes, 600)
        netron_s = time.perf_counter() - started
        netron_stall = probe.worst_ms()
        netron.release()

    cpu = cpu_features()
    where = "a warm worker" if args.warm else "a new process"
    print(f"graph: {nodes:,} nodes in residual and inception-style blocks; CPU: {cpu['brand']}, "
          f"{os.cpu_count()} cores; layout in {where}")  # fmt: skip
    print(f"native view: first drawn in {native_s:.2f} s (layout {layout_s:.2f} s of it); "
          f"worst stall {native_stall:.0f} ms")  # fmt: skip
    print(f"native view, navigating (20 jumps, zoom out and in, blocks): worst stall "
          f"{navigate_stall:.0f} ms; paints {min(paints, default=0):.1f}-"
          f"{max(paints, default=0):.1f} ms")  # fmt: skip
    if drew:
        print(f"Netron 9.3.3: {netron.drawn:,} nodes drawn in {netron_s:.2f} s; worst stall "
              f"{netron_stall:.0f} ms")  # fmt: skip
        print(f"native first draw is {netron_s / native_s:.1f}x faster than Netron's")
    else:
        print(f"Netron drew {netron.drawn} of {nodes} nodes in {netron_s:.0f} s (gave up)")
    app.quit()


if __name__ == "__main__":
    main()
