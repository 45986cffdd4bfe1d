"""What a run made, as its receiver needs it: one card per artifact (what it is, size, accuracy
with its interval, p50, where it runs, the command that runs it), the variants' trade-off
points, and a short Markdown handoff note for a ticket or an e-mail.

Built from the steps' results (keyed by step name, as the app's session and `dockyard-cli run`
hold them); paths are shown relative to the run folder, where the receiver finds them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.exporters.common import TFSERVING_IMAGE, TRITON_IMAGE
from workflows.model import path_size
from workflows.present import gate, pct, size

NOT_CHECKED = "—"
YOUR_INPUT = "YOUR_INPUT.npy"  # the test command's placeholder: a sample of the user's own


@dataclass(frozen=True)
class Card:
    """One artifact."""

    title: str
    what: str
    path: str  # absolute
    size_bytes: int | None
    accuracy: str  # "top-1 98.4 %, pass (+0.00 pt, CI -0.82..+0.82)", or how it was checked
    p50_ms: float | None  # batch 1, from the benchmark; None when not timed
    runs_on: str
    command: str  # copyable; paths relative to the run folder
    verdict: str = ""  # the benchmark's word on this variant's speed, at batch 1

    def relative(self, root: Path) -> str:
        """The path relative to the run folder `root` when it lies inside it."""
        return relative(self.path, root)


@dataclass(frozen=True)
class Point:
    """One variant on the trade-off chart."""

    name: str
    size_bytes: int
    p50_ms: float | None
    top1: float | None  # 0..1
    ci_points: tuple[float, float] | None  # the drop's interval, in points
    passed: bool | None
    source: str = "original"  # what an export step's `source` names to hand this variant off


def relative(path: str | Path, root: Path) -> str:
    """`path` relative to the run folder `root` when it lies inside it, else as given."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _q(path: str | Path, root: Path) -> str:
    return shlex.quote(relative(path, root))


def _size(path: Path) -> int | None:
    """Bytes of a file or a folder (`workflows.model.path_size`); None when it is gone."""
    try:
        return path_size(path)
    except OSError:
        return None


