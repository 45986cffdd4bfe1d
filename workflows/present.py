"""Step results presented once: Qt-free tables (title, headers, rows of text) with units and
number formats, rendered thinly by the CLI (rich), the HTML report and the GUI's pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str = ""


DASH = "-"


def pct(v: float | None) -> str:
    """0.9844 -> "98.44 %"; None -> "-"."""
    return DASH if v is None else f"{100 * v:.2f} %"


def size(n: int | None) -> str:
    """Bytes in B, KB, MB or GB (1024-based, as file managers show them)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def num(v: Any) -> str:
    """A measured figure: 3 significant digits, large values whole; None (exact) -> "exact"."""
    if v is None:
        return "exact"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def gate(g: dict[str, Any] | None) -> str:
    """An accuracy gate's decision with its figure and interval: "pass (+0.22 pt, CI -0.31..+0.75)",
    "inconclusive (…; ~900 samples to decide)", "not judged (synthetic)"."""
    g = g or {}
    decision = g.get("decision")
    if decision is None:  # an older report: pass/fail only
        if g.get("passed") is None:
            return DASH
        text = "pass" if g["passed"] else "FAIL"
        if g.get("drop_points") is not None:
            text += f" ({g['drop_points']:+.2f} pt)"
        return text
    if decision == "not judged":
        return "not judged (synthetic)" if g.get("synthetic") else "not judged"
    text = "FAIL" if decision == "fail" else decision
    if g.get("metric") == "sqnr_db":
        lo, hi = g["ci_db"]
        detail = f"SQNR {g['sqnr_db']:.1f} dB, CI {lo:.1f}..{hi:.1f}"
    else:
        lo, hi = g["ci_points"]
        detail = f"{g['drop_points']:+.2f} pt, CI {lo:+.2f}..{hi:+.2f}"
    if g.get("samples_needed"):
        detail += f"; ~{g['samples_needed']:,} samples to decide"
    return f"{text} ({detail})"


def gate_rule(r: dict[str, Any]) -> str:
    """What the quantize gate demanded, in one sentence."""
    o = r["options"]
    confidence = f"{100 * o.get('confidence', 0.95):g} %"
    if r["evaluation"].get("synthetic"):
        return "Accuracy gate: not applied (synthetic inputs say nothing about the task)."
    if r["evaluation"].get("labelled"):
        rule = f"top-1 drop against the labels ≤ {o['max_accuracy_drop']} points"
    else:
        rule = (
            f"top-1 disagreement with the float model ≤ {o['max_accuracy_drop']} points "
            f"(class scores) or mean SQNR ≥ {o.get('min_sqnr_db', 20)} dB (other outputs)"
        )
    return (
        f"Accuracy gate: {rule}, on the whole {confidence} interval (pass), beyond it (fail), "
        "else inconclusive (no fallback; more samples would decide)."
    )


def quantize_data_lines(r: dict[str, Any]) -> list[str]:
    """Where calibration and evaluation data came from, and the gate's rule."""
    lines = []
    for kind in ("calibration", "evaluation"):
        d = r[kind]
        note = " (synthetic)" if d.get("synthetic") else ""
        if kind == "evaluation" and d.get("labelled"):
            note += ", labelled"
        lines.append(f"{kind}: {d['source']} ({d['samples']} samples{note})")
    lines.append(gate_rule(r))
    lines += machine_lines(r.get("measured_on"))
    return lines


def machine_lines(m: dict[str, Any] | None) -> list[str]:
    """Where INT8 figures were measured, and the u8s8 caveat on x86 CPUs without VNNI."""
    if not m:
        return []
    lines = [f"Measured on: {m['label']}."]
    if m.get("u8s8_saturation_risk"):
        lines.append(
            "This CPU has no VNNI-class INT8 dot product: ONNX Runtime's u8s8 kernels multiply "
            "with VPMADDUBSW, whose 16-bit sums can saturate, so INT8 accuracy measured here can "
            "differ slightly from a VNNI machine's. If a variant fails the gate, the fallback "
            "tries 7-bit weights (reduce_range), which cannot saturate, before keeping any node "
            "in float."
        )
    return lines


