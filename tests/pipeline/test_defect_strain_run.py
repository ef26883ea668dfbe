"""`stemscale run pipelines/defect_strain.yaml` on a simulated 1024^2 mosaic, end to end (issue 13).

The lattice is turned by 30 degrees, where fits of the class and the pristine averages may
call directions 60 degrees apart ``a1`` (the strain stage used to stop there with "different
lattice orientations"); the metal-site classes are recentred on their metal site (the
averaging used to stop with "a shift of 8.67 px exceeds the crops' margin of 8 px").  Then an
averaging option is changed: averaging and strain run again, ``find`` is resumed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from stemscale.cli import main

pytestmark = pytest.mark.slow

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "defect_strain.yaml"
#: The demo's defect mix: isolated SVs and pristine references in a 1024^2 mosaic.
DEMO_DEFECTS = {"SV": 0.01, "DV": 0.0005, "2Te": 0.002, "TeSe": 0.002, "MV": 0.0005, "MSub": 0.001}


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory) -> str:
    from stemscale.parallel.simulate import simulate_mosaic
    from stemscale.simulate import Sample

    url = str(tmp_path_factory.mktemp("mosaic") / "wse2.zarr")
    simulate_mosaic(url, (1024, 1024), chunks=(512, 512), shards=(1024, 1024), seed=2020,
                    sample=Sample(concentrations=DEMO_DEFECTS, min_defect_spacing_A=10.0,
                                  rotation_deg=30.0),
                    dose_e_per_a2=7300.0)
    return url


@pytest.fixture(scope="module")
def first_run(mosaic, tmp_path_factory, local_cluster):
    out = tmp_path_factory.mktemp("run") / "ds"
    args = ["run", str(PIPELINE), "--set", f"input.mosaic={mosaic}", "--out", str(out),
            "--no-progress", "--cluster", local_cluster.scheduler_address]
    return out, args, main(args)


def finite(x) -> bool:
    return x is not None and math.isfinite(x)


def test_defect_strain_runs_end_to_end_and_measures_the_sv_strain(first_run):
    out, _, code = first_run
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete"
    assert {k: v["status"] for k, v in record["stages"].items()} == {
        "input": "done", "find": "done", "average": "done", "strain": "done", "figures": "done",
        "report": "done"}
    summary = json.loads((out / "summary.json").read_text())
    averaged = summary["average"]["averaged"]
    assert averaged["SV"] >= 10 and averaged["pristine"] >= 10
    sv = summary["strain"]["SV"]
    mean = next(r for r in sv["ww_spacing_pm"] if r["bond"] == "mean")
    for key in ("class_pm", "class_se_pm", "pristine_pm", "pristine_se_pm", "change_pm"):
        assert finite(mean[key]), key
    # W-W spacing a = 3.28 Å in WSe2; the SEs are bootstrap standard errors of a few pm at most
    assert 320 < mean["pristine_pm"] < 340 and 320 < mean["class_pm"] < 350
    assert 0 < mean["class_se_pm"] < 5 and 0 < mean["pristine_se_pm"] < 5
    assert (out / "strain" / "SV_profile.csv").exists()
    report = (out / "report.html").read_text()
    assert "Results: strain" in report and "figures/class_averages.png" in report


def test_a_changed_averaging_option_reruns_averaging_but_not_find(first_run, capsys):
    out, args, code = first_run
    assert code == 0
    parts = sorted((out / "tables" / "atoms").glob("part-*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    capsys.readouterr()
    assert main([*args, "--set", "average.options.margin_px=12"]) == 0
    printed = capsys.readouterr().out.replace("\n", " ")
    assert "(resuming)" in printed and "average.options.margin_px: null -> 12" in printed
    record = json.loads((out / "run.json").read_text())
    assert [a["status"] for a in record["attempts"]] == ["complete", "complete"]
    assert record["config"]["average"]["options"] == {"margin_px": 12}
    assert record["stages"]["find"]["reused"] is True
    assert record["stages"]["average"]["status"] == record["stages"]["strain"]["status"] == "done"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["find"]["blocks_resumed"] == summary["find"]["blocks"]
    assert [p.stat().st_mtime_ns for p in parts] == stamps  # no block was redone
    mean = next(r for r in summary["strain"]["SV"]["ww_spacing_pm"] if r["bond"] == "mean")
    assert finite(mean["change_pm"]) and finite(mean["class_se_pm"])
