"""Whole runs as configuration: ``stemscale run PIPELINE.yaml``.

Public API
----------
load_pipeline
    Read, override (``--set key=value``) and validate a pipeline YAML file.
run_pipeline
    Run a validated pipeline on a Dask cluster into a versioned run folder.
PipelineConfig, TrainPipeline
    The validated configurations.
RunFolder, read_run
    ``run.json``: resolved configuration, versions, cluster, times, stages.
metal_spacings, classify_sublattices
    Metal-metal spacings of a 2H-MX2 frame from its fitted columns (re-exported
    from :mod:`stemscale.strain.spacing` and :mod:`stemscale.lattice.sublattice`).
"""

from __future__ import annotations

from ..lattice import classify_sublattices
from ..strain.spacing import metal_spacings
from .config import KINDS, PipelineConfig, TrainPipeline, apply_overrides, load_pipeline
from .runfolder import RunFolder, read_run

__all__ = [
    "KINDS",
    "PipelineConfig",
    "TrainPipeline",
    "apply_overrides",
    "load_pipeline",
    "RunFolder",
    "read_run",
    "classify_sublattices",
    "metal_spacings",
]