def quantize_variants(r: dict[str, Any]) -> Table:
    """One row per variant made by quantize: size, accuracy, deviation, gate, nodes kept float."""
    table = Table(
        ["variant", "file", "size", "smaller", "top-1", "top-1 agree", "max abs err", "gate",
         "kept float"],
        title="variants",
    )  # fmt: skip
    for v in r["variants"]:
        acc = v["accuracy"]
        dev = acc.get("deviation", {})
        table.rows.append(
            [
                v["name"],
                v["file"],
                size(v["size_bytes"]),
                f"{v['size_ratio']:.2f}x",
                pct(acc.get("top1")),
                pct(dev.get("top1_agreement")),
                num(dev.get("max_abs_error")) if "max_abs_error" in dev else DASH,
                gate(acc["gate"]),
                str(len(v["excluded_nodes"])),
            ]
        )
    return table


def prune_models(r: dict[str, Any]) -> Table:
    """The original and the pruned model side by side (a prune result)."""
    p = r["pruning"]
    table = Table(["model", "MACs", "parameters", "size", "top-1", "top-1 agree", "p50 (batch 1)",
                   "gate"], title="structured pruning")  # fmt: skip
    for name, m, macs, params in (
        ("original", r["original"], p["macs_before"], p["parameters_before"]),
        ("pruned", r["pruned"], p["macs_after"], p["parameters_after"]),
    ):
        acc = m["accuracy"]
        table.rows.append(
            [
                m["file"],
                f"{macs:,}",
                f"{params:,}",
                size(m["size_bytes"]),
                pct(acc.get("top1")),
                pct(acc.get("deviation", {}).get("top1_agreement")) if name == "pruned" else DASH,
                f"{m['latency']['p50_ms']:.4f} ms",
                gate(acc["gate"]) if name == "pruned" else DASH,
            ]
        )
    return table


def prune_lines(r: dict[str, Any]) -> list[str]:
    """What pruning removed, what distillation did and what it cost, in sentences."""
    p, d = r["pruning"], r.get("distillation")
    lines = [
        f"removed {p['macs_reduction']:.0%} of MACs and "
        f"{1 - p['parameters_after'] / p['parameters_before']:.0%} of parameters "
        f"({p['importance']} importance); kept whole: {', '.join(p['kept_layers']) or 'none'}",
        f"{r['speedup_p50']}x faster at batch 1 in ONNX Runtime (measured), "
        f"{r['size_ratio']}x smaller",
    ]
    before = r["pruned"]["accuracy_before_distillation"]
    if d:
        lines.append(
            f"distillation: {d['steps_run']} steps in {d['seconds']} s on {d['samples']} samples"
            f"{' with labels' if d['labels_used'] else ' without labels'} ({d['stopped']}); "
            f"top-1 right after pruning {pct(before.get('top1'))}"
        )
    lines.append(f"judged on {r['evaluation']['samples']} samples: {r['evaluation']['source']}")
    if r.get("measured_on"):  # not machine_lines: its INT8 caveats do not apply here
        lines.append(f"Measured on: {r['measured_on']['label']}.")
    return lines


def compress_variants(r: dict[str, Any]) -> Table:
    """The original and each weight-compressed variant: sizes raw and zipped, figure, gate, p50."""
    o, name = r["original"], r["figure_name"]
    table = Table(["variant", "zeros", "size", "zipped", "zip smaller", name, "gate",
                   "p50 (batch 1)", "outcome"], title="weight compression")  # fmt: skip
    table.rows.append([o["file"], DASH, size(o["size_bytes"]), size(o["zip_bytes"]), "1.00x",
                       f"{o['figure']:.2f}", DASH, f"{o['latency']['p50_ms']:.4f} ms", DASH])  # fmt: skip
    for v in r["variants"]:
        table.rows.append([v["file"], f"{v['sparsity']:.0%}", size(v["size_bytes"]),
                           size(v["zip_bytes"]), f"{v['zip_ratio']:.2f}x",
                           f"{v['accuracy']['figure']:.2f}", gate(v["accuracy"]["gate"]),
                           f"{v['latency']['p50_ms']:.4f} ms", v["outcome"]])  # fmt: skip
    return table


