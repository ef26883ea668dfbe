"""benchmarks/run_all.py: README tables from results files, only between the markers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(name, targets, gpu=None):
    return {"benchmark": f"bench_{name}", "date": "2026-01-02T03:04:05",
            "hardware": {"cpu": "Test CPU", "cores": 2, "memory_gib": 8.0, "gpu": gpu},
            "versions": {}, "parameters": {}, "results": {}, "targets": targets}


def test_tables_from_results_files(tmp_path, run_all):
    (tmp_path / "bench_zeta.json").write_text(json.dumps(result("zeta", [])))
    (tmp_path / "bench_fit.json").write_text(json.dumps(result("fit", [
        {"name": "fits/s", "target": 1e5, "measured": 130684.9, "unit": "fits/s", "met": True},
        {"name": "GPU |x|", "target": 2e7, "measured": None, "unit": "fits/s", "met": False,
         "note": "no GPU"},
        {"name": "slow", "target": 4, "measured": 1.519, "unit": "Mpx/s", "met": False},
    ], gpu=["NVIDIA H100, 80 GiB"])))
    results = run_all.load_results(tmp_path)
    assert [r["_name"] for r in results] == ["fit", "zeta"]  # known order first
    text = run_all.render_tables(results)
    assert text.index("### Fitting") < text.index("### Zeta")
    assert "Test CPU, 2 cores, 8.0 GiB, GPU: NVIDIA H100, 80 GiB; 2026-01-02" in text
    assert "| fits/s | 100,000 | 130,685 | fits/s | ✅ |" in text
    assert "| GPU \\|x\\| [1] | 2e+07 | – | fits/s | – |" in text
    assert "| slow | 4 | 1.52 | Mpx/s | ❌ |" in text
    assert "[1] no GPU" in text
    assert "_No targets recorded._" in text


def test_only_the_marked_section_changes(run_all):
    readme = "# title\n\nintro\n<!-- benchmarks:start -->\nold table\n<!-- benchmarks:end -->\ntail\n"
    new = run_all.update_readme(readme, "NEW TABLE\n")
    assert new == "# title\n\nintro\n<!-- benchmarks:start -->\nNEW TABLE\n<!-- benchmarks:end -->\ntail\n"
    assert run_all.update_readme(new, "NEW TABLE\n") == new  # idempotent
    with pytest.raises(ValueError, match="benchmarks:start"):
        run_all.update_readme("# no markers\n", "x")


def test_every_benchmark_script_is_found(run_all):
    names = [p.stem for p in run_all.scripts()]
    assert names and all(n.startswith("bench_") for n in names)
    assert set(names) == {p.stem for p in (ROOT / "benchmarks").glob("bench_*.py")}
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run_all.scripts(["nope"])
