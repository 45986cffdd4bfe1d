"""Engine benchmarks: inspect time for a synthetic 10,000-node ONNX model, and convert + validate
wall time for the bundled sample (in-process, and through the child-process runner as the CLI and
GUI run it). Prints numbers; asserts nothing.

    python benchmarks/engine.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workflows.formats import load_model  # noqa: E402
from workflows.options import LoadOptions, to_dict  # noqa: E402
from workflows.runner import run_step  # noqa: E402
from workflows.steps.convert import convert_model  # noqa: E402
from workflows.steps.inspect import inspect_model  # noqa: E402
from workflows.steps.validate import validate_models  # noqa: E402
from workflows.synthetic import save_chain_model  # noqa: E402

SAMPLE = ROOT / "resources" / "sample"


def timed(fn, repeat: int = 3) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        big = save_chain_model(tmp_path / "chain10k.onnx", nodes=10_000)
        load_times = timed(lambda: load_model(big))
        model = load_model(big)
        inspect_times = timed(lambda: inspect_model(model))
        print(
            f"synthetic ONNX, {len(model.native.graph.node):,} nodes "
            f"({big.stat().st_size / 1e6:.1f} MB)"
        )
        print(
            f"  load     median {statistics.median(load_times):.3f} s  (min {min(load_times):.3f})"
        )
        print(
            f"  inspect  median {statistics.median(inspect_times):.3f} s  "
            f"(min {min(inspect_times):.3f}; shape inference + graph + MACs)"
        )

        pt2 = SAMPLE / "digits_cnn.pt2"
        feeds = SAMPLE / "digits_test.npz"
        started = time.perf_counter()
        original = load_model(pt2)
        out = tmp_path / "digits.onnx"
        conv = convert_model(original, out)
        t_convert = time.perf_counter() - started
        started = time.perf_counter()
        report = validate_models(original, load_model(out), feeds_path=feeds)
        t_validate = time.perf_counter() - started
        worst = report["worst"]
        print("sample digits_cnn.pt2 -> ONNX (in-process, including the first import of torch)")
        print(
            f"  convert  {t_convert:.2f} s  ({conv['size_bytes'] / 1024:.1f} KB, opset {conv['opset']})"
        )
        print(
            f"  validate {t_validate:.2f} s  on 450 test digits: max abs "
            f"{worst['max_abs_error']:.2e}, top-1 agreement {worst['top1_agreement']:.3f}"
        )

        started = time.perf_counter()
        run_step("convert", {"model": to_dict(LoadOptions(str(pt2))), "output": str(out)})
        t_convert_child = time.perf_counter() - started
        started = time.perf_counter()
        run_step(
            "validate",
            {
                "original": to_dict(LoadOptions(str(pt2))),
                "candidate": to_dict(LoadOptions(str(out))),
                "inputs": str(feeds),
            },
        )
        t_validate_child = time.perf_counter() - started
        print("sample through the child-process runner (cold process each, as the CLI/GUI run it)")
        print(f"  convert  {t_convert_child:.2f} s")
        print(f"  validate {t_validate_child:.2f} s")
        print(f"  total    {t_convert_child + t_validate_child:.2f} s")


if __name__ == "__main__":
    main()