def compress_lines(r: dict[str, Any]) -> list[str]:
    """Per variant, the levels the sensitivity analysis chose; what runtimes make of it."""
    lines = []
    for v in r["variants"]:
        unit = "zeros" if v["method"] == "sparsity" else "values"
        levels = ", ".join(
            f"{layer['node']} {layer['level']:.0%}"
            if v["method"] == "sparsity"
            else f"{layer['node']} {int(layer['level']) or 'as is'}"
            for layer in v["layers"]
        )
        lines.append(f"{v['name']} ({unit} per layer, by sensitivity): {levels}")
    lines.append(r["runtime_note"])
    lines.append(f"judged on {r['evaluation']['samples']} samples: {r['evaluation']['source']}")
    if r.get("warning"):
        lines.append(f"note: {r['warning']}")
    if r.get("measured_on"):
        lines.append(f"Measured on: {r['measured_on']['label']}.")
    return lines


def accuracy(r: dict[str, Any]) -> Table:
    """Accuracy of the float model and every variant on the evaluation data (a quantize result)."""
    table = Table(
        ["model", "samples", "top-1", "top-5", "top-1 agree", "max abs err", "gate"],
        title="accuracy",
    )
    rows = [("float (fp32)", r["float_model"]["accuracy"])]
    rows += [(v["name"], v["accuracy"]) for v in r["variants"]]
    for name, a in rows:
        dev = a.get("deviation", {})
        table.rows.append(
            [
                name,
                str(a.get("samples", DASH)) + (" (synthetic)" if a.get("synthetic") else ""),
                pct(a.get("top1")),
                pct(a.get("top5")),
                pct(dev.get("top1_agreement")),
                num(dev["max_abs_error"]) if "max_abs_error" in dev else DASH,
                gate(a.get("gate")),
            ]
        )
    return table


def benchmark_configs(r: dict[str, Any]) -> Table:
    """One row per timed configuration (variant, batch, threads): latency, throughput, memory."""
    sizes = {v["name"]: v["size_bytes"] for v in r["variants"]}
    fractions = {v["name"]: v["diagnostics"]["fraction_int8"] for v in r["variants"]}
    table = Table(
        ["variant", "size", "INT8 ops", "batch", "threads", "p50 ms", "p90 ms", "p99 ms",
         "samples/s", "peak MB", "stable"],
        title="latency",
    )  # fmt: skip
    for c in r["configs"]:
        table.rows.append(
            [
                c["variant"],
                size(sizes[c["variant"]]),
                f"{fractions[c['variant']]:.0%}",
                str(c["batch"]),
                str(c["threads"] or "auto"),
                f"{c['p50_ms']:.3f}",
                f"{c['p90_ms']:.3f}",
                f"{c['p99_ms']:.3f}",
                f"{c['throughput_per_s']:,.0f}",
                f"{c['peak_rss_mb']:.0f}",
                "yes" if c.get("stable") else "no",
            ]
        )
    return table


def verdicts(r: dict[str, Any]) -> list[str]:
    """The benchmark's INT8 verdicts, one plain sentence each."""
    return [
        f"{v['variant']} (batch {v['batch']}, threads {v['threads'] or 'auto'}): {v['verdict']}"
        for v in r["verdicts"]
    ]


def validate_trials(r: dict[str, Any]) -> Table:
    """One row per trial and output: shapes, errors, cosine, SQNR, top-1 agreement, verdict."""
    table = Table(
        ["trial", "output", "shape", "max abs", "mean abs", "cosine", "SQNR dB", "top-1 agree",
         "ok"],
        title="validation",
    )  # fmt: skip
    for t in r["trials"]:
        for o in t["outputs"]:
            table.rows.append(
                [
                    t["trial"],
                    o["name"],
                    "x".join(map(str, o["candidate_shape"])),
                    num(o.get("max_abs_error")),
                    num(o.get("mean_abs_error")),
                    num(o.get("cosine_similarity")),
                    num(o.get("sqnr_db")),
                    num(o.get("top1_agreement", DASH)),
                    "yes" if o["within_tolerance"] else "NO",
                ]
            )
    return table


