#!/usr/bin/env bash
# Download the wheels the GPU machine lacks into .whl/ (git-ignored) and check the set.
#
#   bash benchmarks/gpu/prepare.sh
#
# Runs on a CPU machine with PyPI (the GPU machine has no network). Every wheel is pinned in
# benchmarks/gpu/wheels.txt and fetched without its dependencies (--no-deps): each dependency the
# machine lacks is pinned there too. Files in .whl/ that the list does not pin are removed, and
# files already there are kept, so a rerun only fetches what changed. Then wheelcheck.py checks
# that the set is complete (every requirement of every wheel, and stemscale's own, is carried or
# on the machine per present.txt), consistent (one version of each, each installable on CPython
# 3.12 manylinux x86-64) and under 60 MB. See benchmarks/gpu/README.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
PY=${PYTHON:-python3}
dest=.whl

"$PY" "$here/wheelcheck.py" list
mkdir -p "$dest"
"$PY" "$here/wheelcheck.py" prune --dir "$dest"
mapfile -t pins < <("$PY" "$here/wheelcheck.py" pins)

# pip matches manylinux_2_N exactly: name every N up to the glibc the check allows (2.34).
platforms=(--platform manylinux1_x86_64 --platform manylinux2014_x86_64)
for n in $(seq 17 34); do
    platforms+=(--platform "manylinux_2_${n}_x86_64")
done
platforms+=(--platform any)

echo "+ pip download ${#pins[@]} wheels into $dest/"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp "${platforms[@]}" -d "$dest" "${pins[@]}"

"$PY" "$here/wheelcheck.py" files --dir "$dest"
ls -l "$dest"
