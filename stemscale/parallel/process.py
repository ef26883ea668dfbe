"""The per-block pipeline: one pure function from a haloed window to tables.

``process_block`` runs FCN detection, snaps every column candidate to the
local maximum of the lightly smoothed image, refines it with a batched
Gaussian fit, places each defect on its refined lattice site, converts to
global coordinates and keeps only what the block's core owns.  Snapping and
tight fits make the result depend on the image around a column only, not on
where a block starts, so chunked and unchunked runs give the same tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from ..detect.peaks import find_peaks, peaks_context, snap_to_maxima
from ..detect.sites import place_defects
from ..errors import InputError
from ..fit.states import grade_positions, is_usable
from ..lattice import column_spacing
from .blocks import BlockSpec, keep_owned, required_halo

__all__ = [
    "BlockConfig",
    "ATOM_COLUMNS",
    "DEFECT_COLUMNS",
    "empty_atoms",
    "empty_defects",
    "process_block",
]

#: Columns of the atoms table (one row per atom column).
ATOM_COLUMNS = [
    "x_px", "y_px", "x_A", "y_A", "site", "label", "score", "amplitude", "sigma_x_px",
    "sigma_y_px", "background", "x_err_pm", "y_err_pm", "state", "block",
]
#: A converged fit whose position error bar exceeds this fraction of the column spacing is
#: ``UNCERTAIN`` (its 2-sigma interval reaches halfway to the next column): not a measurement.
UNCERTAIN_SPACING_FRACTION = 0.25
#: Columns of the defects table (one row per defect).
DEFECT_COLUMNS = ["class", "x_px", "y_px", "x_A", "y_A", "score", "area", "position", "block"]


@dataclass(frozen=True)
class BlockConfig:
    """Everything a block needs besides its pixels (small and picklable).

    Parameters
    ----------
    pixel_size_angstrom
        Pixel size of the mosaic in Å.
    model
        Detection model: a shipped name, a manifest path or a ``ModelRef``
        (path + digest). Never a loaded network: workers load and cache it.
    stats
        Mosaic-wide (mean, std) used to standardise every block alike.
    tta
        8x dihedral test-time augmentation.
    device
        ``"cpu"`` or ``"cuda"``.
    amp
        Mixed precision on CUDA.
    fit_window
        Gaussian-fit window edge (px).
    fit_model, estimator
        Passed to :func:`stemscale.fit.refine_positions`.
    detector_margin
        Context the FCN needs around a pixel (px); sets the halo.
    snap_radius
        How far (px) a column candidate may move to the local image maximum.
    tolerance, max_iterations
        Fit convergence; tight so fits from nearby starts agree to < 1e-6 px.
    translation_angstrom
        Position (y, x) in Å of the mosaic's pixel (0, 0), added to Å coordinates.
    detector
        ``"fcn"``: the neural network finds and classifies columns and defects.
        ``"peaks"``: classical local maxima of the smoothed image find columns only
        (no model needed; no defect classes, ``site`` is ``"?"``).
    fit_backend
        Fitting backend; ``"auto"`` fits on the GPU (CuPy, else torch) when
        ``device`` is CUDA and on the CPU (numba) otherwise.
    column_spacing_angstrom
        Nearest projected column distance (Å) of the material (the peak
        detector's scale and how far a defect may sit from its site); ``None``
        takes WSe2's.  :meth:`for_mosaic` derives it from the mosaic's material.
    """

    pixel_size_angstrom: float
    model: Any = None
    stats: tuple[float, float] | None = None
    tta: bool = True
    device: str = "cpu"
    amp: bool = False
    fit_window: int = 7
    fit_model: str = "gauss2d_elliptic"
    estimator: str = "lse"
    detector_margin: int = 64
    snap_radius: int = 3
    tolerance: float = 1e-10
    max_iterations: int = 100
    translation_angstrom: tuple[float, float] = (0.0, 0.0)
    detector: str = "fcn"
    fit_backend: str = "auto"
    column_spacing_angstrom: float | None = None

    @property
    def column_spacing(self) -> float:
        """The column spacing in Å (the material's, WSe2's when unset)."""
        if self.column_spacing_angstrom is not None:
            return float(self.column_spacing_angstrom)
        return column_spacing()

    @classmethod
    def for_mosaic(cls, info: Any, *, material: str | None = None, stats: Any = "sample",
                   **overrides: Any) -> "BlockConfig":
        """The block configuration of a mosaic, from what its metadata says.

        Parameters
        ----------
        info
            :class:`stemscale.io.MosaicInfo` of the mosaic.
        material
            Overrides the mosaic's own material (which sets the column spacing).
        stats
            ``"sample"`` (default) computes the mosaic-wide standardisation
            statistics from a fixed sample of its chunks; ``None`` leaves them
            unset (each block standardises itself); or a ``(mean, std)`` pair.
        **overrides
            Any other field.

        Raises
        ------
        InputError
            An unknown field or material.
        """
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            import difflib

            hints = [difflib.get_close_matches(u, [f.name for f in fields(cls)], n=1) for u in unknown]
            said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                             for u, h in zip(unknown, hints))
            raise InputError(f"unknown block option(s) {said}")
        if stats == "sample":
            from .run import mosaic_statistics

            stats = mosaic_statistics(info.url, storage_options=info.storage_options or None)
        from ..detect.checks import check_sampling

        material = material or info.material
        if overrides.get("column_spacing_angstrom") is None:
            overrides["column_spacing_angstrom"] = column_spacing(material)
        overrides.setdefault("translation_angstrom", tuple(info.translation_angstrom))
        config = cls(pixel_size_angstrom=float(info.pixel_size_angstrom), stats=stats, **overrides)
        model_material = None
        if config.detector == "fcn":
            from ..detect.weights import model_ref

            model_material = model_ref(config.model).manifest.material
        check_sampling(config.pixel_size_angstrom, material=material,
                       model_material=model_material, fit_window=config.fit_window,
                       where=f"mosaic '{info.where}'")
        return config

    @property
    def halo(self) -> int:
        """Halo (px) that makes the owner-computes rule exact for this configuration."""
        margin = self.detector_margin
        if self.detector == "peaks":
            margin = max(margin, peaks_context(self.pixel_size_angstrom, self.column_spacing))
        return required_halo(margin, self.fit_window + 2 * self.snap_radius)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["model"] = str(self.model) if self.model is not None else None
        return out


def empty_atoms() -> pd.DataFrame:
    """An atoms table with no rows and the right dtypes (for empty blocks)."""
    return _typed(pd.DataFrame({c: [] for c in ATOM_COLUMNS}), ATOM_COLUMNS)


def empty_defects() -> pd.DataFrame:
    """A defects table with no rows and the right dtypes."""
    return _typed(pd.DataFrame({c: [] for c in DEFECT_COLUMNS}), DEFECT_COLUMNS)


_DTYPES = {
    "x_px": "float64", "y_px": "float64", "x_A": "float64", "y_A": "float64",
    "site": "object", "label": "object", "score": "float32", "amplitude": "float32",
    "sigma_x_px": "float32", "sigma_y_px": "float32", "background": "float32",
    "x_err_pm": "float32", "y_err_pm": "float32", "state": "int8", "block": "object",
    "class": "object", "area": "int32", "position": "object",
}


def _typed(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    df = df.reindex(columns=columns)
    return df.astype({c: _DTYPES[c] for c in columns}).reset_index(drop=True)


def process_block(window: np.ndarray, spec: BlockSpec, config: BlockConfig, *,
                  return_proba: bool = False):
    """Detect, refine and keep the owned columns and defects of one block.

    Parameters
    ----------
    window
        The block's pixels including its halo (``spec.window``), any dtype.
    spec
        Where the window sits in the mosaic and which core it owns.
    config
        Detection and fitting settings.
    return_proba
        Also return the FCN's class probabilities (C, h, w) on the window's pixel
        grid (resampled back when the network ran at another pixel size), or
        None for a blank window; needs the ``"fcn"`` detector.

    Returns
    -------
    atoms, defects : pandas.DataFrame
        In global pixel and Å coordinates, only rows owned by the block's core.
    proba : numpy.ndarray or None
        Only with ``return_proba``.
    """
    from ..detect import detect, get_model
    from ..fit import refine_positions

    image = np.asarray(window)
    expected = (spec.window[1] - spec.window[0], spec.window[3] - spec.window[2])
    if image.shape != expected:
        raise InputError(f"block {spec.key}: window shape {image.shape}, expected {expected}")
    if not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise InputError(
            f"block {spec.key} (pixels y {spec.window[0]}:{spec.window[1]}, "
            f"x {spec.window[2]}:{spec.window[3]}) has {bad} NaN/Inf pixels"
        )
    if return_proba and config.detector != "fcn":
        raise InputError(f"probability maps need the 'fcn' detector, not {config.detector!r}")
    if float(image.max(initial=0)) == float(image.min(initial=0)):
        empty = (empty_atoms(), empty_defects())  # vacuum or blank: nothing to find
        return (*empty, None) if return_proba else empty

    ps = float(config.pixel_size_angstrom)
    if config.detector == "peaks":
        columns = find_peaks(image, ps, config.column_spacing)
        found_defects = pd.DataFrame({c: [] for c in ["class", "x_px", "y_px", "score", "area"]})
    elif config.detector == "fcn":
        model = get_model(config.model, device=config.device)
        found = detect(image, ps, model=model, tta=config.tta, device=config.device,
                       amp=config.amp, stats=config.stats, resample=True,
                       return_proba=return_proba)
        columns, found_defects = found.columns, found.defects
        proba = None
        if return_proba:
            assert found.proba is not None  # detect(return_proba=True) keeps them
            proba = _on_window_grid(found.proba, image.shape)
    else:
        raise InputError(f"detector must be 'fcn' or 'peaks', got {config.detector!r}")
    oy, ox = spec.origin
    if columns.empty:
        atoms = empty_atoms()
    else:
        sx, sy = snap_to_maxima(image, columns["x_px"].to_numpy(), columns["y_px"].to_numpy(),
                                config.snap_radius)
        seeds = pd.DataFrame({"x_px": sx, "y_px": sy, "site": columns["site"].to_numpy(),
                              "label": columns["label"].to_numpy(),
                              "score": columns["score"].to_numpy()})
        # Two candidates snapping to one maximum are one column: keep the more confident.
        seeds = (seeds.sort_values("score", ascending=False)
                 .drop_duplicates(["x_px", "y_px"]).sort_values(["y_px", "x_px"]))
        fits = refine_positions(
            image, seeds[["x_px", "y_px"]].to_numpy() + np.array([ox, oy], dtype=float),
            window=config.fit_window,
            model=config.fit_model, estimator=config.estimator, pixel_size_angstrom=ps,
            offset_xy=(float(ox), float(oy)), tolerance=config.tolerance,
            max_iterations=config.max_iterations, backend=_fit_backend(config),
        )
        atoms = pd.DataFrame({
            "x_px": fits["x_px"].to_numpy(), "y_px": fits["y_px"].to_numpy(),
            "site": seeds["site"].to_numpy(), "label": seeds["label"].to_numpy(),
            "score": seeds["score"].to_numpy(), "amplitude": fits["amplitude"].to_numpy(),
            "sigma_x_px": fits["sigma_x_px"].to_numpy(), "sigma_y_px": fits["sigma_y_px"].to_numpy(),
            "background": fits["background"].to_numpy(),
            "x_err_pm": fits.get("x_err_pm", pd.Series(np.nan, index=fits.index)).to_numpy(),
            "y_err_pm": fits.get("y_err_pm", pd.Series(np.nan, index=fits.index)).to_numpy(),
            "state": fits["state"].to_numpy(),
        })
        # A failed fit (diverged, left its window ...) reports its start position, so its
        # owner is the block that found it and its row never lands somewhere arbitrary.
        failed = _failed(atoms)
        atoms.loc[failed, "x_px"] = seeds["x_px"].to_numpy()[failed] + ox
        atoms.loc[failed, "y_px"] = seeds["y_px"].to_numpy()[failed] + oy
        atoms.loc[failed, ["x_err_pm", "y_err_pm", "amplitude", "sigma_x_px", "sigma_y_px",
                        "background"]] = np.nan
        # Only converged fits with a meaningful error bar are measurements: the others keep
        # their position (for ownership and defect sites) but carry their state and no error
        # bar (MAX_ITERATIONS, UNCERTAIN), so no table shows a 100 nm "uncertainty".
        states, x_err, y_err = grade_positions(
            atoms["state"].to_numpy(), atoms["x_err_pm"].to_numpy(), atoms["y_err_pm"].to_numpy(),
            max_error=UNCERTAIN_SPACING_FRACTION * config.column_spacing * 100.0)
        atoms["state"], atoms["x_err_pm"], atoms["y_err_pm"] = states, x_err, y_err
        ty, tx = config.translation_angstrom
        atoms["x_A"] = atoms["x_px"] * ps + tx
        atoms["y_A"] = atoms["y_px"] * ps + ty
        atoms["block"] = spec.key
        atoms = _typed(keep_owned(atoms, spec.core), ATOM_COLUMNS)

    defects = found_defects.copy()
    defects["x_px"] += ox
    defects["y_px"] += oy
    lattice_nn = config.column_spacing / ps
    # Place on sites using all refined columns of the window (not just owned ones).
    all_atoms = atoms if columns.empty else _global_fits(fits, seeds, ox, oy)
    defects = place_defects(defects, all_atoms, lattice_nn)
    ty, tx = config.translation_angstrom
    defects["x_A"] = defects["x_px"] * ps + tx
    defects["y_A"] = defects["y_px"] * ps + ty
    defects["block"] = spec.key
    defects = _typed(keep_owned(defects, spec.core), DEFECT_COLUMNS)
    if return_proba:
        return atoms, defects, proba
    return atoms, defects


def _on_window_grid(proba: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Class probabilities (C, h, w) resampled (linearly, pixel centres aligned) to ``shape``."""
    proba = np.asarray(proba, dtype=np.float32)
    if proba.shape[1:] == tuple(shape):
        return proba
    from skimage.transform import resize

    return np.stack([resize(p, shape, order=1, mode="edge", anti_aliasing=False,
                            preserve_range=True).astype(np.float32) for p in proba])


def _fit_backend(config: BlockConfig) -> str:
    """GPU workers fit on the GPU; tables come back to the host, pixels never do twice."""
    if config.fit_backend != "auto" or not str(config.device).startswith("cuda"):
        return config.fit_backend
    from ..fit import available_backends

    backends = available_backends()
    return "cupy" if "cupy" in backends else "torch"


def _failed(fits: pd.DataFrame) -> np.ndarray:
    """Fits whose position is not a usable estimate (anything but converged / max-iterations)."""
    ok = is_usable(fits["state"]).to_numpy()
    finite = np.isfinite(fits["x_px"].to_numpy()) & np.isfinite(fits["y_px"].to_numpy())
    return ~(ok & finite)


def _global_fits(fits: pd.DataFrame, seeds: pd.DataFrame, ox: int, oy: int) -> pd.DataFrame:
    x = fits["x_px"].to_numpy().copy()
    y = fits["y_px"].to_numpy().copy()
    bad = _failed(fits)
    x[bad] = seeds["x_px"].to_numpy()[bad] + ox
    y[bad] = seeds["y_px"].to_numpy()[bad] + oy
    return pd.DataFrame({"x_px": x, "y_px": y, "site": seeds["site"].to_numpy()})