def tflite_variants(r: dict[str, Any]) -> Table:
    """One row per TFLite variant: size, errors against the original, its check and limit."""
    table = Table(
        ["file", "size", "max abs err", "relative err", "top-1 agree", "check"], title="variants"
    )
    for v in r["variants"]:
        f = v["validation"]
        lim = f.get("limit", {})
        if "gate" in f:  # the quantized variants: the accuracy gate's decision and interval
            check = gate(f["gate"])
        else:
            check = ("pass" if f["passed"] else "FAIL") + (
                f" ({lim.get('metric')} limit {lim.get('value')})"
            )
        table.rows.append(
            [
                v["file"],
                size(v["size_bytes"]),
                num(f.get("max_abs_error")),
                num(f.get("relative_error")),
                num(f.get("top1_agreement", DASH)),
                check,
            ]
        )
    return table


def model_lines(model: dict[str, Any]) -> list[str]:
    """A model summary: path, format, size, parameters, producer, one line per input/output."""
    lines = [
        f"{model['path']}  format: {model['format']}  size: {size(model['size_bytes'])}  "
        f"parameters: {model['parameters']:,}"
        if model["parameters"] is not None
        else f"{model['path']}  format: {model['format']}"
    ]
    if model.get("producer"):
        lines.append(f"producer: {model['producer']}")
    for kind in ("inputs", "outputs"):
        lines += [f"  {kind[:-1]:6} {spec_text(s)}" for s in model[kind]]
    return lines


def spec_text(spec: dict[str, Any]) -> str:
    """ "x: float32[?, 1, 8, 8]" (? for a dynamic or unknown dimension)."""
    shape = spec["shape"]
    dims = "?" if shape is None else ", ".join("?" if d is None else str(d) for d in shape)
    return f"{spec['name']}: {spec['dtype']}[{dims}]"


def operators(r: dict[str, Any], limit: int = 25) -> Table:
    """The most used operators of an inspected model."""
    rows = [[op, str(n)] for op, n in list(r.get("op_histogram", {}).items())[:limit]]
    return Table(["op", "count"], rows, title="operators")


def fallback_lines(r: dict[str, Any]) -> list[str]:
    """For each variant the fallback searched: the outcome, what was changed, what it cost."""
    lines = []
    for v in r["variants"]:
        f = v.get("fallback")
        if not f:
            continue
        chosen = f["tries"][f["chosen"]] if "tries" in f else None
        outcome = {
            "passed": "passed the gate",
            "inconclusive": "no longer fails the gate (inconclusive)",
            "failed": "FAILED: INT8 cannot meet the gate on this model; kept the closest try",
        }.get(f.get("outcome", ""), "")
        what = f" with {chosen['what']}" if chosen else ""
        lines.append(f"{v['name']}: fallback search {outcome}{what}")
        if v["excluded_nodes"]:
            lines.append(f"  kept in float: {', '.join(v['excluded_nodes'])}")
        cost = f.get("cost")
        if cost:
            b, a = cost["before"], cost["after"]
            lines.append(
                f"  cost: size {size(b['size_bytes'])} -> {size(a['size_bytes'])}, "
                f"p50 (batch 1) {b['p50_ms']:.3f} -> {a['p50_ms']:.3f} ms"
            )
    return lines


