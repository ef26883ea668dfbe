"""The per-block pipeline: one pure function from a haloed window to tables.

``process_block`` runs FCN detection, snaps every column candidate to the
local maximum of the lightly smoothed image, refines it with a batched
Gaussian fit, places each defect on its refined lattice site, converts to
global coordinates and keeps only what the block's core owns.  Snapping and
tight fits make the result depend on the image around a column only, not on
where a block starts, so chunked and unchunked runs give the same tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import InputError
from .blocks import BlockSpec, keep_owned, required_halo

__all__ = [
    "BlockConfig",
    "ATOM_COLUMNS",
    "DEFECT_COLUMNS",
    "empty_atoms",
    "empty_defects",
    "process_block",
    "snap_to_maxima",
]

#: Columns of the atoms table (one row per atom column).
ATOM_COLUMNS = [
    "x_px", "y_px", "x_A", "y_A", "site", "label", "score", "amplitude", "sigma_x_px",
    "sigma_y_px", "background", "x_err_pm", "y_err_pm", "state", "block",
]
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
    extra: dict = field(default_factory=dict)

    @property
    def halo(self) -> int:
        """Halo (px) that makes the owner-computes rule exact for this configuration."""
        margin = self.detector_margin
        if self.detector == "peaks":
            spacing = float(self.extra.get("column_spacing_angstrom", 1.905))
            margin = max(margin, peaks_context(self.pixel_size_angstrom, spacing))
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


def snap_to_maxima(image: np.ndarray, x: np.ndarray, y: np.ndarray, radius: int,
                   sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Move candidate positions to the brightest pixel of the smoothed image nearby.

    The result depends only on the image within ``radius + 4 sigma`` of each
    candidate, never on where the candidate came from, so detections that differ
    slightly between two runs snap to the same integer start.
    """
    smooth = ndimage.gaussian_filter(np.asarray(image, dtype=np.float64), sigma, mode="nearest")
    ny, nx = smooth.shape
    xi = np.clip(np.rint(x).astype(int), 0, nx - 1)
    yi = np.clip(np.rint(y).astype(int), 0, ny - 1)
    offsets = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    inside = dy**2 + dx**2 <= radius**2
    dy, dx = dy[inside], dx[inside]
    # Hill-climb: repeat the local arg-max until no candidate moves (a few rounds at most).
    for _ in range(8):
        yy = np.clip(yi[:, None] + dy[None, :], 0, ny - 1)
        xx = np.clip(xi[:, None] + dx[None, :], 0, nx - 1)
        best = np.argmax(smooth[yy, xx], axis=1)
        new_y, new_x = yy[np.arange(len(yi)), best], xx[np.arange(len(xi)), best]
        if np.array_equal(new_y, yi) and np.array_equal(new_x, xi):
            break
        yi, xi = new_y, new_x
    return xi.astype(float), yi.astype(float)


def _peak_geometry(pixel_size_angstrom: float, column_spacing_angstrom: float):
    spacing_px = column_spacing_angstrom / pixel_size_angstrom
    sigma = max(0.5, 0.12 * spacing_px)
    size = int(2 * spacing_px) | 1
    return spacing_px, sigma, size


