#!/usr/bin/env bash
# The GPU check (issue #14): one run on the GPU machine, under 8 minutes, every step time-limited.
#
#   bash benchmarks/gpu/check.sh            # on the GPU machine, with .whl/ from prepare.sh
#   bash benchmarks/gpu/check.sh --dry-run  # anywhere (CI): validate the plan, lists and tests
#
# Steps: install the carried wheels (.whl/) into $GPU_CHECK_SITE (/tmp/site) and put it and the
# repository on PYTHONPATH; print the card, driver and versions; run `pytest -m gpu`; then the three
# GPU benchmarks (fits/s, FCN Mpx/s with 8x TTA, block pipeline Mpx/s). Each step has its own time
# limit and runs even when an earlier one failed; the limits add up to under BUDGET seconds.
# Everything lands in $OUT (the device tool's output folder) or ./gpu-check-out: summary.txt (each
# step passed/failed/cut/skipped with its seconds, the test counts, the targets), check.log (all
# output), env.txt, pytest-gpu.xml and the benchmarks' JSON files. See benchmarks/gpu/README.md.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-480}  # seconds for all steps together (one 540 s device call)
SITE=${GPU_CHECK_SITE:-/tmp/site}
OUT_DIR=${OUT:-$root/gpu-check-out}
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check-work}
# Every test marked `gpu` lives in these files (the dry run fails when one is elsewhere).
PYTEST_FILES=(tests/detect/test_gpu.py tests/fit/test_backends.py tests/parallel/test_dask_cuda.py)

STEPS=(install env pytest bench_fit bench_detect bench_scaling)
declare -A LIMIT=([install]=45 [env]=30 [pytest]=180 [bench_fit]=60 [bench_detect]=75
                  [bench_scaling]=75)