def fallback_tries(v: dict[str, Any]) -> Table:
    """Every try of a variant's fallback search: what changed, INT8 share, size, speed, gate."""
    table = Table(
        ["try", "what", "INT8 ops", "size", "p50 ms", "gate", "chosen"],
        title=f"{v['name']}: fallback search",
    )
    f = v.get("fallback") or {}
    for t in f.get("tries", []):
        table.rows.append(
            [
                str(t["try"]),
                t["what"],
                DASH if t["int8_fraction"] is None else f"{t['int8_fraction']:.0%}",
                DASH if t["size_bytes"] is None else size(t["size_bytes"]),
                DASH if t["p50_ms"] is None else f"{t['p50_ms']:.3f}",
                f"error: {t['gate']['error']}" if t["gate"].get("error") else gate(t["gate"]),
                "yes" if t["try"] == f.get("chosen") else "",
            ]
        )
    return table


def predictions(r: dict[str, Any]) -> Table:
    """One input through several models: top-k per model side by side, or output statistics."""
    from pathlib import PurePath

    results = r["results"]
    names = [PurePath(e["model"]).name for e in results]
    if all("top_k" in e["output"] for e in results):
        table = Table(["rank", *names], title="predictions")
        for k in range(len(results[0]["output"]["top_k"])):
            table.rows.append(
                [str(k + 1)]
                + [
                    f"{top['label']}  {100 * top['probability']:.1f} %"
                    for top in (e["output"]["top_k"][k] for e in results)
                ]
            )
        return table
    table = Table(["model", "shape", "min", "max", "mean", "first values"], title="outputs")
    for name, e in zip(names, results, strict=True):
        o = e["output"]
        table.rows.append(
            [
                name,
                "x".join(map(str, o["shape"])),
                num(o["min"]),
                num(o["max"]),
                num(o["mean"]),
                ", ".join(num(v) for v in o["head"][:4]),
            ]
        )
    return table


def triton_lines(r: dict[str, Any]) -> list[str]:
    """A Triton repository's shape and checks."""
    batching = (
        f"max_batch_size {r['max_batch_size']}, dynamic batching "
        f"{'on' if r['dynamic_batching'] else 'off'}"
        if r["max_batch_size"]
        else "batching off (max_batch_size 0)"
    )
    check = r["validation"]["repository_model"]
    lines = [
        f"repository: {r['model_name']}/config.pbtxt + {r['model_name']}/1/model.onnx; "
        f"{batching}; {r['instances']} instance(s)",
        "config.pbtxt parses as Triton's ModelConfig; its inputs and outputs match the model's",
        f"1/model.onnx matches the original (max abs error {check['max_abs_error']:.2g})"
        if check.get("against") != "onnx"
        else "1/model.onnx runs the sample (its input names differ from the original's: it was "
        "compared with the original when converted)",
    ]
    if "batch" in check:
        lines.append(
            "a batch of 2 gives each sample's own answer "
            f"(max abs error {check['batch']['max_abs_error']:.2g})"
        )
    return lines


def tfserving_lines(r: dict[str, Any]) -> list[str]:
    """A TF Serving model's signature and checks."""
    check = r["validation"]["savedmodel"]
    layout = (
        f"; transposes {', '.join(r['transposed_inputs'])} from the original's layout inside"
        if r["transposed_inputs"]
        else f"; layout {r['layout']}"
    )
    return [
        f"{r['model_name']}/1/: serving_default takes {', '.join(r['inputs'])} and gives "
        f"{', '.join(r['outputs'])}{layout}",
        "saved_model.pb declares the model's own names (what TF Serving reads)",
        f"serving_default matches the original on {check['samples']} sample(s) "
        f"(max abs error {check['max_abs_error']:.2g})",
    ]


