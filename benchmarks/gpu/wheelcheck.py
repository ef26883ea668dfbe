"""Check the wheels carried to the GPU machine: the list, the downloaded files, the install there.

The GPU machine (see README.md beside this file) has no network: every Python package stemscale
needs that its image lacks travels as a wheel in ``.whl/`` at the repository root.  Two lists
describe the set:

* ``wheels.txt``: what is carried, one ``name==version`` a line;
* ``present.txt``: what the machine already has, one ``name`` (or ``name==version``) a line.

Sub-commands (all exit non-zero on a problem, printing every problem first)::

    wheelcheck.py list                  # the two lists parse, no duplicates, no overlap
    wheelcheck.py pins                  # print the pins (for pip download)
    wheelcheck.py prune --dir .whl      # delete files in the folder that the list does not pin
    wheelcheck.py files --dir .whl      # files match the pins; every requirement is met; size
    wheelcheck.py imports FILE...       # what these files import is carried or on the machine
    wheelcheck.py installed --site DIR  # on the GPU machine, after the install into DIR

Requirements are read from each wheel's METADATA (``Requires-Dist``), markers evaluated for
CPython 3.12 on Linux x86-64; stemscale's own ``[project] dependencies`` and its ``gpu`` and
``cuda13`` extras (pyproject.toml) are checked too.  A requirement is met by a carried wheel whose
version satisfies it, or by a package in ``present.txt`` (its version checked where it is known).
"""

from __future__ import annotations

import argparse
import email
import importlib.metadata as md
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WHEELS = HERE / "wheels.txt"
PRESENT = HERE / "present.txt"

#: What the wheels are checked against: the GPU machine's interpreter (KINDS.md: Python 3.12.3).
TARGET_PYTHON = "3.12.3"
TARGET_ENV = {
    "implementation_name": "cpython", "implementation_version": TARGET_PYTHON,
    "os_name": "posix", "platform_machine": "x86_64", "platform_python_implementation": "CPython",
    "platform_release": "", "platform_system": "Linux", "platform_version": "",
    "python_full_version": TARGET_PYTHON, "python_version": "3.12", "sys_platform": "linux",
}
#: Highest glibc a carried wheel may need (the machine's Ubuntu 24.04 has 2.39; kept lower).
MAX_GLIBC = (2, 34)
#: stemscale extras that run on the GPU machine (the machine's CuPy is cupy-cuda13x).
STEMSCALE_EXTRAS = ("gpu", "cuda13")
MAX_MB = 60.0          # the wheel set, in MB (10^6 bytes)
TREE_LIMIT_MIB = 64.0  # what one device call may carry: working tree + carried folders
UNKNOWN = "unknown version: "


def _lines(path: Path) -> list[tuple[int, str]]:
    out = []
    for i, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append((i, line))
    return out


def read_list(path: Path, *, pinned: bool, errors: list[str]) -> dict[str, str | None]:
    """``{canonical name: version or None}``; malformed lines and duplicates go to ``errors``."""
    found: dict[str, str | None] = {}
    for i, line in _lines(path):
        name, sep, version = line.partition("==")
        name, version = name.strip(), version.strip()
        where = f"{path.name}:{i}"
        if not name or any(c in name for c in "<>=!~;[ @") or (sep and not version):
            errors.append(f"{where}: cannot parse {line!r} (expected name==version)")
            continue
        if pinned and not sep:
            errors.append(f"{where}: {name} has no version (expected {name}==VERSION)")
            continue
        if sep:
            try:
                Version(version)
            except Exception:  # noqa: BLE001 (InvalidVersion)
                errors.append(f"{where}: {version!r} is not a version")
                continue
        key = canonicalize_name(name)
        if key in found:
            errors.append(f"{where}: {name} is listed twice")
            continue
        found[key] = version or None
    return found


def read_lists(errors: list[str]) -> tuple[dict[str, str], dict[str, str | None]]:
    wheels = read_list(WHEELS, pinned=True, errors=errors)
    present = read_list(PRESENT, pinned=False, errors=errors)
    for name in sorted(set(wheels) & set(present)):
        errors.append(f"{name} is both carried (wheels.txt) and on the machine (present.txt): "
                      "a carried copy would shadow the machine's")
    if not wheels:
        errors.append("wheels.txt lists no wheel")
    return {k: v for k, v in wheels.items() if v}, present


