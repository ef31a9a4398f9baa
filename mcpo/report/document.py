"""A report as a list of blocks, written out twice: as Markdown (report.md, figures beside it)
and as one self-contained HTML file (report.html, figures embedded as base64 PNGs).

Text uses a small inline markup, the same in both: **bold**, <ins>underlined</ins>, `code`.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    right: tuple[int, ...] = ()   # right-aligned columns (numbers)


@dataclass
class Image:
    path: str                     # relative to the report's directory
    caption: str


@dataclass
class Code:
    text: str


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"* {i}" for i in b.items))
        elif isinstance(b, Table):
            align = ["---:" if i in b.right else "---" for i in range(len(b.header))]
            lines = [f"| {' | '.join(map(_md_cell, b.header))} |", f"|{'|'.join(align)}|"]
            lines += [f"| {' | '.join(map(_md_cell, r))} |" for r in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, Image):
            out.append(f"![{b.caption}]({b.path})\n\n*{b.caption}*")
        elif isinstance(b, Code):
            out.append(f"```\n{b.text.rstrip()}\n```")
    return "\n\n".join(out) + "\n"


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline_html(s: str) -> str:
    t = html.escape(str(s), quote=False)
    t = t.replace("&lt;ins&gt;", "<u>").replace("&lt;/ins&gt;", "</u>")
    t = _CODE.sub(r"<code>\1</code>", t)
    return _BOLD.sub(r"<b>\1</b>", t)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; }
figcaption { font-style: italic; color: #444; }
code { background: #f2f2f2; padding: 0 3px; }
"""


def to_html(blocks: list, base: Path, title: str) -> str:
    """The whole report as one HTML document; each Image is read from base / path and
    embedded, so the file opens anywhere on its own."""
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in b.items)
                        + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{inline_html(h)}</th>" for h in b.header)
            num = ' class="num"'
            rows = "".join(
                "<tr>" + "".join(f"<td{num if i in b.right else ''}>{inline_html(c)}</td>"
                                 for i, c in enumerate(r)) + "</tr>"
                for r in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Image):
            data = base64.b64encode((Path(base) / b.path).read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" '
                        f'alt="{html.escape(b.caption)}"><figcaption>'
                        f'{inline_html(b.caption)}</figcaption></figure>')
        elif isinstance(b, Code):
            body.append(f"<pre>{html.escape(b.text.rstrip())}</pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