def export_lines(r: dict[str, Any]) -> list[str]:
    """What an export's own checks found (smoke test, lint, image build, validation data)."""
    target, smoke = r["target"], r.get("smoke_test", {})
    if target == "tflite":
        data = r["validation_data"]
        return [
            f"validated on {data['source']} ({data['samples']} samples); "
            f"input layout: {r['input_layout']}"
        ]
    if target == "torchserve":
        lines = [f"archive: {r['archive']} ({r['kind']})"]
        if smoke.get("ran"):
            lines.append(
                f"smoke test: TorchServe served it in {smoke['seconds']} s; outputs match "
                f"the original (max abs error {smoke['max_abs_error']:.2g})"
            )
        return lines
    if target == "triton":
        return triton_lines(r)
    if target == "tfserving":
        return tfserving_lines(r)
    lines = [
        f"smoke test: server ready in {smoke['server_ready_seconds']} s, outputs match ONNX "
        f"Runtime (max abs error {smoke['max_abs_error']:.2g})"
    ]
    versions = r.get("versions", [])
    if len(versions) > 1:
        lines.append(
            f"version {r['version']} added beside {', '.join(v for v in versions if v != r['version'])}"
            f"; each answers like its own model; requests naming no version get "
            f"{r['default_version']}"
        )
    lint = r.get("hadolint", {})
    if lint.get("ran"):
        findings = lint["findings"]
        lines.append(
            "hadolint: clean"
            if not findings
            else "hadolint: "
            + "; ".join(f"{f['code']} line {f['line']}: {f['message']}" for f in findings)
        )
    drift = r.get("drift_monitoring")
    lines.append(
        f"drift monitoring: reference profile of {drift['reference']} ({drift['samples']} "
        f"samples, {drift['features']} input features)"
        if drift
        else "drift monitoring: off (give --reference DATA, the data the model should see)"
    )
    build = r.get("build", {})
    if build.get("built"):
        lines.append(f"image {build['image']}: {build['size_bytes'] / 2**20:.0f} MB")
    else:
        lines.append(
            f"image not built: {build.get('reason', '')}. Build it with: "
            f"docker build -t {r['image']} {r['output']}"
        )
    return lines


def summary_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown bullets of what a run made and measured (results keyed by step name)."""
    r = results
    lines = []
    if "convert" in r:
        lines.append(f"- **ONNX**: `{r['convert']['output']}` ({size(r['convert']['size_bytes'])})")
    if "validate" in r:
        w = r["validate"]["worst"]
        lines.append(
            f"- **Validation**: {'pass' if r['validate']['passed'] else 'FAIL'}, "
            f"max abs error {w.get('max_abs_error', 0):.2g}"
        )
    for v in r.get("quantize", {}).get("variants", []):
        top1 = v["accuracy"].get("top1")
        lines.append(
            f"- **{v['name']}**: {size(v['size_bytes'])} ({v['size_ratio']:.2f}x smaller)"
            + (f", top-1 {pct(top1)}" if top1 is not None else "")
        )
    if "benchmark" in r:
        b = r["benchmark"]
        first = b["configs"][0]
        key = (first["batch"], first["threads"])
        same = [c for c in b["configs"] if (c["batch"], c["threads"]) == key]
        times = ", ".join(f"{c['variant']} {c['p50_ms']:.3g} ms" for c in same)
        lines.append(f"- **Latency** (p50, batch {first['batch']}): {times}")
        lines += [
            f"  - {v['variant']} (batch {v['batch']}): {v['verdict']}"
            for v in b["verdicts"]
            if (v["batch"], v["threads"]) == key
        ]
    for step, result in r.items():
        if step.startswith("export-"):
            lines.append(f"- **{step.removeprefix('export-')}**: `{result['output']}`")
    return lines


LOSSLESS_DB = 200.0  # no noise left to measure (a MaxPool re-quantized on its input's own grid)


def insight_nodes(entry: dict[str, Any], reference: dict[str, Any], top: int = 10) -> Table:
    """A variant's `top` worst nodes by error (insight step): SQNR local / accumulated / weight,
    and the node's time in the variant and in the float model."""
    errors = entry["errors"]
    times = {r["node"]: r["ms"] for r in entry["times"]["nodes"]}
    fused_into = {f: r["node"] for r in entry["times"]["nodes"] for f in r["fused"]}
    float_times = {r["node"]: r["ms"] for r in reference["times"]["nodes"]}
    float_fused = {f: r["node"] for r in reference["times"]["nodes"] for f in r["fused"]}
    kind = "INT8 SQNR" if errors["kind"] == "int8" else "deviation SQNR"
    table = Table(
        ["node", "op", f"{kind} dB", "accumulated dB", "weight dB", f"{entry['name']} ms",
         f"{reference['name']} ms"],
        title=f"{entry['name']}: worst nodes ({errors['samples']} samples)",
    )  # fmt: skip
    scored = sorted((r for r in errors["nodes"] if r["sqnr_db"] is not None),
                    key=lambda r: r["sqnr_db"])  # fmt: skip

    def ms(node: str, own: dict[str, float], fused: dict[str, str]) -> str:
        if node in own:
            return f"{own[node]:.4f}"
        return f"in {fused[node]}" if node in fused else "not run"  # e.g. a Relu folded into uint8

    def db(value: float | None) -> str:
        if value is None:
            return "-"
        return "lossless" if value >= LOSSLESS_DB else f"{value:.1f}"

    for r in scored[:top]:
        table.rows.append(
            [r["node"], r["op_type"], db(r["sqnr_db"]), db(r["accumulated_db"]),
             db(r["weight_sqnr_db"]), ms(r["node"], times, fused_into),
             ms(r["node"], float_times, float_fused)]
        )  # fmt: skip
    return table