def latencies(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """variant name -> p50 ms at batch 1 (the benchmark's first thread setting)."""
    bench = results.get("benchmark")
    if not bench:
        return {}
    ones = [c for c in bench["configs"] if c["batch"] == 1] or bench["configs"]
    threads = ones[0]["threads"]
    return {c["variant"]: c["p50_ms"] for c in ones if c["threads"] == threads}


def verdicts(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """variant name -> the benchmark's verdict at batch 1 (first thread setting)."""
    bench = results.get("benchmark") or {}
    found: dict[str, str] = {}
    for v in bench.get("verdicts", []):
        if v["batch"] == 1:
            found.setdefault(v["variant"], v["verdict"])
    return found


def _accuracy(acc: dict[str, Any] | None) -> str:
    if not acc:
        return "not measured"
    parts = []
    if acc.get("top1") is not None:
        parts.append(f"top-1 {pct(acc['top1'])}")
    if acc.get("gate"):
        parts.append(gate(acc["gate"]))
    elif acc.get("deviation"):
        parts.append(f"SQNR {acc['deviation']['sqnr_db']:.1f} dB vs float")
    if acc.get("synthetic"):
        parts.append("on synthetic inputs")
    return ", ".join(parts) or "not measured"


def _gate_point(name: str, source: str, size_bytes: int, p50: float | None,
                acc: dict[str, Any], relative_to_original: bool = True) -> Point:  # fmt: skip
    g = acc.get("gate") or {}
    ci = tuple(g["ci_points"]) if g.get("ci_points") and relative_to_original else None
    return Point(name, size_bytes, p50, acc.get("top1"), ci, g.get("passed"), source)  # type: ignore[arg-type]


def _pruned_p50(results: dict[str, dict[str, Any]]) -> float:
    """The pruned model's p50: the benchmark's when it timed the quantize folder (whose float
    model is the pruned one), else the prune step's own timing."""
    timed = latencies(results).get("fp32") if results.get("quantize") else None
    return timed or results["prune"]["pruned"]["latency"]["p50_ms"]


def points(results: dict[str, dict[str, Any]]) -> list[Point]:
    """The float model and every variant made of it (pruned, quantized, pruned + quantized),
    with what was measured of each; the original first.

    After pruning, the quantize step quantizes the pruned model: its variants are named
    "pruned+..." and their gate (judged against the pruned model) gives no interval here, since
    the chart's intervals are drops from the original."""
    q, pr = results.get("quantize"), results.get("prune")
    p50 = latencies(results)
    found = []
    if pr:
        o, pruned = pr["original"], pr["pruned"]
        found.append(Point("fp32", o["size_bytes"], o["latency"]["p50_ms"],
                           o["accuracy"].get("top1"), None, None))  # fmt: skip
        found.append(_gate_point("pruned", "pruned", pruned["size_bytes"], _pruned_p50(results),
                                 pruned["accuracy"]))  # fmt: skip
    prefix = "pruned+" if pr else ""
    if q:
        if not pr:
            fm = q["float_model"]
            found.append(Point("fp32", fm["size_bytes"], p50.get("fp32"),
                               fm["accuracy"].get("top1"), None, None))  # fmt: skip
        for v in q["variants"]:
            found.append(_gate_point(prefix + v["name"], v["name"], v["size_bytes"],
                                     p50.get(v["name"]), v["accuracy"],
                                     relative_to_original=not pr))  # fmt: skip
    c = results.get("compress")
    if c:
        if not found:
            o = c["original"]
            top1 = o["figure"] / 100 if c["figure_name"] == "top-1 %" else None
            found.append(Point("fp32", o["size_bytes"], o["latency"]["p50_ms"], top1, None, None))
        # Their point is what they are for: the size once zipped (the file itself is not smaller).
        for v in c["variants"]:
            found.append(_gate_point(f"{prefix}{v['name']} (zipped)", v["name"], v["zip_bytes"],
                                     v["latency"]["p50_ms"], v["accuracy"],
                                     relative_to_original=not pr))  # fmt: skip
    return found


def pareto(found: list[Point]) -> list[str]:
    """Names of the variants no other beats on every count: top-1 (higher), p50 and size (lower).

    A figure that was not measured does not count; variants without a top-1 are left out."""
    measured = [p for p in found if p.top1 is not None]

    def at_least_as_good(a: Point, b: Point) -> bool:
        faster = a.p50_ms is None or b.p50_ms is None or a.p50_ms <= b.p50_ms
        return a.top1 >= b.top1 and a.size_bytes <= b.size_bytes and faster  # type: ignore[operator]

    def beats(a: Point, b: Point) -> bool:
        return at_least_as_good(a, b) and not at_least_as_good(b, a)

    return [p.name for p in measured if not any(beats(o, p) for o in measured if o is not p)]


def cards(results: dict[str, dict[str, Any]], root: Path) -> list[Card]:
    """One card per artifact the results name, in the order a receiver reads them."""
    root = Path(root)
    p50 = latencies(results)
    said = verdicts(results)
    found: list[Card] = []
    ort = "ONNX Runtime (CPU; Python, C++, C#, Java, JavaScript)"
    if "convert" in results:
        c = results["convert"]
        v = results.get("validate")
        check = "not validated"
        if v:
            w = v["worst"]
            check = (
                f"{'matches' if v['passed'] else 'DIFFERS from'} the original: max abs error "
                f"{w.get('max_abs_error', 0):.2g}, top-1 agreement {pct(w.get('top1_agreement'))}"
            )
        found.append(
            Card("ONNX model", f"converted to ONNX (opset {c.get('opset', '?')})", c["output"],
                 c.get("size_bytes"), check, p50.get("fp32"), ort,
                 f"dockyard-cli test {_q(c['output'], root)} --input {YOUR_INPUT}")
        )  # fmt: skip
    pr = results.get("prune")
    if pr:
        folder, p = Path(pr["output"]), pr["pruned"]
        file = folder / p["file"]
        found.append(
            Card("Pruned model", f"{pr['pruning']['macs_reduction']:.0%} fewer MACs, distilled "
                 f"from the original; {pr['speedup_p50']}x faster measured (also "
                 f"{p['program']}, a torch.export program)", str(file), p["size_bytes"],
                 _accuracy(p["accuracy"]), _pruned_p50(results), ort,
                 f"dockyard-cli test {_q(file, root)} --input {YOUR_INPUT}")
        )  # fmt: skip
    q = results.get("quantize")
    if q:
        folder = Path(q["output"])
        prefix = "pruned+" if pr else ""
        for v in q["variants"]:
            file = folder / v["file"]
            judged = _accuracy(v["accuracy"]) + (" (gate vs the pruned model)" if pr else "")
            found.append(
                Card(f"{prefix}{v['name']} variant", f"{v['name']} ONNX, {v['size_ratio']:.2f}x smaller",
                     str(file), v["size_bytes"], judged, p50.get(v["name"]),
                     ort, f"dockyard-cli test {_q(file, root)} --input {YOUR_INPUT}",
                     said.get(v["name"], ""))
            )  # fmt: skip
    c = results.get("compress")
    if c:
        folder = Path(c["output"])
        prefix = "pruned+" if pr else ""
        for v in c["variants"]:
            file = folder / v["file"]
            what = (
                f"{v['sparsity']:.0%} zeros" if v["method"] == "sparsity" else "weights clustered"
            ) + (", reconstructed" if v["reconstructed"] else "")
            found.append(
                Card(f"{prefix}{v['name']} weights", f"{what}; {size(v['zip_bytes'])} zipped, "
                     f"{v['zip_ratio']:.2f}x smaller than the original zipped ({v['outcome']})",
                     str(file), v["size_bytes"], _accuracy(v["accuracy"]),
                     v["latency"]["p50_ms"], ort,
                     f"dockyard-cli test {_q(file, root)} --input {YOUR_INPUT}")
            )  # fmt: skip
    docker = results.get("export-docker")
    if docker:
        out, image, name = docker["output"], docker.get("image"), docker["model_name"]
        smoke = docker.get("smoke_test") or {}
        versions = docker.get("versions") or []
        held = (
            f"; versions {', '.join(versions)} (default {docker['default_version']})"
            if len(versions) > 1
            else ""
        )
        found.append(
            Card("Docker image", "build context: ONNX Runtime server (Open Inference Protocol v2, "
                 "TF-Serving REST, SageMaker and Vertex AI routes, /metrics with drift), "
                 f"Kubernetes and KServe manifests, Grafana dashboard{held}", out,
                 _size(Path(out)), _served(smoke), None,
                 "any Docker host; Kubernetes (k8s/), KServe (kserve/)",
                 f"docker build -t {image} {_q(out, root)} && docker run --rm -p 8080:8080 "
                 f"{image}\ncurl -s localhost:8080/v2/models/{name}/infer "
                 f"-d @{_q(Path(out) / 'sample_request.json', root)}")
        )  # fmt: skip
    ts = results.get("export-torchserve")
    if ts:
        out, name = ts["output"], ts["model_name"]
        archive = Path(ts.get("archive") or Path(out) / "model-store" / f"{name}.mar")
        found.append(
            Card("TorchServe archive", f"{archive.name} ({ts.get('kind', 'model')}) with a "
                 "generated handler", str(archive), _size(archive),
                 _served(ts.get("smoke_test") or {}), None, "TorchServe 0.12 (Java 17)",
                 f"torchserve --start --ncs --model-store {_q(archive.parent, root)} "
                 f"--models {name}={archive.name} "
                 f"--ts-config {_q(Path(out) / 'config.properties', root)}")
        )  # fmt: skip
    tfl = results.get("export-tflite")
    if tfl:
        out = Path(tfl["output"])
        variants = tfl.get("variants") or []
        names = ", ".join(v["variant"] for v in variants)
        best = next((v for v in variants if v["variant"] == "int8" and _passed(v)), None)
        best = best or (variants[0] if variants else None)
        model = f" --model {best['file']}" if best else ""
        found.append(
            Card("TFLite bundle", f"LiteRT models ({names}), metadata, infer.py", str(out),
                 _size(out), _tflite_check(tfl), None,
                 "LiteRT: Android, iOS, Linux/ARM boards; Python via ai-edge-litert",
                 f"python {_q(out / 'infer.py', root)} "
                 f"{_q(out / 'sample_input.npy', root)}{model}")
        )  # fmt: skip
    tri = results.get("export-triton")
    if tri:
        out, name = Path(tri["output"]), tri["model_name"]
        check = tri["validation"]["repository_model"]
        batching = (
            f"max_batch_size {tri['max_batch_size']}" if tri["max_batch_size"] else "no batching"
        )
        found.append(
            Card("Triton model repository", f"{name}/config.pbtxt ({batching}) + "
                 f"{name}/1/model.onnx for Triton's ONNX Runtime backend", str(out), _size(out),
                 f"config checked against the model; matches the original (max abs error "
                 f"{check['max_abs_error']:.2g})", None,
                 "Triton Inference Server (CPU or GPU), KServe with the Triton runtime",
                 f"docker run --rm -p 8000:8000 -p 8001:8001 -v \"$PWD/{relative(out, root)}\":/models "
                 f"{TRITON_IMAGE} tritonserver --model-repository=/models")
        )  # fmt: skip
    tfs = results.get("export-tfserving")
    if tfs:
        out, name = Path(tfs["output"]), tfs["model_name"]
        check = tfs["validation"]["savedmodel"]
        found.append(
            Card("TF Serving model", f"{name}/1/ SavedModel, serving_default "
                 f"({', '.join(tfs['inputs'])} → {', '.join(tfs['outputs'])}), models.config",
                 str(out), _size(out),
                 f"signature read back; matches the original (max abs error "
                 f"{check['max_abs_error']:.2g})", None,
                 "TensorFlow Serving (Docker, Kubernetes), Vertex AI's TF runtime, KServe",
                 f"docker run --rm -p 8500:8500 -p 8501:8501 -v \"$PWD/{relative(out, root)}\":/models "
                 f"{TFSERVING_IMAGE} --model_config_file=/models/models.config")
        )  # fmt: skip
    report = results.get("report")
    if report:
        found.append(
            Card("Report", "HTML report: accuracy, latency, the machine it was measured on",
                 report["html"], report.get("bytes"), NOT_CHECKED, None, "any browser",
                 f"open {_q(report['html'], root)}")
        )  # fmt: skip
    return found


def _served(smoke: dict[str, Any]) -> str:
    if not smoke or smoke.get("ran") is False:
        return "smoke test not run"
    status = "served and matched the original" if smoke.get("passed") else "smoke test FAILED"
    if smoke.get("max_abs_error") is not None:
        status += f" (max abs error {smoke['max_abs_error']:.2g})"
    return status


def _passed(v: dict[str, Any]) -> bool:
    f = v.get("validation") or {}
    return bool((f.get("gate") or {}).get("passed", f.get("passed")))


def _tflite_check(r: dict[str, Any]) -> str:
    parts = []
    for v in r.get("variants") or []:
        f = v.get("validation") or {}
        judged = gate(f["gate"]) if "gate" in f else ("pass" if f.get("passed") else "FAIL")
        parts.append(f"{v['variant']} {judged}")
    return "; ".join(parts) or "not validated"


def handoff_note(name: str, source: str, results: dict[str, dict[str, Any]], root: Path) -> str:
    """A short Markdown note: what was made, how good and fast it is, where, how to run it."""
    root = Path(root)
    lines = [f"## {name}: deployment artifacts", "", f"Source: `{Path(source).name}`. "
             f"Run folder: `{root}`.", ""]  # fmt: skip
    for card in cards(results, root):
        figures = [size(card.size_bytes)] if card.size_bytes else []
        if card.p50_ms is not None:
            figures.append(f"p50 {card.p50_ms:.3g} ms at batch 1")
        lines.append(f"- **{card.title}** — `{card.relative(root)}`"
                     + (f" ({', '.join(figures)})" if figures else ""))  # fmt: skip
        checked = f"{card.accuracy}; " if card.accuracy != NOT_CHECKED else ""
        lines.append(f"  - {checked}runs on {card.runs_on}")
        if card.verdict:
            lines.append(f"  - {card.verdict.split('. ')[0]}.")
        lines.append(f"  - `{card.command.splitlines()[0]}`")
    measured = (results.get("quantize") or {}).get("measured_on")
    if measured:
        lines += [
            "",
            f"Measured on {measured['label']}: latency and INT8 accuracy depend on the CPU.",
        ]
    lines += ["", "Made with Dockyard; replay with `dockyard-cli run WORKFLOW.yaml`."]
    return "\n".join(lines) + "\n"
