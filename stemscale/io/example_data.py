"""Locating real example data that ships inside other packages.

The only real atomic-resolution 2D-material frame installable offline is the
Se-implanted monolayer MoS2 HAADF frame inside the PyPI package
``temul-toolkit`` 0.1.9 (1024 x 1024 px, 12.7 pm/px, 60 kV).  That package is
GPL-3, so stemscale never copies the file: it installs the package on request
(``pip install --no-deps``: only the data is needed, not its dependencies) and
returns the path inside the installed package.
"""

from __future__ import annotations

import importlib
import importlib.resources
import subprocess
import sys
from pathlib import Path

from ..errors import MosaicNotFoundError

__all__ = ["TEMUL_REQUIREMENT", "TEMUL_MOS2_RESOURCE", "temul_mos2_frame_path"]

TEMUL_REQUIREMENT = "temul-toolkit==0.1.9"
TEMUL_MOS2_RESOURCE = "example_data/experimental/example_Se_implanted_MoS2.dm3"


def _locate() -> Path | None:
    importlib.invalidate_caches()
    try:
        root = importlib.resources.files("temul")
    except ModuleNotFoundError:
        return None
    path = root / TEMUL_MOS2_RESOURCE
    return Path(str(path)) if path.is_file() else None


def temul_mos2_frame_path(install: bool = True, *, timeout: float = 600.0) -> Path:
    """Path of the Se-implanted MoS2 DM3 frame shipped in ``temul-toolkit`` 0.1.9.

    Parameters
    ----------
    install
        When the package is missing, install it with
        ``python -m pip install --no-deps temul-toolkit==0.1.9`` (needs access
        to the package index).  With ``False``, raise instead.
    timeout
        Seconds to allow pip.

    Returns
    -------
    pathlib.Path
        The ``.dm3`` file inside the installed package (do not copy it into
        a repository: it is GPL-3 licensed).

    Raises
    ------
    MosaicNotFoundError
        The package is missing and ``install`` is False, or installing it failed.
    """
    path = _locate()
    if path is not None:
        return path
    if not install:
        raise MosaicNotFoundError(
            f"the MoS2 example frame needs the package {TEMUL_REQUIREMENT}, which is not "
            f"installed; run: {sys.executable} -m pip install --no-deps {TEMUL_REQUIREMENT}"
        )
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", TEMUL_REQUIREMENT]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MosaicNotFoundError(f"could not install {TEMUL_REQUIREMENT}: {exc}") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise MosaicNotFoundError(
            f"could not install {TEMUL_REQUIREMENT} (pip exit {result.returncode}): "
            + " | ".join(tail)
        )
    path = _locate()
    if path is None:
        raise MosaicNotFoundError(
            f"{TEMUL_REQUIREMENT} is installed but '{TEMUL_MOS2_RESOURCE}' is not in it"
        )
    return path