def _report(errors: list[str], ok: str) -> int:
    for e in errors:
        print(f"ERROR: {e}")
    if errors:
        print(f"{len(errors)} problem(s)")
        return 1
    print(ok)
    return 0


# ----------------------------------------------------------------------------------------- list
def cmd_list(_args) -> int:
    errors: list[str] = []
    wheels, present = read_lists(errors)
    return _report(errors, f"wheel list OK: {len(wheels)} wheels pinned, {len(present)} packages "
                           "known on the machine, no duplicates, no overlap")


def cmd_pins(_args) -> int:
    errors: list[str] = []
    wheels, _ = read_lists(errors)
    if errors:
        return _report(errors, "")
    for name, version in wheels.items():
        print(f"{name}=={version}")
    return 0


# ---------------------------------------------------------------------------------------- files
def _wheel_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """``{canonical name: (path, version)}`` of the wheels in ``folder``; raises on a bad name."""
    out: dict[str, tuple[Path, str]] = {}
    for path in sorted(folder.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(path.name)
        key = canonicalize_name(name)
        if key in out:
            raise ValueError(f"two wheels of {key} in {folder}: {out[key][0].name}, {path.name}")
        out[key] = (path, str(version))
    return out


def cmd_prune(args) -> int:
    errors: list[str] = []
    wheels, _ = read_lists(errors)
    if errors:
        return _report(errors, "")
    folder = Path(args.dir)
    for path in sorted(folder.glob("*.whl")):
        name, version, _b, _t = parse_wheel_filename(path.name)
        if wheels.get(canonicalize_name(name)) != str(version):
            print(f"removing {path.name} (not pinned in wheels.txt)")
            path.unlink()
    return 0


def _tag_ok(tag) -> bool:
    if tag.interpreter not in ("py3", "py312", "cp312") and not (
            tag.abi == "abi3" and tag.interpreter.startswith("cp3")
            and int(tag.interpreter[3:] or 0) <= 12):
        return False
    if tag.abi not in ("none", "abi3", "cp312"):
        return False
    plat = tag.platform
    if plat == "any" or plat in ("manylinux1_x86_64", "manylinux2010_x86_64",
                                 "manylinux2014_x86_64"):
        return True
    if plat.startswith("manylinux_") and plat.endswith("_x86_64"):
        major, minor = plat[len("manylinux_"):-len("_x86_64")].split("_")
        return (int(major), int(minor)) <= MAX_GLIBC
    return False


def _metadata(path: Path) -> email.message.Message:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist()
                 if n.endswith(".dist-info/METADATA") and n.count("/") == 1]
        if len(names) != 1:
            raise ValueError(f"{path.name}: expected one */METADATA, found {names}")
        return email.message_from_bytes(zf.read(names[0]))


def _applies(req: Requirement, extras: set[str], env: dict[str, str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in ({""} | extras))


def _stemscale_requirements() -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in STEMSCALE_EXTRAS:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def check_requirements(requires: dict[str, list[str]], versions: dict[str, str | None],
                       carried: set[str], env: dict[str, str], errors: list[str],
                       notes: list[str],
                       absent: str = "neither carried (wheels.txt) nor on the machine "
                                     "(present.txt)") -> set[str]:
    """Walk the requirements of ``requires`` (dist -> Requires-Dist lines), extras included.

    ``versions`` maps every available distribution to its version (None: present, version
    unknown).  Returns the carried distributions something needs.
    """
    needed: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(d, frozenset()) for d in requires]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        dist, extras = todo.pop()
        if (dist, extras) in seen:
            continue
        seen.add((dist, extras))
        for line in requires.get(dist, []):
            req = Requirement(line)
            if not _applies(req, set(extras), env):
                continue
            name = canonicalize_name(req.name)
            if name == "stemscale":  # the package's own extras referring to each other
                todo.append(("stemscale", frozenset(req.extras)))
                continue
            if name not in versions:
                errors.append(f"{dist}{sorted(extras) if extras else ''} needs {req}: {absent}")
                continue
            if name in carried:
                needed.add(name)
            have = versions[name]
            if have is None:
                if req.specifier:
                    notes.append(f"{UNKNOWN}{dist} needs {req}")
            elif not req.specifier.contains(have, prereleases=True):
                errors.append(f"{dist} needs {req}, but the version there is {name} {have}")
            if req.extras:
                if name in requires:
                    todo.append((name, frozenset(req.extras)))
                else:
                    notes.append(f"{dist} needs {req}: extras of a package on the machine are "
                                 "not checked here")
    return needed


