"""A tiny stand-in for the simulator: a 2H lattice of Gaussian columns with two defect kinds.

Used to test the training loop and the inference machinery without the
full simulator.  Metal columns are bright, chalcogen columns dimmer, an
"SV" chalcogen column has half and a "2Te" column twice the chalcogen
intensity; labels are discs of radius 3 px.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stemscale.detect.data import labels_to_class_map


def toy_frame(seed: int, shape=(128, 128), a_px: float = 16.0, dose: float = 200.0,
              p_sv: float = 0.08, p_2te: float = 0.08, angle: float | None = None):
    rng = np.random.default_rng(seed)
    H, W = shape
    th = rng.uniform(0, np.pi / 3) if angle is None else angle
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    a1 = rot @ np.array([a_px, 0.0])
    a2 = rot @ np.array([a_px / 2, a_px * np.sqrt(3) / 2])
    off = rng.uniform(0, a_px, 2)
    n = int(2 * max(H, W) / a_px) + 4
    rows = []
    for i in range(-n, n):
        for j in range(-n, n):
            base = off + i * a1 + j * a2
            for site, frac in (("M", (1 / 3, 1 / 3)), ("X", (2 / 3, 2 / 3))):
                p = base + frac[0] * a1 + frac[1] * a2
                if -4 <= p[0] < W + 4 and -4 <= p[1] < H + 4:
                    defect = ""
                    amp = 1.0 if site == "M" else 0.6
                    if site == "X":
                        u = rng.random()
                        if u < p_sv:
                            defect, amp = "SV", 0.3
                        elif u < p_sv + p_2te:
                            defect, amp = "2Te", 1.25
                    rows.append((p[0], p[1], site, defect, amp))
    truth = pd.DataFrame(rows, columns=["x_px", "y_px", "site", "defect", "amp"])
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.zeros(shape)
    labels = {k: np.zeros(shape, bool) for k in ("M", "X", "SV", "2Te")}
    for x, y, site, defect, amp in truth.itertuples(index=False):
        x0, x1 = max(0, int(x) - 8), min(W, int(x) + 9)
        y0, y1 = max(0, int(y) - 8), min(H, int(y) + 9)
        if x0 >= x1 or y0 >= y1:
            continue
        r2 = (xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2
        img[y0:y1, x0:x1] += amp * np.exp(-r2 / (2 * 2.2**2))
        labels[site][y0:y1, x0:x1] |= r2 <= 9
        if defect:
            labels[defect][y0:y1, x0:x1] |= r2 <= 9
    counts = rng.poisson(dose * (img + 0.05)).astype(np.float32)
    inside = (truth.x_px >= 0) & (truth.x_px <= W - 1) & (truth.y_px >= 0) & (truth.y_px <= H - 1)
    truth = truth[inside].reset_index(drop=True)
    return counts, labels, truth


def toy_source(shape=(128, 128)):
    def source(seed: int):
        img, labels, _ = toy_frame(seed, shape)
        return img, labels_to_class_map(labels)

    return source
