"""The run report: ``report.md`` or ``report.html`` with numbers, notes and figures.

The report is built as a list of blocks (headings, paragraphs, tables,
images) and rendered to Markdown or to a self-contained HTML page (figures
linked relative to the run folder, so the folder can be moved or shared).
Credentials (storage options, URLs with a user and password, ``--set``
assignments of secrets) are redacted before anything is written.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..redact import redact

__all__ = ["build_report", "render_markdown", "render_html", "write_report", "flatten"]


def flatten(data: Any, prefix: str = "", max_items: int = 6) -> list[tuple[str, Any]]:
    """Nested dicts as ``("a.b.c", value)`` rows (short lists of dicts are indexed,
    long ones and long lists of numbers are summarised: the tables hold them)."""
    rows: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k), max_items)
    elif isinstance(data, list) and len(data) > max_items:
        rows.append((prefix, f"{len(data)} entries (see summary.json)"))
    elif isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        for i, v in enumerate(data):
            rows += flatten(v, f"{prefix}[{i}]", max_items)
    else:
        rows.append((prefix, data))
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def build_report(record: dict[str, Any], summary: dict[str, Any], notes: list[str],
                 figures: list[Path], folder: Path, extra_notes: list[str] | None = None,
                 ) -> list[tuple[str, Any]]:
    """Report blocks: ``("h1"|"h2"|"p"|"table"|"img"|"list", content)``."""
    record, summary, notes = redact(record), redact(summary), redact(list(notes))
    extra_notes = redact(list(extra_notes or []))
    cfg = record.get("config", {})
    git = record.get("git") or {}
    cluster = record.get("cluster") or {}
    blocks: list[tuple[str, Any]] = [
        ("h1", f"stemscale run: {cfg.get('name', record.get('kind'))}"),
    ]
    if cfg.get("description"):
        blocks.append(("p", cfg["description"]))
    blocks.append(("table", [
        ("kind", record.get("kind")),
        ("run folder", str(folder)),
        ("stemscale version", record.get("version")),
        ("git commit", (git.get("commit", "")[:12] + (" (with local changes)" if git.get("dirty") else ""))
         if git else "not a git checkout"),
        ("configuration sha256", record.get("config_sha256", "")[:16]),
        ("pipeline file", record.get("pipeline")),
        ("overrides", " ".join(record.get("overrides") or []) or "none"),
        ("cluster", f"{cluster.get('kind')} ({cluster.get('workers')} workers)" if cluster else "none"),
        ("started", record.get("started")),
    ]))
    stages = record.get("stages", {})
    if stages:
        blocks.append(("h2", "Stages"))
        blocks.append(("table", [(name, s.get("status") + (f": {s['note']}" if s.get("note") else "")
                                  + (f" ({s['seconds']:.1f} s)" if s.get("seconds") is not None else ""))
                                 for name, s in stages.items()]))
    for name, data in summary.items():
        if not data:
            continue
        blocks.append(("h2", f"Results: {name}"))
        flat, matrices = _split_matrices(data)
        if flat:
            blocks.append(("table", [(k, _fmt(v)) for k, v in flatten(flat)]))
        for title, columns, rows in matrices:
            blocks.append(("matrix", (title, columns, rows)))
    all_notes = list(notes) + list(extra_notes or [])
    if all_notes:
        blocks.append(("h2", "Notes"))
        blocks.append(("list", all_notes))
    if figures:
        blocks.append(("h2", "Figures"))
        for fig in figures:
            blocks.append(("img", Path(fig).relative_to(folder).as_posix()))
    blocks.append(("p", "Full configuration and provenance: `run.json`. Numbers: `summary.json`."))
    return blocks


def _rows_of(value: Any) -> list[tuple[str, dict]] | None:
    """Rows of a table-like value: a dict or list of >= 2 flat dicts sharing their keys."""
    if isinstance(value, dict) and len(value) >= 2 and all(isinstance(v, dict) for v in value.values()):
        rows = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list) and 2 <= len(value) <= 50 and all(isinstance(v, dict) for v in value):
        rows = [(str(i), v) for i, v in enumerate(value)]
    else:
        return None
    keys = [set(v) for _, v in rows]
    flat = all(not isinstance(x, (dict, list)) for _, v in rows for x in v.values())
    return rows if flat and all(k == keys[0] for k in keys) else None


def _split_matrices(data: dict[str, Any], prefix: str = ""):
    """Separate table-like entries (per class, per site, per direction) from the rest."""
    flat: dict[str, Any] = {}
    matrices: list[tuple[str, list[str], list[list[Any]]]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        rows = _rows_of(value)
        if rows is not None:
            columns = list(rows[0][1])
            matrices.append((name, columns, [[label, *(r[c] for c in columns)] for label, r in rows]))
        elif isinstance(value, dict):
            sub_flat, sub_matrices = _split_matrices(value, f"{name}.")
            if sub_flat:
                flat[key] = sub_flat
            matrices.extend(sub_matrices)
        else:
            flat[key] = value
    return flat, matrices


def render_markdown(blocks: list[tuple[str, Any]]) -> str:
    out: list[str] = []
    for kind, content in blocks:
        if kind == "h1":
            out.append(f"# {content}\n")
        elif kind == "h2":
            out.append(f"## {content}\n")
        elif kind == "p":
            out.append(f"{content}\n")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in content) + "\n")
        elif kind == "table":
            rows = ["| item | value |", "| --- | --- |"]
            rows += [f"| {k} | {_fmt(v).replace('|', '/')} |" for k, v in content]
            out.append("\n".join(rows) + "\n")
        elif kind == "matrix":
            title, columns, rows = content
            lines = [f"**{title}**\n", "| " + " | ".join(["", *columns]) + " |",
                     "| " + " | ".join(["---"] * (len(columns) + 1)) + " |"]
            lines += ["| " + " | ".join(_fmt(v).replace("|", "/") for v in row) + " |" for row in rows]
            out.append("\n".join(lines) + "\n")
        elif kind == "img":
            out.append(f"![{Path(content).stem}]({content})\n")
    return "\n".join(out)


def render_html(blocks: list[tuple[str, Any]]) -> str:
    esc = html.escape
    body: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{esc(str(content))}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{esc(str(content))}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(str(i))}</li>" for i in content) + "</ul>")
        elif kind == "table":
            rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in content)
            body.append(f"<table>{rows}</table>")
        elif kind == "matrix":
            title, columns, rows = content
            head = "".join(f"<th>{esc(str(c))}</th>" for c in ["", *columns])
            cells = "".join("<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row) + "</tr>"
                            for row in rows)
            body.append(f"<p><b>{esc(title)}</b></p><table><tr>{head}</tr>{cells}</table>")
        elif kind == "img":
            body.append(f'<figure><img src="{esc(content)}" alt="{esc(Path(content).stem)}">'
                        f"<figcaption>{esc(Path(content).stem)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:2px 8px;"
             "text-align:left}th{font-weight:normal;color:#555}img{max-width:100%}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>stemscale report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(folder: Path, record: dict[str, Any], summary: dict[str, Any], notes: list[str],
                 figures: list[Path], *, fmt: str = "markdown",
                 extra_notes: list[str] | None = None) -> Path:
    """Write ``summary.json`` and ``report.md`` / ``report.html``; return the report's path."""
    (folder / "summary.json").write_text(json.dumps(redact(summary), indent=2, default=str) + "\n")
    blocks = build_report(record, summary, notes, figures, folder, extra_notes)
    if fmt == "html":
        path = folder / "report.html"
        path.write_text(render_html(blocks))
    else:
        path = folder / "report.md"
        path.write_text(render_markdown(blocks))
    return path
