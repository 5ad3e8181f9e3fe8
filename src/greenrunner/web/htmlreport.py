"""A standalone HTML report of a finished experiment: the Markdown report's content
(one source of facts with the CLI's ``--report``) as one self-contained page."""

from __future__ import annotations

import html
import re

from greenrunner.web.views import ExperimentView

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1f23; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
blockquote { border-left: 4px solid #2da44e; margin: 0; padding: 0.2rem 1rem;
             color: #57606a; }
code { background: #f6f8fa; padding: 0 0.2rem; }
"""


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(markdown: str) -> str:
    """The subset markdown_report writes: headings, lists, quotes, tables, bold, code."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
            continue
        if line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
            continue
        if m := re.match(r"^(#{1,3}) (.*)", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{_inline(line[2:])}</blockquote>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def _table(block: list[str]) -> str:
    head, *rows = block
    numeric: list[bool] = []
    if rows and set(rows[0].replace("|", "").strip()) <= set("-: "):
        numeric = [c.endswith(":") for c in _cells(rows[0])]
        rows = rows[1:]

    def row(cells: list[str], tag: str) -> str:
        parts = []
        for k, cell in enumerate(cells):
            cls = ' class="num"' if k < len(numeric) and numeric[k] else ""
            parts.append(f"<{tag}{cls}>{_inline(cell)}</{tag}>")
        return "<tr>" + "".join(parts) + "</tr>"

    body = "\n".join(row(_cells(r), "td") for r in rows)
    return f"<table>\n<thead>{row(_cells(head), 'th')}</thead>\n<tbody>\n{body}\n</tbody></table>"


def html_report(view: ExperimentView) -> str:
    """The whole page; ``view`` must have a result."""
    from greenrunner.report import markdown_report
    from greenrunner.result import SelectionResult

    assert view.result is not None
    result = SelectionResult.from_dict(dict(view.result))
    summary = view.summary
    body = markdown_to_html(
        markdown_report(
            result, source=str(summary.get("source", "")), note=str(summary.get("note", ""))
        )
    )
    extra = ""
    bench = summary.get("benchmark")
    if bench:
        extra = (
            "<h2>Benchmark approach</h2><p>Choosing by model-card accuracy alone (no "
            f"evaluation) would pick <strong>{html.escape(str(bench['name']))}</strong> "
            f"(card accuracy {float(bench['card_accuracy']):.3f}).</p>"
        )
    title = f"GreenRunner experiment {view.id}: {result.recommended}"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"{body}\n{extra}\n<p><small>Experiment {view.id}, created {view.created}, "
        f"status {html.escape(view.status)}.</small></p>\n</body></html>\n"
    )