def peaks_context(pixel_size_angstrom: float, column_spacing_angstrom: float = 1.905) -> int:
    """Pixels of image around a point that :func:`find_peaks` looks at to decide it."""
    _, sigma, size = _peak_geometry(pixel_size_angstrom, column_spacing_angstrom)
    # smoothing, then two window filters (background minimum, local contrast maximum)
    return int(np.ceil(4 * sigma)) + 2 * (size // 2) + 1


def find_peaks(image: np.ndarray, pixel_size_angstrom: float,
               column_spacing_angstrom: float = 1.905, min_contrast: float = 0.25) -> pd.DataFrame:
    """Atom-column candidates as local maxima of the smoothed image (no model needed).

    Every decision is local (within :func:`peaks_context` pixels), so a block with
    that much halo finds exactly what a whole-image run finds.

    Parameters
    ----------
    image
        2-D image.
    pixel_size_angstrom
        Pixel size in Å.
    column_spacing_angstrom
        Nearest distance between projected columns (1.9 Å for WSe2 M-X2).
    min_contrast
        A peak must rise above its local background by this fraction of the
        strongest peak contrast nearby.
    """
    from skimage.feature import peak_local_max

    spacing_px, sigma, size = _peak_geometry(pixel_size_angstrom, column_spacing_angstrom)
    smooth = ndimage.gaussian_filter(np.asarray(image, dtype=np.float64), sigma, mode="nearest")
    contrast = smooth - ndimage.minimum_filter(smooth, size=size, mode="nearest")
    local_max = ndimage.maximum_filter(contrast, size=size, mode="nearest")
    peaks = peak_local_max(contrast, min_distance=max(1, int(0.45 * spacing_px)),
                           exclude_border=False)
    if len(peaks):
        keep = contrast[peaks[:, 0], peaks[:, 1]] >= min_contrast * local_max[peaks[:, 0], peaks[:, 1]]
        keep &= contrast[peaks[:, 0], peaks[:, 1]] > 0
        peaks = peaks[keep]
    y, x = peaks[:, 0].astype(float), peaks[:, 1].astype(float)
    return pd.DataFrame({"x_px": x, "y_px": y, "site": "?", "label": "",
                         "score": contrast[peaks[:, 0], peaks[:, 1]].astype(np.float32)})


def _place_defects(defects: pd.DataFrame, atoms: pd.DataFrame, lattice_nn: float) -> pd.DataFrame:
    """Put each defect on its refined lattice site.

    A defect whose column is still there (SV, 2Te, TeSe, MSub) takes the
    fitted position of the nearest column of its site; an empty site (DV, MV)
    takes the centroid of the three nearest columns of the other sublattice,
    which surround it in 2H projection.  Otherwise the FCN centroid is kept.
    """
    from ..detect.postprocess import DEFECT_SITE

    if defects.empty:
        defects = defects.copy()
        defects["position"] = pd.Series(dtype=object)
        return defects
    out = defects.copy()
    out["position"] = "fcn"
    fitted = atoms[np.isfinite(atoms["x_px"]) & np.isfinite(atoms["y_px"])]
    trees = {}
    for site in ("M", "X"):
        sel = fitted[fitted["site"] == site]
        trees[site] = (cKDTree(sel[["x_px", "y_px"]].to_numpy()), sel) if len(sel) else None
    for i, row in out.iterrows():
        site = DEFECT_SITE.get(row["class"], "X")
        empty = row["class"] in ("DV", "MV")
        point = (row["x_px"], row["y_px"])
        if not empty and trees[site] is not None:
            dist, j = trees[site][0].query(point)
            if dist <= 0.5 * lattice_nn:
                hit = trees[site][1].iloc[j]
                out.loc[i, ["x_px", "y_px", "position"]] = [hit["x_px"], hit["y_px"], "column"]
                continue
        other = "X" if site == "M" else "M"
        if trees[other] is not None and len(trees[other][1]) >= 3:
            dist, j = trees[other][0].query(point, k=3)
            if np.all(dist <= 1.5 * lattice_nn):
                ring = trees[other][1].iloc[j]
                out.loc[i, ["x_px", "y_px", "position"]] = [
                    ring["x_px"].mean(), ring["y_px"].mean(), "site",
                ]
    return out


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
        columns = find_peaks(image, ps, float(config.extra.get("column_spacing_angstrom", 1.905)))
        found_defects = pd.DataFrame({c: [] for c in ["class", "x_px", "y_px", "score", "area"]})
    elif config.detector == "fcn":
        model = get_model(config.model, device=config.device)
        found = detect(image, ps, model=model, tta=config.tta, device=config.device,
                       amp=config.amp, stats=config.stats, resample=True,
                       return_proba=return_proba)
        columns, found_defects = found.columns, found.defects
        proba = _on_window_grid(found.proba, image.shape) if return_proba else None
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
        bad = _failed(atoms)
        atoms.loc[bad, "x_px"] = seeds["x_px"].to_numpy()[bad] + ox
        atoms.loc[bad, "y_px"] = seeds["y_px"].to_numpy()[bad] + oy
        atoms.loc[bad, ["x_err_pm", "y_err_pm", "amplitude", "sigma_x_px", "sigma_y_px",
                        "background"]] = np.nan
        ty, tx = config.translation_angstrom
        atoms["x_A"] = atoms["x_px"] * ps + tx
        atoms["y_A"] = atoms["y_px"] * ps + ty
        atoms["block"] = spec.key
        atoms = _typed(keep_owned(atoms, spec.core), ATOM_COLUMNS)

    defects = found_defects.copy()
    defects["x_px"] += ox
    defects["y_px"] += oy
    lattice_nn = float(config.extra.get("column_spacing_angstrom", 1.905)) / ps
    # Place on sites using all refined columns of the window (not just owned ones).
    all_atoms = atoms if columns.empty else _global_fits(fits, seeds, ox, oy)
    defects = _place_defects(defects, all_atoms, lattice_nn)
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
    from ..fit import FitState

    ok = fits["state"].isin([int(FitState.CONVERGED), int(FitState.MAX_ITERATIONS)]).to_numpy()
    finite = np.isfinite(fits["x_px"].to_numpy()) & np.isfinite(fits["y_px"].to_numpy())
    return ~(ok & finite)


def _global_fits(fits: pd.DataFrame, seeds: pd.DataFrame, ox: int, oy: int) -> pd.DataFrame:
    x = fits["x_px"].to_numpy().copy()
    y = fits["y_px"].to_numpy().copy()
    bad = _failed(fits)
    x[bad] = seeds["x_px"].to_numpy()[bad] + ox
    y[bad] = seeds["y_px"].to_numpy()[bad] + oy
    return pd.DataFrame({"x_px": x, "y_px": y, "site": seeds["site"].to_numpy()})
