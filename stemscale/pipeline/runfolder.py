"""Versioned run folders: ``run.json`` records what made every output.

A run folder holds the outputs of one pipeline and a ``run.json`` with the
resolved configuration (every default filled in), its SHA-256, the package
version, the git commit of the code when it runs from a git checkout, the
cluster, start and end times and the outcome of every stage.  ``status`` is
``running`` until the last stage finished, so an interrupted run never looks
complete.

Running the same configuration into the same folder resumes it (finished
mosaic blocks are skipped).  Stage results are kept by their own inputs: the
runner passes its stage plan (which sections each stage reads, which earlier
stages it uses) and ``run.json`` records a digest of every stage's inputs, so
a run of another configuration resumes with only the stages whose inputs
changed run again (changing an averaging option reruns averaging and strain,
not ``find``).  When the inputs of an expensive stage (the mosaic, the block
tables) changed the folder is refused unless ``overwrite`` is set, so outputs
are never mixed.  The cluster and the output folder are not part of the
configuration's identity: a run may resume on another cluster.

Credentials never reach ``run.json``: storage options, ``--set`` assignments,
URLs and error messages are recorded through :func:`stemscale.redact.redact`
(values of keys such as ``key``, ``secret`` or ``token`` become ``***``), and the
configuration's digest ignores them, so rotated credentials still resume a run.
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
from ..redact import redact

__all__ = ["RUN_FILE", "RunFolder", "StagePlan", "config_digest", "git_commit", "read_run",
           "stage_digests"]

RUN_FILE = "run.json"
#: Sections that say where and how a run executes, not what it computes.
_NOT_IDENTITY = ("cluster", "output", "report")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of the configuration's canonical JSON, without cluster/output/report
    and without credentials (see :func:`stemscale.redact.redact`)."""
    ident = redact({k: v for k, v in config.items() if k not in _NOT_IDENTITY})
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


#: Stage name -> (configuration sections it reads, earlier stages whose results it uses), in order.
StagePlan = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]


def stage_digests(config: dict[str, Any], plan: StagePlan) -> dict[str, str]:
    """SHA-256 of every stage's own inputs: the sections it reads and the digests of the
    earlier stages it uses (so a change reaches every stage downstream of it, no other).

    Credentials are left out, as in :func:`config_digest`.
    """
    out: dict[str, str] = {}
    for name, (sections, upstream) in plan.items():
        ident = redact({"stage": name, "sections": {k: config.get(k) for k in sections},
                        "upstream": {u: out.get(u) for u in upstream}})
        text = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
        out[name] = hashlib.sha256(text.encode()).hexdigest()
    return out


def _changed_settings(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs (nested keys joined with dots)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _changed_settings(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    if json.dumps(old, default=str) == json.dumps(new, default=str):
        return []
    return [f"{prefix}: {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}"]


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
        Replace a folder holding a run of a different configuration (with ``stages``: only
        the results of the ``keep`` stages whose inputs changed; the folder is emptied
        when the data source itself changed).
    stages
        The pipeline's :data:`StagePlan`.  Each stage's inputs are then recorded by digest
        (``stage_inputs`` in ``run.json``) and a folder holding a run of another
        configuration is resumed: stages whose inputs changed run again (listed in
        :attr:`rerun`), the others keep their results.
    keep
        Stages whose results are expensive (the mosaic, the block tables): when their
        inputs changed the folder is refused unless ``overwrite``, and then listed in
        :attr:`replace` (their results are recomputed in place).
    """

    def __init__(self, path: str | os.PathLike[str], config: dict[str, Any], *,
                 source: str | os.PathLike[str] | None = None, overrides: list[str] | None = None,
                 overwrite: bool = False, stages: StagePlan | None = None,
                 keep: tuple[str, ...] = ()) -> None:
        self.path = Path(path).resolve()
        self.config = config
        self.digest = config_digest(config)
        self.plan = dict(stages or {})
        self.stage_inputs = stage_digests(config, self.plan) if self.plan else {}
        self.keep = tuple(keep)
        #: Stages whose inputs changed since the last attempt in this folder.
        self.rerun: set[str] = set()
        #: ``keep`` stages whose results must be recomputed in place (``overwrite``).
        self.replace: set[str] = set()
        #: The settings that changed since the last attempt (``key: old -> new``).
        self.changes: list[str] = []
        self.record: dict[str, Any] = {}
        self._prepare(source, overrides or [], overwrite)

    @property
    def file(self) -> Path:
        return self.path / RUN_FILE

    def _prepare(self, source, overrides, overwrite) -> None:
        previous: dict[str, Any] | None = None
        if self.file.exists():
            previous = json.loads(self.file.read_text())
            by_stage = (self._by_stage(previous, overwrite)
                        if previous.get("config_sha256") != self.digest else None)
            if by_stage == "cleared":
                previous = None
            elif by_stage is None and previous.get("config_sha256") != self.digest:
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
            "overrides": redact(list(overrides)),
            "kind": self.config.get("kind"),
            "config_sha256": self.digest,
            "config": redact(self.config),
            "status": "running",
            "started": _now(),
            "finished": None,
            "cluster": None,
            "stages": {},
            "attempts": attempts,
        }
        if self.stage_inputs:
            self.record["stage_inputs"] = self.stage_inputs
        self._write()

    def _by_stage(self, previous: dict[str, Any], overwrite: bool) -> str | None:
        """Resume a run of another configuration stage by stage (``"resumed"``), or empty the
        folder when the data source changed and ``overwrite`` is set (``"cleared"``).

        ``None`` when the folder or this run has no stage record to do it by.  Raises when a
        ``keep`` stage's inputs changed and ``overwrite`` is not set.
        """
        old = previous.get("stage_inputs")
        if not self.stage_inputs or not isinstance(old, dict):
            return None
        changed = [s for s, d in self.stage_inputs.items() if old.get(s) != d]
        kept = [s for s in changed if s in self.keep and s in old]
        old_config = previous.get("config") or {}
        new_config = redact(self.config)
        sections = [k for s in changed for k in self.plan[s][0]]
        self.changes = [c for k in dict.fromkeys(sections)
                        for c in _changed_settings(old_config.get(k), new_config.get(k), k)]
        if kept and not overwrite:
            what = "; ".join(self.changes[:3]) + (" ..." if len(self.changes) > 3 else "")
            raise InputError(
                f"'{self.path}' holds a run of a different configuration for the {kept[0]} stage"
                + (f" ({what})" if what else "") + f", whose results it would replace; choose "
                f"another --out, or pass --overwrite to recompute {kept[0]} and what follows")
        if any(not self.plan[s][1] for s in kept):  # the data itself changed: start afresh
            self._clear()
            self.changes = []
            return "cleared"
        self.rerun = set(changed)
        self.replace = set(kept)
        return "resumed"

    def _clear(self) -> None:
        # Only remove what a run writes; refuse to empty a folder that looks like something else.
        if self.path == Path.home() or self.path == Path(self.path.anchor):
            raise InputError(f"refusing to overwrite '{self.path}'")
        shutil.rmtree(self.path)

    def _write(self) -> None:
        tmp = self.file.with_name(f".{RUN_FILE}.tmp")
        tmp.write_text(json.dumps(redact(self.record), indent=2, default=str) + "\n")
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
