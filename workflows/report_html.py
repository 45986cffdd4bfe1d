"""A self-contained HTML report (plots embedded as PNG) from quantize and benchmark results."""

from __future__ import annotations

import base64
import html
import io
import string
from datetime import UTC, datetime
from typing import Any

from workflows import __version__, present
from workflows.present import Table
from workflows.resources import resource


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return (
        f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
    )


def _table(t: Table) -> str:
    """A presenter table as HTML (cells escaped; gate verdicts coloured)."""

    def cell(text: str) -> str:
        cls = "ok" if text.startswith("pass") else "bad" if text.startswith("FAIL") else ""
        body = html.escape(text)
        return f'<td><span class="{cls}">{body}</span></td>' if cls else f"<td>{body}</td>"

    th = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in t.rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _quantize_section(q: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    parts = ["<h2>Accuracy and size</h2>"]
    if q.get("warning"):
        parts.append(f'<p class="note">{html.escape(q["warning"])}</p>')
    parts += [f"<p>{html.escape(line)}</p>" for line in present.quantize_data_lines(q)]
    parts.append(_table(present.quantize_variants(q)))
    parts.append(_table(present.accuracy(q)))
    parts += [f"<p>{html.escape(line)}</p>" for line in present.fallback_lines(q)]
    for v in q["variants"]:
        if (v.get("fallback") or {}).get("tries"):
            parts.append(_table(present.fallback_tries(v)))
    for v in q["variants"]:
        if v.get("warning"):
            parts.append(
                f'<p class="note">{html.escape(v["name"])}: {html.escape(v["warning"])}</p>'
            )
    hists = [(v["name"], v["accuracy"].get("error_histogram")) for v in q["variants"]]
    hists = [(n, h) for n, h in hists if h]
    if hists:
        fig, ax = plt.subplots(figsize=(8, 3.4))
        for name, h in hists:
            edges = np.asarray(h["edges"])
            ax.stairs(h["counts"], edges, label=name, linewidth=1.6)
        ax.set_xscale("log")
        ax.set_xlabel("|variant − fp32| per output value")
        ax.set_ylabel("count")
        ax.set_title("Output error distribution")
        ax.legend()
        parts.append("<h2>Error distribution</h2>" + _png(fig))
    return "".join(parts)


def _benchmark_section(b: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpu = b["cpu"]
    feats = [
        k
        for k in ("avx2", "avx512", "avx512_vnni", "avx_vnni", "amx_int8", "arm_dotprod")
        if cpu.get(k)
    ]
    parts = [
        "<h2>Latency</h2>",
        f"<p>CPU: {html.escape(cpu['brand'])} ({b['cpu_count']} logical cores; "
        f"{', '.join(feats) or 'no SIMD INT8 features'}).</p>",
    ]
    parts.append(_table(present.benchmark_configs(b)))
    configs = sorted({(r["batch"], r["threads"]) for r in b["configs"]})
    fig, axes = plt.subplots(
        1, len(configs), figsize=(max(5, 4 * len(configs)), 3.6), squeeze=False
    )
    for ax, (batch, threads) in zip(axes[0], configs, strict=True):
        sel = [r for r in b["configs"] if r["batch"] == batch and r["threads"] == threads]
        ax.boxplot(
            [r["latencies_ms"] for r in sel],
            tick_labels=[r["variant"] for r in sel],
            showfliers=False,
        )
        ax.set_title(f"batch {batch}, threads {threads or 'auto'}")
        ax.set_ylabel("latency (ms)")
        ax.tick_params(axis="x", rotation=30)
    parts.append(_png(fig))
    if b.get("verdicts"):
        parts.append("<h2>INT8 verdict</h2><ul>")
        parts += [f"<li>{html.escape(line)}</li>" for line in present.verdicts(b)]
        parts.append("</ul>")
    for v in b["variants"]:
        d = v["diagnostics"]
        if d.get("float_nodes"):
            items = "".join(
                f"<li><code>{html.escape(n['node'])}</code> ({n['op_type']}): "
                f"{html.escape(n['reason'])}</li>"
                for n in d["float_nodes"]
            )
            parts.append(
                f"<p>{html.escape(v['name'])}: {d['fraction_int8']:.0%} of compute ops run "
                f"INT8 kernels; these stayed in float:</p><ul>{items}</ul>"
            )
    return "".join(parts)


def _prune_section(r: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = ["<h2>Structured pruning</h2>", _table(present.prune_models(r))]
    parts += [f"<p>{html.escape(line)}</p>" for line in present.prune_lines(r)]
    d = r.get("distillation")
    if d and d["history"]:
        steps = [h["step"] for h in d["history"]]
        fig, ax = plt.subplots(figsize=(8, 3.2))
        ax.plot(steps, [h["figure"] for h in d["history"]], marker="o", label=d["figure_name"])
        ax.set_xlabel("distillation step")
        ax.set_ylabel(d["figure_name"])
        losses = [(h["step"], h["loss"]) for h in d["history"] if h["loss"] is not None]
        if losses:
            twin = ax.twinx()
            twin.plot(*zip(*losses, strict=True), color="tab:orange", label="loss")
            twin.set_ylabel("loss")
        ax.set_title("Distillation from the original (held-out figure and training loss)")
        parts.append(_png(fig))
    return "".join(parts)


def _compress_section(r: dict[str, Any]) -> str:
    parts = ["<h2>Weights for size</h2>", _table(present.compress_variants(r))]
    parts += [f"<p>{html.escape(line)}</p>" for line in present.compress_lines(r)]
    return "".join(parts)


def _compare_section(c: dict[str, Any]) -> str:
    """What each variant changed against the float model, node by node (compare step)."""
    parts = ["<h2>What changed</h2>",
             f"<p>Against <code>{html.escape(c['reference'])}</code>: every node of it is kept, "
             "replaced, fused or removed in each variant; nodes the variant adds are listed as "
             "inserted.</p>"]  # fmt: skip
    for v in c["candidates"]:
        parts.append(
            f"<h3>{html.escape(v['name'])}</h3><p>{html.escape(present.compare_summary(v))}</p>"
        )
        changes = present.compare_changes(v)
        if changes.rows:
            parts.append(_table(changes))
        if v["tensors"]:
            parts.append(_table(present.compare_tensors(v)))
    return "".join(parts)


def _tradeoff_section(results: dict[str, dict[str, Any]]) -> str:
    """Every variant on one chart: top-1 against p50 latency and against size; Pareto-best
    variants starred (the Summary page's chart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from workflows.handoff import pareto, points

    found = [p for p in points(results) if p.top1 is not None]
    if len(found) < 2:
        return ""
    best = pareto(found)
    base = found[0].top1 or 0.0
    panels = [("size, KB", lambda p: p.size_bytes / 1024)]
    if all(p.p50_ms is not None for p in found):
        panels.insert(0, ("p50 latency at batch 1, ms", lambda p: p.p50_ms))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (label, x_of) in zip(axes[0], panels, strict=True):
        for p in found:
            x, y = x_of(p), 100 * (p.top1 or 0.0)
            yerr = None
            if p.ci_points is not None:  # the drop's interval, as accuracy: original - drop
                lo, hi = 100 * base - p.ci_points[1], 100 * base - p.ci_points[0]
                yerr = [[max(y - lo, 0.0)], [max(hi - y, 0.0)]]
            ax.errorbar([x], [y], yerr=yerr, fmt="*" if p.name in best else "o",
                        markersize=13 if p.name in best else 7, capsize=3, label=p.name)  # fmt: skip
            ax.annotate(p.name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 %")
        ax.grid(alpha=0.3)
    axes[0][0].set_title("Upper left is better; ★ Pareto-best")
    fig.tight_layout()
    rows = Table(["variant", "size", "p50 (batch 1)", "top-1", "Pareto-best"])
    for p in found:
        rows.rows.append([
            p.name, present.size(p.size_bytes),
            f"{p.p50_ms:.4f} ms" if p.p50_ms is not None else present.DASH,
            present.pct(p.top1), "★" if p.name in best else "",
        ])  # fmt: skip
    return "<h2>Trade-off</h2>" + _png(fig) + _table(rows)


def render(
    quantize: dict[str, Any] | None = None,
    benchmark: dict[str, Any] | None = None,
    title: str | None = None,
    prune: dict[str, Any] | None = None,
    compress: dict[str, Any] | None = None,
    compare: dict[str, Any] | None = None,
) -> str:
    """The report as one HTML string with everything embedded."""
    name = None
    if prune:
        name = prune["source"]["path"]
    elif quantize or compress:
        name = (quantize or compress)["source"]["path"]  # type: ignore[index]
    body = []
    results = {k: v for k, v in (("prune", prune), ("quantize", quantize),
                                 ("compress", compress), ("benchmark", benchmark)) if v}  # fmt: skip
    body.append(_tradeoff_section(results))
    if prune:
        body.append(_prune_section(prune))
    if compress:
        body.append(_compress_section(compress))
    if quantize:
        body.append(_quantize_section(quantize))
    if compare:
        body.append(_compare_section(compare))
    if benchmark:
        body.append(_benchmark_section(benchmark))
    if not body:
        body.append("<p>No results to report.</p>")
    meta = f"Dockyard {__version__} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC" + (
        f" · model <code>{html.escape(name)}</code>" if name else ""
    )
    template = string.Template(resource("templates", "report.html").read_text())
    return template.substitute(
        title=html.escape(title or "Dockyard report"), meta=meta, body="\n".join(body)
    )
