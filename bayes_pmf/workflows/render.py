"""Render a report, given as a list of blocks, to Markdown and to self-contained HTML.

Blocks are tuples: ``("h1" | "h2", text)``, ``("p", text)`` (inline ``code`` and
**bold** allowed), ``("table", DataFrame)``, ``("figure", relative_png_path, caption)``
and ``("code", text)``. One description, two renderings, so the two files never
disagree; HTML embeds the figures as base64 so the file stands alone.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import re
from pathlib import Path

import numpy as np
import pandas as pd

_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 60em;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; } code, pre { background: #f6f6f6; }
pre { padding: 0.6em; overflow-x: auto; }
"""


def format_cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3g}"
        return f"{value:.4f}"
    return str(value)


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(format_cell(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def to_markdown(blocks: list[tuple]) -> str:
    parts = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            parts.append(f"# {block[1]}")
        elif kind == "h2":
            parts.append(f"## {block[1]}")
        elif kind == "p":
            parts.append(block[1])
        elif kind == "table":
            parts.append(_markdown_table(block[1]))
        elif kind == "figure":
            parts.append(f"![{block[2]}]({block[1]})\n\n*{block[2]}*")
        elif kind == "code":
            parts.append(f"```\n{block[1]}\n```")
        else:
            raise ValueError(f"unknown report block {kind!r}")
    return "\n\n".join(parts) + "\n"


def _inline_html(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    def cell(value) -> str:
        numeric = isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_))
        opening = '<td class="num">' if numeric else "<td>"
        return f"{opening}{_inline_html(format_cell(value))}</td>"

    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(blocks: list[tuple], folder: Path, title: str) -> str:
    """HTML with figures read from ``folder`` and embedded, so the file stands alone."""
    parts = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{_inline_html(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "table":
            parts.append(_html_table(block[1]))
        elif kind == "figure":
            data = base64.b64encode((folder / block[1]).read_bytes()).decode("ascii")
            caption = _inline_html(block[2])
            parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                         f"<figcaption>{caption}</figcaption></figure>")
        elif kind == "code":
            parts.append(f"<pre><code>{html.escape(block[1])}</code></pre>")
        else:
            raise ValueError(f"unknown report block {kind!r}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