def insight_time_lines(r: dict[str, Any]) -> list[str]:
    """Per model: the run's time, how much of it the profiled kernels hold, the slowest node."""
    lines = []
    for m in r["models"]:
        t = m["times"]
        top = max(t["nodes"], key=lambda n: n["ms"], default=None)
        share = t["kernels_ms"] / t["run_ms"] if t["run_ms"] else 0
        lines.append(
            f"{m['name']}: {t['run_ms']:.3f} ms per run at batch {r['batch_size']}, "
            f"{share:.0%} of it in {len(t['nodes'])} timed nodes"
            + (f"; slowest {top['node']} ({top['op_type']}, {top['ms']:.3f} ms)" if top else "")
        )
    return lines


def compare_summary(c: dict[str, Any]) -> str:
    """One line: how a variant's nodes map to the reference's (compare step)."""
    s = c["summary"]
    counts = ", ".join(f"{s[k]} {k}" for k in ("kept", "replaced", "fused", "removed", "unmatched")
                       if s[k] or k == "unmatched")  # fmt: skip
    inserted = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in s["inserted"].items())
    line = (f"{c['name']}: {s['reference_nodes']} nodes -> {s['candidate_nodes']}: {counts}"
            + (f"; inserted {inserted}" if inserted else ""))  # fmt: skip
    if s["in_int8"] or s["in_float"]:
        line += f"; compute nodes in INT8: {s['in_int8']}, in float: {s['in_float']}"
    return line


def compare_changes(c: dict[str, Any], limit: int = 200) -> Table:
    """The reference nodes a variant changed (all but the kept ones), compute nodes it left in
    float first, then in graph order; at most `limit` rows."""
    table = Table(["node", "op", "status", "in the variant", "why / how"],
                  title=f"{c['name']}: what changed")  # fmt: skip
    rows = [r for r in c["nodes"] if r["status"] != "kept" or r.get("precision") == "float"]
    rows.sort(key=lambda r: r.get("precision") != "float")
    for r in rows[:limit]:
        status = r["status"] + (" (float)" if r.get("precision") == "float" else "")
        how = r.get("why") if r.get("precision") == "float" else r["note"]
        table.rows.append([r["node"], r["op_type"], status, ", ".join(r["counterparts"]) or DASH,
                           how or DASH])  # fmt: skip
    if len(rows) > limit:
        table.rows.append([f"… {len(rows) - limit} more (see the JSON)", "", "", "", ""])
    return table


def compare_tensors(c: dict[str, Any], limit: int = 50) -> Table:
    """Tensors both models have whose dtype or shape differ."""
    table = Table(["tensor", "reference", c["name"]], title=f"{c['name']}: dtype or shape changed")
    for t in c["tensors"][:limit]:
        table.rows.append([t["tensor"], t["reference"], t["candidate"]])
    if len(c["tensors"]) > limit:
        table.rows.append([f"… {len(c['tensors']) - limit} more (see the JSON)", "", ""])
    return table
