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


def render(
    quantize: dict[str, Any] | None = None,
    benchmark: dict[str, Any] | None = None,
    title: str | None = None,
) -> str:
    """The report as one HTML string with everything embedded."""
    name = None
    if quantize:
        name = quantize["source"]["path"]
    body = []
    if quantize:
        body.append(_quantize_section(quantize))
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