declare -A CMD
CMD[install]="$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
--target $SITE .whl/*.whl && $PY benchmarks/gpu/wheelcheck.py installed --site $SITE \
| tee -a $OUT_DIR/env.txt"
CMD[env]="$PY benchmarks/gpu/envinfo.py | tee -a $OUT_DIR/env.txt"
CMD[pytest]="$PY -m pytest -m gpu -q -rA -p no:cacheprovider -o timeout=150 \
--junitxml=$OUT_DIR/pytest-gpu.xml ${PYTEST_FILES[*]}"
CMD[bench_fit]="$PY benchmarks/bench_fit.py --gpu-only --gpu-n 10000000 --gpu-sizes 7 11 --runs 3 \
--output $OUT_DIR/bench_fit_gpu.json"
CMD[bench_detect]="$PY benchmarks/bench_detect.py --device cuda --only throughput --size 4096 \
--repeats 3 --out $OUT_DIR/bench_detect_gpu.json"
CMD[bench_scaling]="$PY benchmarks/bench_scaling.py --device cuda --workers 1 --block 2048 \
--blocks-per-worker 2 --memory-size 0 --tmp $WORK/scaling --out bench_scaling_gpu \
&& cp benchmarks/results/bench_scaling_gpu.json $OUT_DIR/"
# The script each benchmark step runs (its flags are checked against --help in the dry run).
declare -A SCRIPT=([bench_fit]=benchmarks/bench_fit.py [bench_detect]=benchmarks/bench_detect.py
                   [bench_scaling]=benchmarks/bench_scaling.py)

plan() {
    local total=0 s
    echo "plan (each step's time limit; budget $BUDGET s):"
    for s in "${STEPS[@]}"; do
        printf '  %-14s %4d s  %s\n' "$s" "${LIMIT[$s]}" "${CMD[$s]}"
        total=$((total + LIMIT[$s]))
    done
    printf '  %-14s %4d s\n' "total" "$total"
    PLAN_TOTAL=$total
}

# ------------------------------------------------------------------------------------- dry run
dry_run() {
    local failed=() tmp s flag out rc
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    check() {  # check NAME COMMAND...: run it, keep its output, report
        local name=$1 log
        shift
        log="$tmp/${name//[^A-Za-z0-9]/_}.log"
        if "$@" >"$log" 2>&1; then
            echo "ok    $name"
        else
            echo "FAIL  $name"
            sed 's/^/      /' "$log" | tail -40
            failed+=("$name")
        fi
    }
    echo "GPU check, dry run (no GPU needed; validates the plan, not the machine)"
    check "scripts parse (bash -n)" bash -c "bash -n '$here/check.sh' && bash -n '$here/prepare.sh'"
    check "wheel list (wheels.txt vs present.txt)" "$PY" "$here/wheelcheck.py" list
    if [ -d .whl ]; then
        check "downloaded wheels (.whl/)" "$PY" "$here/wheelcheck.py" files --dir .whl
    fi

    # pytest -m gpu: collects without errors, and every selected test is in PYTEST_FILES
    "$PY" -m pytest -m gpu --collect-only -q -p no:cacheprovider tests >"$tmp/all.txt" 2>&1
    rc=$?
    "$PY" -m pytest -m gpu --collect-only -q -p no:cacheprovider "${PYTEST_FILES[@]}" \
        >"$tmp/plan.txt" 2>&1
    local rc_plan=$?
    grep '::' "$tmp/all.txt" | sort >"$tmp/all.ids"
    grep '::' "$tmp/plan.txt" | sort >"$tmp/plan.ids"
    local n_all n_plan
    n_all=$(wc -l <"$tmp/all.ids")
    n_plan=$(wc -l <"$tmp/plan.ids")
    local outside
    outside=$(comm -23 "$tmp/all.ids" "$tmp/plan.ids")
    local empty=()
    for f in "${PYTEST_FILES[@]}"; do
        grep -q "^$f::" "$tmp/plan.ids" || empty+=("$f")
    done
    if [ "$rc" -eq 0 ] && [ "$rc_plan" -eq 0 ] && [ "$n_all" -gt 0 ] && [ -z "$outside" ] \
        && [ "${#empty[@]}" -eq 0 ]; then
        echo "ok    gpu tests collect: $n_all selected by -m gpu, all in the planned files"
    else
        echo "FAIL  gpu tests collect (exit $rc / $rc_plan; $n_all selected in tests/, $n_plan in" \
             "the planned files)"
        [ -n "$outside" ] && echo "      outside PYTEST_FILES (add their files):" \
            && sed 's/^/        /' <<<"$outside"
        [ "${#empty[@]}" -ne 0 ] && echo "      planned files with no gpu test: ${empty[*]}"
        grep -iE 'error|warning' "$tmp/all.txt" "$tmp/plan.txt" | head -20 | sed 's/^/      /'
        failed+=("gpu tests collect")
    fi
    # what the planned tests and benchmarks import is on the machine or carried
    check "imports of the planned files available there" "$PY" "$here/wheelcheck.py" imports \
        "${PYTEST_FILES[@]}" tests/conftest.py tests/fit/conftest.py tests/detect/conftest.py \
        "${SCRIPT[@]}" benchmarks/_common.py "$here/envinfo.py" "$here/report.py"

    # each benchmark step: its script exists and takes every flag the plan gives it
    for s in bench_fit bench_detect bench_scaling; do
        out=$("$PY" "${SCRIPT[$s]}" --help 2>&1)
        rc=$?
        local missing=()
        for flag in $(grep -oE -- '(^| )--[a-z0-9-]+' <<<"${CMD[$s]%%&&*}"); do
            grep -qE -- "${flag}([ =,]|$)" <<<"$out" || missing+=("$flag")
        done
        if [ "$rc" -eq 0 ] && [ "${#missing[@]}" -eq 0 ]; then
            echo "ok    $s: ${SCRIPT[$s]} takes the planned flags"
        else
            echo "FAIL  $s: ${SCRIPT[$s]} --help exit $rc; flags it does not take: ${missing[*]:-}"
            tail -5 <<<"$out" | sed 's/^/      /'
            failed+=("$s")
        fi
    done

    # the summary writer runs on a made-up step table
    printf 'install\tpassed\t1.0\t45\t0\tx\npytest\tcut\t180.0\t180\t124\tx\n' >"$tmp/steps.tsv"
    check "summary writer (report.py)" "$PY" "$here/report.py" --steps "$tmp/steps.tsv" \
        --out "$tmp"

    plan
    if [ "$PLAN_TOTAL" -ge "$BUDGET" ]; then
        echo "FAIL  the step limits add up to $PLAN_TOTAL s, not under $BUDGET s"
        failed+=("budget")
    fi
    if [ "${#failed[@]}" -ne 0 ]; then
        echo "gpu check dry run: ${#failed[@]} check(s) FAILED: ${failed[*]}"
        return 1
    fi
    echo "gpu check dry run: OK ($n_all gpu tests planned, step limits $PLAN_TOTAL s of $BUDGET s)"
}

# ----------------------------------------------------------------------------------------- run
run_step() {  # run_step NAME: run one step under its limit, cut to what the budget has left
    local s=$1 lim=${LIMIT[$1]} start rc status elapsed left
    elapsed=$(( $(date +%s) - T0 ))
    left=$((BUDGET - elapsed))
    [ "$lim" -gt "$left" ] && lim=$left
    printf '\n======== %s (limit %d s, %d s into the check) ========\n+ %s\n' "$s" "$lim" \
        "$elapsed" "${CMD[$s]}"
    if [ "$lim" -lt 10 ]; then
        echo "skipped: only $left s of the $BUDGET s budget left"
        printf '%s\tskipped\t0\t%s\t-\t%s\n' "$s" "$lim" "${CMD[$s]}" >>"$WORK/steps.tsv"
        return
    fi
    start=$(date +%s.%N)
    timeout -k 10 "$lim" bash -o pipefail -c "${CMD[$s]}"
    rc=$?
    local secs
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    case $rc in
        0) status=passed ;;
        124|137) status=cut ;;
        *) status=failed ;;
    esac
    echo "-------- $s: $status (exit $rc) after $secs s"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$status" "$secs" "$lim" "$rc" "${CMD[$s]}" \
        >>"$WORK/steps.tsv"
}

real_run() {
    T0=$(date +%s)
    export PYTHONPATH="$SITE:$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    export PIP_DISABLE_PIP_VERSION_CHECK=1 MPLBACKEND=Agg
    echo "GPU check: $(date -u +%FT%TZ) on $(uname -n), output in $OUT_DIR"
    plan
    [ -d .whl ] || echo "warning: no .whl/ here: carry it (run tool: carry [\".whl\"])"
    for s in "${STEPS[@]}"; do
        run_step "$s"
    done
    echo
    "$PY" "$here/report.py" --steps "$WORK/steps.tsv" --out "$OUT_DIR" \
        --total "$(( $(date +%s) - T0 ))" || {
        echo "report.py failed; the raw step table:"
        tee "$OUT_DIR/summary.txt" <"$WORK/steps.tsv"
    }
    ! grep -qv $'\tpassed\t' "$WORK/steps.tsv"
}

case "${1:-}" in
    --dry-run)
        dry_run
        exit $?
        ;;
    "") ;;
    -h|--help)
        sed -n '2,13p' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--dry-run]" >&2
        exit 2
        ;;
esac

mkdir -p "$OUT_DIR"
rm -rf "$WORK"
mkdir -p "$WORK"
: >"$WORK/steps.tsv"
rm -f "$OUT_DIR/env.txt"
real_run 2>&1 | tee "$OUT_DIR/check.log"
exit "${PIPESTATUS[0]}"
