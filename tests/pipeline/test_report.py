"""The run report: per-class tables, notes, figures, Markdown and HTML."""

from __future__ import annotations

from stemscale.pipeline.report import build_report, flatten, render_markdown, write_report

RECORD = {"kind": "demo", "version": "0.1.0", "config": {"name": "t", "description": "a test"},
          "config_sha256": "ab" * 32, "git": None, "stages": {"find": {"status": "done", "seconds": 1.5},
                                                             "strain": {"status": "skipped", "note": "why"}}}
SUMMARY = {"find": {"atom_columns": 1234, "fit_states": {"CONVERGED": 1200}},
           "score": {"defects": {"SV": {"tp": 9, "fp": 1, "f1": 0.9}, "DV": {"tp": 1, "fp": 0, "f1": 1.0}}}}


def test_markdown_report(tmp_path):
    fig = tmp_path / "figures" / "overview.png"
    fig.parent.mkdir()
    fig.write_bytes(b"png")
    md = render_markdown(build_report(RECORD, SUMMARY, ["a note"], [fig], tmp_path, ["a caveat"]))
    assert "# stemscale run: t" in md and "a test" in md
    assert "| strain | skipped: why |" in md
    assert "| atom_columns | 1,234 |" in md and "| fit_states.CONVERGED | 1,200 |" in md
    assert "|  | tp | fp | f1 |" in md and "| SV | 9 | 1 | 0.9 |" in md
    assert "- a note" in md and "- a caveat" in md
    assert "![overview](figures/overview.png)" in md  # relative: the folder can move


def test_html_report_and_summary_file(tmp_path):
    path = write_report(tmp_path, RECORD, SUMMARY, [], [], fmt="html")
    assert path.name == "report.html"
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<td>SV</td>" in html
    assert (tmp_path / "summary.json").exists()
    assert write_report(tmp_path, RECORD, SUMMARY, [], []).name == "report.md"


def test_flatten_summarises_long_lists():
    rows = dict(flatten({"a": {"b": 1}, "long": list(range(100)), "short": [1, 2]}))
    assert rows["a.b"] == 1 and "100 entries" in rows["long"] and rows["short"] == [1, 2]
