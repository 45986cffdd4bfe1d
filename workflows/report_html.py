"""A self-contained HTML report (plots embedded as PNG) from quantize and benchmark results."""

from __future__ import annotations

import base64
import html
import io
import string
from datetime import UTC, datetime
from typing import Any

from workflows import __version__
from workflows.resources import resource


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return (
        f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
    )


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _num(v: float | None, fmt: str = ".3g") -> str:
    return "–" if v is None else format(v, fmt)


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.2f} MB"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _quantize_section(q: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fp = q["float_model"]
    parts = ["<h2>Accuracy and size</h2>"]
    if q.get("warning"):
        parts.append(f'<p class="note">{html.escape(q["warning"])}</p>')
    parts.append(
        f"<p>Calibration: <code>{html.escape(q['calibration']['source'])}</code> "
        f"({q['calibration']['samples']} samples). Evaluation: "
        f"<code>{html.escape(q['evaluation']['source'])}</code> ({q['evaluation']['samples']} samples"
        f"{', labelled' if q['evaluation']['labelled'] else ''}).</p>"
    )
    rows = [
        [
            "fp32 (original)",
            _size(fp["size_bytes"]),
            "1.00×",
            _pct(fp["accuracy"].get("top1")),
            _pct(fp["accuracy"].get("top5")),
            "–",
            "–",
            "–",
            "–",
        ]
    ]
    for v in q["variants"]:
        acc, g = v["accuracy"], v["accuracy"]["gate"]
        dev = acc.get("deviation", {})
        if g["passed"] is None:
            verdict = "–"
        else:
            cls = "ok" if g["passed"] else "bad"
            verdict = f'<span class="{cls}">{"pass" if g["passed"] else "fail"}</span>'
            verdict += f" ({g['drop_points']:+.2f} pt)"
        rows.append(
            [
                html.escape(v["name"]),
                _size(v["size_bytes"]),
                f"{v['size_ratio']:.2f}×",
                _pct(acc.get("top1")),
                _pct(acc.get("top5")),
                _pct(dev.get("top1_agreement")),
                _num(dev.get("max_abs_error")),
                verdict,
                html.escape(", ".join(v["excluded_nodes"])) or "–",
            ]
        )
    parts.append(
        _table(
            [
                "variant",
                "size",
                "smaller",
                "top-1",
                "top-5",
                "top-1 agreement",
                "max abs error",
                f"gate (≤ {q['options']['max_accuracy_drop']} pt)",
                "kept in float",
            ],
            rows,
        )
    )
    for v in q["variants"]:
        cost = (v.get("fallback") or {}).get("cost")
        if cost:
            b, a = cost["before"], cost["after"]
            parts.append(
                f"<p>{html.escape(v['name'])}: the accuracy fallback kept "
                f"{len(v['excluded_nodes'])} node(s) in float; size {_size(b['size_bytes'])} → "
                f"{_size(a['size_bytes'])}, batch-1 p50 {b['p50_ms']:.3f} → {a['p50_ms']:.3f} ms.</p>"
            )
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
    rows = []
    for r in b["configs"]:
        rows.append(
            [
                html.escape(r["variant"]),
                str(r["batch"]),
                str(r["threads"] or "auto"),
                _num(r["p50_ms"], ".3f"),
                _num(r["p90_ms"], ".3f"),
                _num(r["p99_ms"], ".3f"),
                _num(r["mean_ms"], ".3f"),
                f"{r['throughput_per_s']:,.0f}",
                f"{r['peak_rss_mb']:.0f}",
                "yes" if r["stable"] else "no",
            ]
        )
    parts.append(
        _table(
            [
                "variant",
                "batch",
                "threads",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "mean ms",
                "samples/s",
                "peak MB",
                "stable",
            ],
            rows,
        )
    )
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
        for v in b["verdicts"]:
            parts.append(
                f"<li><b>{html.escape(v['variant'])}</b>, batch {v['batch']}, threads "
                f"{v['threads'] or 'auto'}: {html.escape(v['verdict'])}</li>"
            )
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
