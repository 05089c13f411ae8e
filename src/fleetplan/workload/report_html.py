"""A self-contained HTML report of a Characterization: tables and inline SVG charts.

No scripts, fonts or CDN: the file renders offline in any browser. Formats only; every number
comes from the Characterization.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from fleetplan.workload._characterize import Characterization

__all__ = ["render_html"]

_W, _H, _PAD = 720, 220, 40


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        # four significant digits below 10,000 (9,999.5 would round to "1e+04"), whole above
        return f"{v:,.4g}" if abs(v) < 9999.5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _bars(title: str, labels: Sequence[str], values: Sequence[float], y_label: str) -> str:
    """A bar chart as inline SVG."""
    n = max(len(values), 1)
    top = max(values) if values and max(values) > 0 else 1.0
    bw = (_W - 2 * _PAD) / n
    parts = [f'<svg width="{_W}" height="{_H + 30}" role="img" aria-label="{html.escape(title)}"'
             ' xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="10">']
    parts.append(f'<text x="{_PAD}" y="12" font-size="12">{html.escape(title)}</text>')
    for i, v in enumerate(values):
        h = (_H - 2 * _PAD) * v / top
        x = _PAD + i * bw
        y = _H - _PAD - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                     f'height="{h:.1f}" fill="#4c78a8"><title>{html.escape(labels[i])}: '
                     f'{_fmt(v)}</title></rect>')
    step = max(1, n // 12)
    for i in range(0, n, step):
        x = _PAD + i * bw
        parts.append(f'<text x="{x:.1f}" y="{_H - _PAD + 14}">{html.escape(labels[i])}</text>')
    parts.append(f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" '
                 'stroke="#333"/>')
    parts.append(f'<text x="4" y="{_PAD - 6}">{html.escape(y_label)} (max {_fmt(top)})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _hist_chart(title: str, hist: dict[str, list[int]]) -> str:
    edges = hist["edges"]
    labels = [f"{edges[i]:,}" for i in range(len(hist["counts"]))]  # bin lower edges
    return _bars(title, labels, [float(c) for c in hist["counts"]], "requests")


def _table(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _group_table(title: str, rows: list[dict[str, object]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r[c])}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def render_html(c: Characterization) -> str:
    """The report as one HTML string."""
    d = c.to_dict()
    summary: list[tuple[str, object]] = [("requests", c.requests), ("span (s)", c.span_s),
               ("mean rate (req/s)", c.rate_mean_per_s), ("inter-arrival CV", c.interarrival_cv),
               ("input:output ratio of means", c.io_ratio)]
    for k in ("1s", "1min", "1h"):
        summary.append((f"peak rate {k} (req/s)", c.rate_peak_per_s[k]))
        summary.append((f"burst factor {k}", c.burst_factor[k]))
    tokens = [(f"{side} {k}", v) for side in ("input_tokens", "output_tokens")
              for k, v in d[side].items()]
    minutes = [str(i) for i in range(len(c.rate_per_min))]
    rate_chart = _bars("Requests per minute over time (minute since start)", minutes,
                       [float(x) for x in c.rate_per_min], "requests/min")
    extra = ""
    for key in ("prefix_reuse", "workflows", "profile", "output_tail"):
        if key in d:
            extra += (f"<h2>{key.replace('_', ' ')}</h2><pre>"
                      f"{html.escape(json.dumps(d[key], indent=2))}</pre>")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Workload: {html.escape(c.source)}</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:60em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;text-align:right}th{text-align:left;background:#f4f4f4}"
        "</style></head><body>"
        f"<h1>Workload characterization: {html.escape(c.source)}</h1>"
        f"<p>format {html.escape(c.format)}; percentiles by linear interpolation.</p>"
        + _table(summary) + rate_chart
        + "<h2>Tokens</h2>" + _table(tokens)
        + _hist_chart("Context length (input tokens), log2 bins", c.context_histogram)
        + _hist_chart("Output length (tokens), log2 bins", c.output_histogram)
        + _group_table("By tenant", c.by_tenant or []) + _group_table("By model", c.by_model or [])
        + extra + "</body></html>"
    )
