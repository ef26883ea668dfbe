"""`stemscale find` and `stemscale run` derive the same settings from a mosaic's material."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stemscale.cli import main
from stemscale.lattice import column_spacing

MOS2 = {
    "kind": "demo",
    "name": "mos2-spacing",
    "simulate": {"shape": [256, 256], "chunks": [128, 128], "shards": [256, 256], "seed": 3,
                 "material": "MoS2"},
    "detect": {"detector": "peaks"},
    "average": {"defects": "detected"},
    "cluster": {"kind": "local", "workers": 1, "memory_limit": "3GiB"},
}


@pytest.mark.slow
def test_find_and_run_use_the_materials_column_spacing(tmp_path: Path) -> None:
    path = tmp_path / "mos2.yaml"
    path.write_text(yaml.safe_dump(MOS2))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    run_spacing = summary["find"]["column_spacing_angstrom"]
    run_manifest = json.loads((out / "tables" / "manifest.json").read_text())

    mosaic = next(p for p in out.rglob("*.zarr") if (p / "zarr.json").exists())
    found = tmp_path / "found"
    assert main(["find", str(mosaic), str(found), "--detector", "peaks", "--workers", "1"]) == 0
    find_manifest = json.loads((found / "manifest.json").read_text())

    expected = column_spacing("MoS2")
    assert run_spacing == pytest.approx(expected)
    assert run_manifest["config"]["column_spacing_angstrom"] == pytest.approx(expected)
    assert find_manifest["config"]["column_spacing_angstrom"] == pytest.approx(expected)
    assert find_manifest["halo"] == run_manifest["halo"]