def _print_notes(notes: list[str], verbose: bool) -> None:
    unknown = sorted({n[len(UNKNOWN):] for n in notes if n.startswith(UNKNOWN)})
    for n in sorted({n for n in notes if not n.startswith(UNKNOWN)}):
        print(f"note: {n}")
    if unknown:
        print(f"note: {len(unknown)} version requirements on packages of the machine whose version "
              "is not known here (present.txt) are checked there ('wheelcheck.py installed')"
              + ("" if verbose else "; -v lists them"))
        if verbose:
            for n in unknown:
                print(f"  {n}")


def _tree_bytes() -> int | None:
    """Bytes of what a device call sends besides carried folders (tracked + untracked files)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for rel in out.split(b"\0"):
        p = ROOT / rel.decode()
        if rel and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def cmd_files(args) -> int:
    errors: list[str] = []
    notes: list[str] = []
    wheels, present = read_lists(errors)
    folder = Path(args.dir)
    if not folder.is_dir():
        errors.append(f"{folder} does not exist: run benchmarks/gpu/prepare.sh")
        return _report(errors, "")
    try:
        files = _wheel_files(folder)
    except ValueError as exc:
        return _report(errors + [str(exc)], "")
    requires: dict[str, list[str]] = {}
    total = 0
    for name, version in wheels.items():
        if name not in files:
            errors.append(f"{name}=={version}: no wheel in {folder}")
            continue
        path, have = files[name]
        if have != version:
            errors.append(f"{path.name}: version {have}, wheels.txt pins {version}")
        tags = parse_wheel_filename(path.name)[3]
        if not any(_tag_ok(t) for t in tags):
            errors.append(f"{path.name}: not installable on CPython 3.12, manylinux x86-64 "
                          f"(glibc <= {MAX_GLIBC[0]}.{MAX_GLIBC[1]})")
        meta = _metadata(path)
        rp = meta.get("Requires-Python")
        if rp and not Requirement(f"x{rp}").specifier.contains(TARGET_PYTHON, prereleases=True):
            errors.append(f"{path.name}: Requires-Python {rp} excludes {TARGET_PYTHON}")
        requires[name] = list(meta.get_all("Requires-Dist") or [])
        total += path.stat().st_size
    for name in sorted(set(files) - set(wheels)):
        errors.append(f"{files[name][0].name} is in {folder} but not pinned in wheels.txt "
                      "(run prepare.sh, which prunes it)")
    versions: dict[str, str | None] = {**present, **wheels}
    requires["stemscale"] = _stemscale_requirements()
    needed = check_requirements(requires, versions, set(wheels), TARGET_ENV, errors, notes)
    for name in sorted(set(wheels) - needed):
        notes.append(f"{name} is carried but nothing listed requires it")
    mb = total / 1e6
    if mb >= MAX_MB:
        errors.append(f"the wheels take {mb:.1f} MB, over the {MAX_MB:.0f} MB budget")
    tree = _tree_bytes()
    if tree is not None:
        mib = (tree + total) / 2**20
        print(f"a device call carries about {mib:.1f} MiB (working tree {tree / 2**20:.1f} MiB "
              f"+ wheels {total / 2**20:.1f} MiB; limit {TREE_LIMIT_MIB:.0f} MiB)")
        if mib >= TREE_LIMIT_MIB - 2:
            errors.append(f"working tree + wheels = {mib:.1f} MiB, too close to the "
                          f"{TREE_LIMIT_MIB:.0f} MiB a device call may carry")
    _print_notes(notes, verbose=args.verbose)
    return _report(errors, f"wheel set OK: {len(wheels)} wheels, {mb:.1f} MB (< {MAX_MB:.0f} MB), "
                           "one version of each, every requirement met")


# ------------------------------------------------------------------------------------ installed
def cmd_installed(args) -> int:
    """On the GPU machine: every pin installed from ``--site``; requirements met in reality."""
    errors: list[str] = []
    notes: list[str] = []
    wheels, present = read_lists(errors)
    site = Path(args.site).resolve()
    versions: dict[str, str | None] = {}
    for dist in md.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        versions.setdefault(name, dist.version)  # first on sys.path wins, as for imports
    requires: dict[str, list[str]] = {}
    for name, version in wheels.items():
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            errors.append(f"{name}=={version} is not installed")
            continue
        where = Path(str(dist.locate_file(""))).resolve()
        if dist.version != version or where != site:
            errors.append(f"{name}: found {dist.version} in {where}, expected {version} in {site}")
        requires[name] = list(dist.requires or [])
    env = {**default_environment(), "extra": ""}
    unmet: list[str] = []
    check_requirements(requires, versions, set(wheels), env, unmet, notes, absent="not installed")
    for u in unmet:
        print(f"WARNING (unmet requirement): {u}")
    _print_notes(notes, verbose=True)
    print("present on the machine (present.txt):")
    missing = []
    for name, listed in sorted(present.items()):
        have = versions.get(name)
        if have is None:
            missing.append(name)
        else:
            flag = "" if listed in (None, have) else f"   (present.txt says {listed})"
            print(f"  {name}=={have}{flag}")
    if missing:
        print(f"listed in present.txt but not installed here: {', '.join(missing)}")
    return _report(errors, f"{len(wheels)} carried wheels installed in {site}; "
                           f"{len(unmet)} unmet requirement(s)")


# -------------------------------------------------------------------------------------- imports
#: Import names that are not installed here (CPU machine) -> the distribution providing them there.
IMPORT_FALLBACK = {"cupy": "cupy-cuda13x", "cupyx": "cupy-cuda13x",
                   "cupy_backends": "cupy-cuda13x", "dask_cuda": "dask-cuda", "pynvml": "nvidia-ml-py",
                   "rmm": None}
LOCAL_PACKAGES = {"stemscale", "tests", "benchmarks", "_common", "conftest", "toy"}


def _imported_names(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(), str(path))
    # imports inside `try:` with an ImportError (or broader) handler are optional
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                h.type is None or any(n in ast.dump(h.type) for n in (
                    "ImportError", "ModuleNotFoundError", "'Exception'"))
                for h in node.handlers):
            for stmt in node.body:
                guarded.update(id(n) for n in ast.walk(stmt))
    names: set[str] = set()
    for node in ast.walk(tree):
        mark = "?" if id(node) in guarded else ""
        if isinstance(node, ast.Import):
            names.update(mark + a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(mark + node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(f"?{str(node.args[0].value).split('.')[0]}")  # optional: skips if absent
    return names


def cmd_imports(args) -> int:
    """Every module the files import is on the machine, carried, or imported optionally."""
    errors: list[str] = []
    wheels, present = read_lists(errors)
    there = set(wheels) | set(present)
    by_module = md.packages_distributions()
    for f in args.files:
        path = Path(f)
        for name in sorted(_imported_names(path)):
            optional = name.startswith("?")
            name = name.lstrip("?")
            if name in sys.stdlib_module_names or name in LOCAL_PACKAGES or name == "__future__":
                continue
            dists = by_module.get(name) or ([IMPORT_FALLBACK[name]] if IMPORT_FALLBACK.get(name)
                                            else [])
            if not dists:
                if not optional:
                    errors.append(f"{f}: imports {name}, which no known distribution provides")
                continue
            if not any(canonicalize_name(d) in there for d in dists) and not optional:
                errors.append(f"{f}: imports {name} ({', '.join(dists)}), neither carried nor on "
                              "the machine")
    return _report(errors, f"imports of {len(args.files)} files: all on the machine or carried")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list").set_defaults(fn=cmd_list)
    sub.add_parser("pins").set_defaults(fn=cmd_pins)
    for name, fn in (("prune", cmd_prune), ("files", cmd_files)):
        p = sub.add_parser(name)
        p.add_argument("--dir", default=str(ROOT / ".whl"))
        p.add_argument("-v", "--verbose", action="store_true")
        p.set_defaults(fn=fn)
    p = sub.add_parser("imports")
    p.add_argument("files", nargs="+")
    p.set_defaults(fn=cmd_imports)
    p = sub.add_parser("installed")
    p.add_argument("--site", default="/tmp/site")
    p.set_defaults(fn=cmd_installed)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
