"""Versioned run folders: ``run.json`` records what made every output.

A run folder holds the outputs of one pipeline and a ``run.json`` with the
resolved configuration (every default filled in), its SHA-256, the package
version, the git commit of the code when it runs from a git checkout, the
cluster, start and end times and the outcome of every stage.  ``status`` is
``running`` until the last stage finished, so an interrupted run never looks
complete.

Running the same configuration into the same folder resumes it (finished
mosaic blocks are skipped); a *different* configuration is refused unless
``overwrite`` is set, so outputs are never mixed.  The cluster and the output
folder are not part of the configuration's identity: a run may resume on
another cluster.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import InputError

__all__ = ["RUN_FILE", "RunFolder", "config_digest", "git_commit", "read_run"]

RUN_FILE = "run.json"
#: Sections that say where and how a run executes, not what it computes.
_NOT_IDENTITY = ("cluster", "output", "report")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of the configuration's canonical JSON, without cluster/output/report."""
    ident = {k: v for k, v in config.items() if k not in _NOT_IDENTITY}
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Commit (and whether the work tree has changes) of the git checkout holding ``path``.

    ``None`` when stemscale is installed from a wheel or git is unavailable.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(),
            "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def read_run(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``run.json`` of a run folder."""
    path = Path(folder) / RUN_FILE
    if not path.exists():
        raise InputError(f"'{folder}' is not a stemscale run folder (no {RUN_FILE})")
    return json.loads(path.read_text())


class RunFolder:
    """The output folder of one pipeline run and its ``run.json``.

    Parameters
    ----------
    path
        The folder (created).
    config
        Resolved configuration (``PipelineConfig.to_dict()``).
    source
        The pipeline file.
    overrides
        ``--set`` assignments.
    overwrite
        Replace a folder holding a run of a different configuration.
    """

    def __init__(self, path: str | os.PathLike[str], config: dict[str, Any], *,
                 source: str | os.PathLike[str] | None = None, overrides: list[str] | None = None,
                 overwrite: bool = False) -> None:
        self.path = Path(path).resolve()
        self.config = config
        self.digest = config_digest(config)
        self.record: dict[str, Any] = {}
        self._prepare(source, overrides or [], overwrite)

    @property
    def file(self) -> Path:
        return self.path / RUN_FILE

    def _prepare(self, source, overrides, overwrite) -> None:
        previous: dict[str, Any] | None = None
        if self.file.exists():
            previous = json.loads(self.file.read_text())
            if previous.get("config_sha256") != self.digest:
                if not overwrite:
                    raise InputError(
                        f"'{self.path}' holds a run of a different configuration "
                        f"(config_sha256 {str(previous.get('config_sha256'))[:12]}... vs "
                        f"{self.digest[:12]}...); choose another --out or pass --overwrite"
                    )
                self._clear()
                previous = None
        elif self.path.exists() and any(self.path.iterdir()):
            if not overwrite:
                raise InputError(
                    f"'{self.path}' exists and is not a stemscale run folder (no {RUN_FILE}); "
                    "choose another --out or pass --overwrite"
                )
            self._clear()
        self.path.mkdir(parents=True, exist_ok=True)
        attempts = list(previous.get("attempts", [])) if previous else []
        self.record = {
            "software": "stemscale",
            "version": __version__,
            "git": git_commit(),
            "python": platform.python_version(),
            "host": platform.node(),
            "pipeline": str(source) if source is not None else None,
            "overrides": list(overrides),
            "kind": self.config.get("kind"),
            "config_sha256": self.digest,
            "config": self.config,
            "status": "running",
            "started": _now(),
            "finished": None,
            "cluster": None,
            "stages": {},
            "attempts": attempts,
        }
        self._write()

    def _clear(self) -> None:
        # Only remove what a run writes; refuse to empty a folder that looks like something else.
        if self.path == Path.home() or self.path == Path(self.path.anchor):
            raise InputError(f"refusing to overwrite '{self.path}'")
        shutil.rmtree(self.path)

    def _write(self) -> None:
        tmp = self.file.with_name(f".{RUN_FILE}.tmp")
        tmp.write_text(json.dumps(self.record, indent=2, default=str) + "\n")
        os.replace(tmp, self.file)

    @property
    def resumed(self) -> bool:
        """Whether an earlier attempt of this configuration ran in this folder."""
        return bool(self.record.get("attempts"))

    def set_cluster(self, info: dict[str, Any]) -> None:
        self.record["cluster"] = info
        self._write()

    def stage(self, name: str, status: str, **details: Any) -> None:
        """Record a stage's outcome: ``done``, ``skipped`` (with a ``note``) or ``failed``."""
        self.record["stages"][name] = {"status": status, **details}
        self._write()

    def finish(self, status: str = "complete", error: str | None = None,
               summary: dict[str, Any] | None = None) -> None:
        self.record["status"] = status
        self.record["finished"] = _now()
        if error:
            self.record["error"] = error
        if summary is not None:
            self.record["summary"] = summary
        self.record["attempts"] = [*self.record["attempts"], {
            "started": self.record["started"], "finished": self.record["finished"],
            "status": status, "cluster": (self.record.get("cluster") or {}).get("kind"),
        }]
        self._write()
