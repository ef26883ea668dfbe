"""The stages a pipeline runs, each a thin call into the library.

A stage takes the :class:`Context` of the run, does one job (simulate,
ingest, find, score, measure ...), stores what later stages need on the
context and returns a small JSON-friendly summary for ``run.json`` and the
report.  Heavy work happens in the library on the active Dask cluster.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from ..errors import InputError
from ..lattice import column_spacing
from .adapters import StageUnavailable, average_stage, strain_stage
from .config import PipelineConfig
from .runfolder import RunFolder

if TYPE_CHECKING:
    from ..average import AveragingResult
    from ..strain import ClassStrain, SpacingResult

__all__ = ["Context", "stage_simulate", "stage_input", "stage_find", "stage_score",
           "stage_spacing", "stage_average", "stage_strain"]

log = logging.getLogger(__name__)


T = TypeVar("T")


def _known(value: T | None, what: str) -> T:
    """A context value an earlier stage sets (the mosaic's URL, pixel size ...), or a clear error."""
    if value is None:
        raise InputError(f"the {what} is not known at this point of the pipeline; the stage that "
                         "reads the mosaic (simulate or input) must run first")
    return value



@dataclass
class StageOutputs:
    """What stages make for later stages, the figures and the report (``None``: not made)."""

    #: score: measured minus true column positions (``dx_pm``, ``dy_pm``, ``site``, ``pristine``).
    position_errors: pd.DataFrame | None = None
    #: spacing: the metal-metal spacings of a real frame.
    spacing: SpacingResult | None = None
    #: average: the class averages, and the rows that were averaged (``class``, ``cx_px``, ``cy_px``).
    averages: AveragingResult | None = None
    averaged_rows: pd.DataFrame | None = None
    #: strain: class -> its measurement.
    strain: dict[str, ClassStrain] = field(default_factory=dict)
    #: strain on a simulated mosaic: class -> shells with measured and injected displacements.
    injected: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class Context:
    """What the stages of one run share."""

    config: PipelineConfig
    run: RunFolder
    console: Any
    progress: bool = True
    mosaic_url: str | None = None
    storage_options: dict[str, Any] | None = None
    pixel_size: float | None = None
    translation: tuple[float, float] = (0.0, 0.0)
    shape: tuple[int, int] | None = None
    material: str | None = None
    mosaic_info: Any = None
    truth_url: str | None = None
    atoms: pd.DataFrame | None = None
    defects: pd.DataFrame | None = None
    detector: str | None = None
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    outputs: StageOutputs = field(default_factory=StageOutputs)

    @property
    def path(self) -> Path:
        return self.run.path

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.console.print(f"[yellow]note[/yellow]: {text}")


def _mosaic_complete(url: str, storage_options: dict | None = None) -> bool:
    from ..io import is_complete, open_mosaic_group, store_exists

    if not store_exists(url, storage_options=storage_options):
        return False
    try:
        return is_complete(open_mosaic_group(url, storage_options=storage_options))
    except Exception:  # a damaged or foreign store is rewritten
        return False


def _describe_mosaic(ctx: Context) -> dict[str, Any]:
    from ..io import MosaicInfo

    info = MosaicInfo.read(_known(ctx.mosaic_url, "mosaic"), storage_options=ctx.storage_options)
    ctx.mosaic_info = info
    ctx.pixel_size = info.pixel_size_angstrom
    ctx.translation = info.translation_angstrom
    ctx.shape = info.shape
    ctx.material = ctx.material or info.material
    ps = ctx.pixel_size
    return {"mosaic": str(ctx.mosaic_url), "shape_px": list(ctx.shape), "pixel_size_pm": ps * 100,
            "field_of_view_nm": [ctx.shape[0] * ps / 10, ctx.shape[1] * ps / 10]}


# ----------------------------------------------------------------------------- inputs
def stage_simulate(ctx: Context) -> dict[str, Any]:
    """Simulate the demo mosaic with its truth tables (skipped when already complete)."""
    from ..simulate import Sample
    from ..parallel.simulate import simulate_mosaic
    from ..io.truth import truth_url_for

    s = ctx.config.simulate
    url = str(ctx.path / "mosaic.zarr")
    ctx.mosaic_url, ctx.truth_url, ctx.material = url, truth_url_for(url), s.material
    summary: dict[str, Any] = {}
    if _mosaic_complete(url) and Path(ctx.truth_url).exists():
        from ..io import open_mosaic_group

        ctx.console.print(f"mosaic already simulated: {url}")
        block = open_mosaic_group(url).attrs.get("stemscale", {})
        made = block.get("summary", {}) if isinstance(block, dict) else {}
        made = made if isinstance(made, dict) else {}
        summary["reused"] = True
        summary["truth"] = {k: made[k] for k in ("columns", "species", "defects") if k in made}
    else:
        sample_kw: dict[str, Any] = {"material": s.material,
                                     "min_defect_spacing_A": s.min_defect_spacing_A,
                                     "position_noise_pm": s.position_noise_pm}
        if s.concentrations is not None:
            sample_kw["concentrations"] = dict(s.concentrations)
        ctx.console.print(f"simulating a {s.shape[0]} x {s.shape[1]} px {s.material} mosaic "
                          f"(seed {s.seed}, {s.dose_e_per_a2:g} e-/Å²)")
        made = simulate_mosaic(url, s.shape, chunks=s.chunks, shards=s.shards, seed=s.seed,
                               sample=Sample(**sample_kw), dose_e_per_a2=s.dose_e_per_a2,
                               overwrite=True, progress=ctx.progress)
        summary["truth"] = {k: made[k] for k in ("columns", "species", "defects") if k in made}
        summary["seconds"] = made.get("seconds")
    if "species" in summary.get("truth", {}):  # an empty column (vacancy) has species ""
        summary["truth"]["species"] = {(k or "(empty)"): v
                                       for k, v in summary["truth"]["species"].items()}
    summary.update(_describe_mosaic(ctx))
    return summary


def stage_input(ctx: Context) -> dict[str, Any]:
    """Open the input mosaic, or ingest raw frames / the example frame into ``mosaic.zarr``."""
    from ..io import ingest, temul_mos2_frame_path

    s = ctx.config.input
    ctx.storage_options = dict(s.storage_options) or None
    ctx.material = s.material
    summary: dict[str, Any] = {}
    if s.mosaic:
        from ..io import open_mosaic

        ctx.mosaic_url = s.mosaic
        open_mosaic(s.mosaic, storage_options=ctx.storage_options)  # fails early and clearly
    else:
        if s.example == "temul_mos2":
            files = [str(temul_mos2_frame_path(install=True))]
            ctx.material = ctx.material or "MoS2"
            summary["example"] = "temul-toolkit 0.1.9: example_Se_implanted_MoS2.dm3 (GPL-3, not copied)"
        else:
            files = list(s.files or [])
            for f in files:
                if "://" not in f and not Path(f).exists():
                    raise InputError(f"input file '{f}' does not exist")
        url = str(ctx.path / "mosaic.zarr")
        ctx.mosaic_url = url
        if _mosaic_complete(url):
            ctx.console.print(f"frames already ingested: {url}")
            summary["reused"] = True
        else:
            ctx.console.print(f"ingesting {len(files)} frame(s) into {url}")
            ingest(files, url, pixel_size=s.pixel_size_angstrom, positions=s.positions,
                   high_tension_kv=s.high_tension_kv, dose_e_per_a2=s.dose_e_per_a2,
                   material=ctx.material, chunks=s.chunks, shards=s.shards, overwrite=True,
                   progress=ctx.progress)
        summary["files"] = files
    summary.update(_describe_mosaic(ctx))
    return summary


# ----------------------------------------------------------------------------- find
def _resolve_detector(ctx: Context) -> tuple[str, Any]:
    d = ctx.config.detect
    if d.detector == "peaks":
        return "peaks", None
    if d.model is not None or d.detector == "fcn":
        return "fcn", d.model
    from ..detect.weights import model_for_material

    material = ctx.material or "WSe2"
    name = model_for_material(material)
    if name is not None:
        return "fcn", name
    ctx.note(f"no detection model for {material} ships with this version; using the classical "
             "peak detector (atom columns only, no defect classes). Set detect.model to a "
             "trained model's manifest to detect defects.")
    return "peaks", None


def stage_find(ctx: Context) -> dict[str, Any]:
    """Detect and fit every atom column (and defect) of the mosaic, block by block."""
    from ..parallel.process import BlockConfig
    from ..parallel.run import load_tables, run_mosaic

    d, f, b = ctx.config.detect, ctx.config.fit, ctx.config.blocks
    detector, model = _resolve_detector(ctx)
    ctx.detector = detector
    spacing = d.column_spacing_angstrom or column_spacing(ctx.material)
    config = BlockConfig.for_mosaic(
        ctx.mosaic_info, material=ctx.material, model=model, tta=d.tta, device=d.device,
        amp=d.amp, fit_window=f.window, fit_model=f.model, estimator=f.estimator,
        detector_margin=d.detector_margin, snap_radius=f.snap_radius, tolerance=f.tolerance,
        max_iterations=f.max_iterations, translation_angstrom=tuple(ctx.translation),
        detector=detector, column_spacing_angstrom=spacing,
    )
    ctx.console.print(f"finding atom columns ({detector} detector, {f.window} px fit windows, "
                      f"halo {config.halo} px)")
    labels = d.wants_labels
    if labels and detector != "fcn":
        ctx.note("no FCN for this material, so no probability maps are written (detect.labels)")
        labels = False
    result = run_mosaic(_known(ctx.mosaic_url, "mosaic"), ctx.path / "tables", config,
                        block_shape=b.shape, storage_options=ctx.storage_options,
                        progress=ctx.progress, retries=b.retries, labels=labels,
                        probabilities=d.probabilities and labels,
                        labels_store=d.labels_store if labels else None,
                        # the run folder allowed recomputing find's tables (--overwrite)
                        overwrite="find" in getattr(ctx.run, "replace", ()))
    ctx.atoms, ctx.defects = load_tables(ctx.path / "tables")
    from ..fit import FitState

    states = ctx.atoms["state"].value_counts().to_dict()
    excluded = _excluded_fits(ctx, states)
    return {
        "detector": detector, "model": str(model) if model is not None else None,
        "column_spacing_angstrom": spacing, "halo_px": config.halo,
        "blocks": result.n_blocks, "blocks_resumed": result.skipped,
        "atom_columns": result.n_atoms, "defects": result.n_defects,
        "defects_by_class": ctx.defects["class"].value_counts().to_dict() if len(ctx.defects) else {},
        "fit_states": {FitState(int(k)).name: int(v) for k, v in states.items()},
        "reliable_fits": int(states.get(int(FitState.CONVERGED), 0)),
        "excluded_fits": excluded,
        "median_position_error_pm": _median_error(ctx.atoms),
        "seconds": round(result.seconds, 2),
        "megapixels_per_second": (_known(ctx.shape, "mosaic shape")[0] * _known(ctx.shape, "mosaic shape")[1] / 1e6 / result.seconds
                                  if result.seconds > 0 and not result.skipped else None),
        "tables": "tables/atoms, tables/defects",
        "labels": ((d.labels_store or f"{ctx.mosaic_url}/labels") if labels else None),
    }


def _excluded_fits(ctx: Context, states: dict[Any, int]) -> dict[str, int]:
    """Fits that are not reliable (not CONVERGED), by state, with a note that says so."""
    from ..fit import FitState

    excluded = {FitState(int(k)).name: int(v) for k, v in states.items()
                if int(k) != int(FitState.CONVERGED) and v}
    total, n = sum(int(v) for v in states.values()), sum(excluded.values())
    if n:
        parts = ", ".join(f"{v:,} {k}" for k, v in sorted(excluded.items(), key=lambda kv: -kv[1]))
        ctx.note(f"{n:,} of {total:,} column fits ({100 * n / total:.1f} %) are not reliable "
                 f"({parts}): they keep their state and no error bar, and are left out of "
                 "spacings, strain reference sites and precision / error summaries")
    return excluded


def _median_error(atoms: pd.DataFrame) -> float | None:
    """Median position error (pm) of the reliable (converged) fits."""
    from ..fit import is_reliable

    if atoms.empty:
        return None
    atoms = atoms[is_reliable(atoms["state"]).to_numpy()]
    err = np.hypot(atoms["x_err_pm"].to_numpy(float), atoms["y_err_pm"].to_numpy(float))
    err = err[np.isfinite(err)]
    return float(np.median(err)) if len(err) else None


# ----------------------------------------------------------------------------- scoring
def stage_score(ctx: Context) -> dict[str, Any]:
    """Score columns and defects against the simulator's truth (demo)."""
    from ..classes import DEFECT_CLASSES
    from ..detect.metrics import column_scores, detection_scores, match_points
    from ..fit import is_reliable
    from ..io.truth import read_truth

    s = ctx.config.score
    truth = read_truth(_known(ctx.truth_url, "truth table"))
    ps = _known(ctx.pixel_size, "pixel size")
    radius = s.column_radius_px or 0.45 * column_spacing(ctx.material) / ps
    atoms, defects = _known(ctx.atoms, "atoms table"), _known(ctx.defects, "defects table")
    present = truth[truth["n_atoms"] > 0] if "n_atoms" in truth else truth
    cols = column_scores(atoms, present, radius=radius, shape=ctx.shape, border=s.border_px)
    # Position precision of converged fits against the true positions, per site, in pm.
    ok = is_reliable(atoms["state"]).to_numpy()  # converged, with a meaningful error bar
    good = atoms[ok]
    pairs = match_points(good[["x_px", "y_px"]].to_numpy(), present[["x_px", "y_px"]].to_numpy(),
                         radius)
    dx = (good["x_px"].to_numpy()[pairs[:, 0]] - present["x_px"].to_numpy()[pairs[:, 1]]) * ps * 100
    dy = (good["y_px"].to_numpy()[pairs[:, 0]] - present["y_px"].to_numpy()[pairs[:, 1]]) * ps * 100
    site = present["site"].to_numpy()[pairs[:, 1]]
    pristine = (present["defect"].to_numpy()[pairs[:, 1]] == "") if "defect" in present else np.ones(len(pairs), bool)
    precision = {}
    for name in ("M", "X"):
        sel = (site == name) & pristine
        if sel.sum() > 1:
            precision[name] = {"columns": int(sel.sum()),
                               "rms_pm": float(np.sqrt(np.mean(dx[sel] ** 2 + dy[sel] ** 2))),
                               "sigma_x_pm": float(np.std(dx[sel], ddof=1)),
                               "sigma_y_pm": float(np.std(dy[sel], ddof=1)),
                               "bias_x_pm": float(np.mean(dx[sel])),
                               "bias_y_pm": float(np.mean(dy[sel]))}
    ctx.outputs.position_errors = pd.DataFrame({"dx_pm": dx, "dy_pm": dy, "site": site,
                                                "pristine": pristine})
    true_defects = truth[truth["defect"] != ""].rename(columns={"defect": "class"})
    scores = detection_scores(defects, true_defects, classes=DEFECT_CLASSES,
                              radius=s.defect_radius_px, shape=ctx.shape, border=s.border_px)
    per_class = {c: {k: _number(v) for k, v in scores.loc[c].items()} for c in scores.index}
    return {
        "columns": {k: _number(v) for k, v in cols.items()},
        "column_match_radius_px": radius,
        "precision_pm": precision,
        "defects": per_class,
        "note": None if ctx.detector == "fcn" else
        "the peaks detector finds no defects, so defect scores are zero recall",
    }


def _number(value: Any) -> Any:
    """Counts as int, NaN as None (JSON has no NaN), other numbers as float."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return value


# ----------------------------------------------------------------------------- real frames
def stage_spacing(ctx: Context) -> dict[str, Any]:
    """Metal-metal spacings in the pristine part of a real frame."""
    from ..simulate import MATERIALS
    from ..strain.spacing import metal_spacings

    s = ctx.config.spacing
    if ctx.atoms is None or ctx.atoms.empty:
        raise InputError("no atom columns were found, so there are no spacings to measure")
    spec = MATERIALS.get(ctx.material or "")
    result = metal_spacings(
        ctx.atoms, _known(ctx.pixel_size, "pixel size"), _known(ctx.shape, "mosaic shape"),
        region_A=s.region_A, translation_angstrom=(float(ctx.translation[0]), float(ctx.translation[1])), exclude_radius_A=s.exclude_radius_A,
        substitution_threshold=s.substitution_threshold, tolerance=s.tolerance, edge_A=s.edge_A,
        nominal_a_A=spec.a if spec else None, metal_brighter=ctx.material != "MoSe2",
        # the peak detector's score is a local contrast; the FCN's is a probability
        brightness="score" if ctx.detector == "peaks" else "amplitude",
    )
    result.columns.to_parquet(ctx.path / "columns_classified.parquet", index=False)
    result.bonds.to_csv(ctx.path / "metal_bonds.csv", index=False)
    ctx.outputs.spacing = result
    return {**result.summary, "material": ctx.material,
            "tables": "columns_classified.parquet, metal_bonds.csv"}


# ----------------------------------------------------------------------------- adapters
def _chalcogen_sites(ctx: Context) -> pd.DataFrame:
    """Reliably fitted chalcogen columns of the run (the candidate pristine references):
    labelled by the FCN, else by the sublattice geometry."""
    from ..fit import FitState, is_reliable

    atoms = ctx.atoms
    if atoms is None or atoms.empty:
        return pd.DataFrame({"x_px": [], "y_px": []})
    reliable = is_reliable(atoms["state"]).to_numpy()
    if (atoms["site"] == "X").any():
        return atoms[(atoms["site"] == "X").to_numpy() & reliable]
    from ..lattice import classify_sublattices
    from ..simulate import MATERIALS

    # the peak detector's smoothed local contrast measures brightness better than fit amplitudes
    score = atoms["score"].to_numpy(float)
    # every column that stayed in its window places the sublattices; only reliable ones are kept
    located = atoms["state"].isin([int(FitState.CONVERGED), int(FitState.MAX_ITERATIONS),
                                   int(FitState.UNCERTAIN)]).to_numpy()
    ok = located & np.isfinite(score) & (score > 0)
    good = atoms[ok]
    spec = MATERIALS.get(ctx.material or "WSe2")
    sites, _ = classify_sublattices(good[["x_px", "y_px"]].to_numpy(float), score[ok],
                                    guess_px=spec.a / _known(ctx.pixel_size, "pixel size") if spec else None,
                                    metal_brighter=(ctx.material or "WSe2") != "MoSe2")
    return good[(sites == "X") & reliable[ok]]


def stage_average(ctx: Context) -> dict[str, Any]:
    """Screening and class averaging, through :func:`.adapters.average_stage`."""
    from ..io import open_mosaic

    s = ctx.config.average
    defects = ctx.defects if ctx.defects is not None else pd.DataFrame()
    source = s.defects
    if source == "auto":
        source = "detected" if len(defects) or ctx.truth_url is None else "truth"
    if source == "truth":
        if ctx.truth_url is None:
            raise InputError("average.defects: truth needs a simulated mosaic (kind demo)")
        from ..average import detections_from_truth as from_truth
        from ..io.truth import read_truth

        # every class: all defects count as neighbours in the screening, not only averaged ones
        defects = from_truth(read_truth(ctx.truth_url))
        ctx.note("averaging the simulation's true defect positions (rounded to whole pixels, "
                 "like FCN centroids)" + (f" because the {ctx.detector} detector found no defects"
                                          if s.defects == "auto" else ""))
    elif defects.empty:
        raise StageUnavailable("no defects were detected, so there is nothing to average"
                               + (" (the peaks detector finds columns only)"
                                  if ctx.detector == "peaks" else ""))
    mosaic = open_mosaic(_known(ctx.mosaic_url, "mosaic"), storage_options=ctx.storage_options)
    result, kept, summary = average_stage(
        mosaic=mosaic, sites=_chalcogen_sites(ctx), defects=defects,
        pixel_size=_known(ctx.pixel_size, "pixel size"), shape=_known(ctx.shape, "mosaic shape"), classes=s.classes, options=dict(s.options), out=ctx.path)
    ctx.outputs.averages, ctx.outputs.averaged_rows = result, kept
    return {"defects_from": source, **summary}


def stage_strain(ctx: Context) -> dict[str, Any]:
    """Spacings and displacements in the class averages, through :func:`.adapters.strain_stage`.

    On a simulated mosaic the measured radial displacements of every shell are
    compared with the displacements the simulation injected at the same sites.
    """
    measured, summary = strain_stage(averages=ctx.outputs.averages,
                                     options=dict(ctx.config.strain.options), out=ctx.path)
    ctx.outputs.strain = measured
    if ctx.truth_url is not None and measured:
        summary["recovered_vs_injected"] = _compare_injected(ctx, measured)
    return summary


def _compare_injected(ctx: Context, measured: dict[str, Any]) -> dict[str, Any]:
    from ..io.truth import read_truth
    from ..strain import injected_displacements

    truth = read_truth(_known(ctx.truth_url, "truth table"))
    rows = ctx.outputs.averaged_rows
    assert rows is not None  # the average stage ran: there are measurements
    centres = {c: g[["cx_px", "cy_px"]].to_numpy(float) for c, g in rows.groupby("class")}
    out: dict[str, Any] = {}
    for cls, m in measured.items():
        inj = injected_displacements(truth, centres[cls], centres["pristine"], m.geometry)
        shells = m.shells()
        shells["injected_u_r_pm"] = inj["shell_u_r"]
        shells.to_csv(ctx.path / "strain" / f"{cls}_recovered_vs_injected.csv", index=False)
        ctx.outputs.injected[cls] = shells
        diff = shells["u_r_pm"] - shells["injected_u_r_pm"]
        se = shells["u_r_se_pm"]
        finite = np.isfinite(diff) & np.isfinite(se) & (se > 0)
        out[cls] = {
            "shells": int(len(shells)),
            "rms_difference_pm": float(np.sqrt(np.nanmean(diff**2))) if len(diff) else None,
            "rms_injected_pm": float(np.sqrt(np.nanmean(shells["injected_u_r_pm"] ** 2))),
            "median_se_pm": float(np.nanmedian(se)) if finite.any() else None,
            "chi2_per_shell": float(np.mean((diff[finite] / se[finite]) ** 2)) if finite.any() else None,
            "table": f"strain/{cls}_recovered_vs_injected.csv",
        }
    return out
