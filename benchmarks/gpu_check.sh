#!/usr/bin/env bash
# The one device call: build, smoke test, GPU tests, sanitizers, GPU benchmarks,
# in stages with timeouts; a short table last.
#
#   bash benchmarks/gpu_check.sh             on the GPU machine (OUT receives the results)
#   bash benchmarks/gpu_check.sh --dry-run   CI, no GPU: every stage runs its real command,
#                                            from the installed package, up to the first
#                                            CUDA call (see each stage)
#   bash benchmarks/gpu_check.sh --emulate   no GPU: every stage against the emulated CUDA
#                                            build (SVP_FAST_CUDA=EMU, csrc/cuda_emu): the
#                                            kernels run on the CPU. Builds it (and an
#                                            AddressSanitizer variant for the sanitizer stage)
#                                            into folders of its own, first on PYTHONPATH.
#                                            SVP_EMU_TEST_SHARE=0.3 runs a seeded share of the
#                                            GPU tests (SVP_EMU_TEST_SEED), as CI does.
#
# Each stage writes its log under $OUT as soon as it ends; $OUT/summary.md (the table)
# and $OUT/logs.tgz (every log, sanitizer reports, test XML) are rewritten after every
# stage, so a run cut short still brings back what finished. At most 8 files come back
# from a device call: summary.md, logs.tgz, bench_gpu.json, smoke.json and the plots.
# Budget on an H200 (16 cores), expected: build ~1.5 min (19 parallel translation units
# of ~6 s each on this 2-core machine, kcenter.cu ~30 s), tests ~1.5 min, sanitizers
# ~1.5 min, benchmarks ~2.5 min: under 7 min; the stage timeouts bound it at ~9 min.
set -uo pipefail
DRY=0
EMU=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
[[ "${1:-}" == "--emulate" ]] && EMU=1
# the scripts' dry runs (tiny sizes, CPU tensors routed through the CUDA backend) are
# what --emulate runs too: on an emulated build that backend is the emulated device
# (benchmarks/_dry_run.py), not the stand-in
SCRIPT_DRY=$(( DRY || EMU ))
REPO=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16}
OUT=${OUT:-$(mktemp -d /tmp/svp_gpu_check.XXXX)}
mkdir -p "$OUT/logs"
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/svp_gpu_work.XXXX)  # every Python stage runs here: the installed
                                           # package, never the source tree's svp_fast/
T_ALL=$(date +%s)
ROWS=()
FAILED=0

finish_stage() {  # name status seconds note
  ROWS+=("| $1 | $2 | $3 | $4 |")
  [[ "$2" == FAIL* ]] && FAILED=1
  {
    echo "# gpu_check $( ((DRY)) && echo '(dry run)' ) $(date -u +%FT%TZ)"
    echo
    echo "| stage | status | seconds | note |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
  } > "$OUT/summary.md"
  tar -czf "$OUT/logs.tgz" -C "$OUT" logs 2> /dev/null
}

run_stage() {  # name timeout_s command...   (runs in $WORK; log: $OUT/logs/NAME.log)
  local name=$1 limit=$2
  shift 2
  local t0 rc
  t0=$(date +%s)
  (cd "$WORK" && timeout --kill-after=10 "$limit" "$@") > "$OUT/logs/$name.log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 )) status=ok note=""
  if (( rc == 124 || rc == 137 )); then status="FAIL (timeout ${limit} s)"
  elif (( rc != 0 )); then status="FAIL (exit $rc)"; fi
  note=$(grep -v '^\s*$' "$OUT/logs/$name.log" | tail -1 | cut -c1-110 | tr '|' '/')
  finish_stage "$name" "$status" "$dt" "$note"
  echo "== $name: $status in $dt s: $note"
  return $rc
}

echo "gpu_check: repo $REPO, OUT $OUT, dry run $DRY, emulated $EMU"
if (( DRY || EMU )); then
  command -v nvidia-smi > /dev/null && nvidia-smi -L || echo "no nvidia-smi (dry run)"
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || FAILED=1
fi

# 1. build: the GPU machine has no internet, so no index and no isolation. Dry run:
#    the same pip command resolves and prepares metadata without compiling.
if (( DRY )); then
  run_stage build 300 env SVP_FAST_CUDA=ON $PY -m pip install --dry-run --no-build-isolation \
    --no-deps --no-index "$REPO"
elif (( EMU )); then
  # the emulated build in a folder of its own, ahead of any installed svp_fast; its
  # build folder is kept in the repository (build/emu-*), so a second run is quick
  EMU_SITE="$WORK/emu_site"
  run_stage build 2400 env SVP_FAST_CUDA=EMU $PY -m pip install --no-build-isolation --no-deps \
    --no-index --target "$EMU_SITE" -C build-dir="$REPO/build/emu-{wheel_tag}" "$REPO" \
    || { echo "BUILD FAILED: see logs/build.log"; cat "$OUT/summary.md"; exit 1; }
  export PYTHONPATH="$EMU_SITE${PYTHONPATH:+:$PYTHONPATH}"
else
  run_stage build 240 env SVP_FAST_CUDA=ON $PY -m pip install -v --no-build-isolation \
    --no-deps --no-index "$REPO" || { echo "BUILD FAILED: see logs/build.log"; cat "$OUT/summary.md"; exit 1; }
fi

# 2. what was installed (from $WORK: the installed package)
run_stage import 60 $PY -c "import svp_fast, json; i = svp_fast.build_info(); print(json.dumps(i)); \
assert $DRY or (i['cuda_compiled'] and i['gpu_count'] > 0), 'no CUDA build or no GPU: ' + str(i); \
assert not $EMU or i['cuda_emulated'], 'not the emulated build: ' + str(i)" \
  || { cat "$OUT/summary.md"; exit 1; }

# 2b. the emulation's own tests: planted mistakes each caught, and the CUB and cuBLAS
#     stand-ins against host references (under ASan and UBSan)
if (( EMU )); then
  run_stage emulator_tests 600 $PY -m pytest -q -rs -p no:cacheprovider -c "$REPO/pyproject.toml" \
    --rootdir "$REPO" "$REPO/python_tests/test_cuda_emulator.py"
  run_stage emulator_host_tests 600 env EMU_TEST_BUILD_DIR="$WORK/emu_host_tests" \
    bash "$REPO/csrc/cuda_emu/tests/host/run.sh"
fi

# 3. smoke: one k-center, one uncertainty, against the CPU; stop here if they differ
SMOKE_ARGS=(--out "$OUT"); (( SCRIPT_DRY )) && SMOKE_ARGS+=(--dry-run)
run_stage smoke 90 $PY "$REPO/benchmarks/gpu_smoke.py" "${SMOKE_ARGS[@]}" \
  || { echo "SMOKE FAILED: the GPU disagrees with the CPU on the simplest case; nothing else ran"; \
       cat "$OUT/summary.md"; exit 1; }

# 4. the GPU tests: verbose, a per-test timeout, and a missing GPU is a failure
#    (SVP_REQUIRE_GPU); dry run: collect them (imports, parametrisation)
if (( DRY )); then
  run_stage gpu_tests 120 env SVP_REQUIRE_GPU=0 $PY -m pytest -q --collect-only -p no:cacheprovider \
    -c "$REPO/pyproject.toml" --rootdir "$REPO" "$REPO/python_tests/test_gpu.py"
elif (( EMU )); then
  run_stage gpu_tests 5400 env SVP_REQUIRE_GPU=1 $PY -m pytest -q -rs -p no:cacheprovider \
    -c "$REPO/pyproject.toml" --rootdir "$REPO" --durations=15 \
    --junitxml "$OUT/logs/gpu_tests.xml" "$REPO/python_tests/test_gpu.py"
  # how many ran, passed and were skipped, and why
  finish_stage gpu_tests_count "$($PY "$REPO/benchmarks/junit_summary.py" "$OUT/logs/gpu_tests.xml" --status)" 0 \
    "$($PY "$REPO/benchmarks/junit_summary.py" "$OUT/logs/gpu_tests.xml" | head -1 | tr '|' '/')"
  $PY "$REPO/benchmarks/junit_summary.py" "$OUT/logs/gpu_tests.xml"
else
  run_stage gpu_tests 150 env SVP_REQUIRE_GPU=1 SVP_TEST_TIMEOUT=30 $PY -m pytest -v -rs \
    -p no:cacheprovider -c "$REPO/pyproject.toml" --rootdir "$REPO" \
    --junitxml "$OUT/logs/gpu_tests.xml" "$REPO/python_tests/test_gpu.py"
  if [[ -f "$OUT/logs/gpu_tests.xml" ]] && grep -q 'skipped="[1-9]' "$OUT/logs/gpu_tests.xml"; then
    finish_stage gpu_tests_skips "FAIL (GPU tests were skipped)" 0 "see logs/gpu_tests.log"
  fi
fi

# 4b. the ecosystem on the GPU: DLPack (CuPy and JAX are installed there; JAX must
#     not take 75% of the GPU's memory), the command line's --device cuda, and the
#     latency suite's CUDA cases once each (their timed runs are bench_gpu.py's)
export XLA_PYTHON_CLIENT_PREALLOCATE=false
ECO_TESTS=("$REPO/python_tests/test_dlpack.py" "$REPO/python_tests/test_command_line_inputs.py")
# (two pytest runs: python_tests/ and benchmarks/ each have their own conftest module)
if (( DRY )); then
  run_stage gpu_ecosystem 120 $PY -m pytest -q --collect-only -p no:cacheprovider -c "$REPO/pyproject.toml" \
    --rootdir "$REPO" "${ECO_TESTS[@]}" -k "not test_command_line_inputs or cuda"
  # (its CUDA cases exist only where torch sees a GPU: collect the suite)
  run_stage latency_cuda 120 $PY -m pytest -q --collect-only -p no:cacheprovider -c "$REPO/pyproject.toml" \
    --rootdir "$REPO" "$REPO/benchmarks/test_latency.py"
else
  # (emulated: no per-test timeout, the emulation is slower; the distributed CUDA shard too)
  ECO_TIMEOUT=$(( EMU ? 0 : 30 ))
  (( EMU )) && ECO_TESTS+=("$REPO/python_tests/test_distributed.py")
  run_stage gpu_ecosystem $(( EMU ? 1800 : 120 )) env SVP_TEST_TIMEOUT=$ECO_TIMEOUT $PY -m pytest -q -rs \
    -p no:cacheprovider -c "$REPO/pyproject.toml" --rootdir "$REPO" "${ECO_TESTS[@]}" \
    -k "not (test_command_line_inputs or test_distributed) or cuda"
  run_stage latency_cuda $(( EMU ? 900 : 120 )) $PY -m pytest -q -rs -p no:cacheprovider -c "$REPO/pyproject.toml" \
    --rootdir "$REPO" "$REPO/benchmarks/test_latency.py" --benchmark-disable -k cuda
fi

# 5. sanitizers on small cases, full reports kept; dry run: the cases on the CPU;
#    emulated: the cases on an AddressSanitizer build of the emulation (every
#    out-of-bounds access of a kernel is reported), and the planted mistakes under it
if (( DRY )); then
  run_stage sanitizer_cases 120 $PY "$REPO/benchmarks/gpu_sanitize_case.py" --dry-run
elif (( EMU )); then
  ASAN_SITE="$WORK/emu_asan_site"
  LIBASAN=$(gcc -print-file-name=libasan.so)
  if run_stage build_asan 2400 env SVP_FAST_CUDA=EMU $PY -m pip install --no-build-isolation --no-deps \
      --no-index --target "$ASAN_SITE" -C build-dir="$REPO/build/emu-asan-{wheel_tag}" \
      -C cmake.define.SVP_FAST_EMU_ASAN=ON \
      -C cmake.define.SVP_FAST_EMU_RESOURCE_TABLE="$EMU_SITE/svp_fast/kernel_resources.inc" "$REPO"; then
    ASAN_ENV=(env PYTHONPATH="$ASAN_SITE" LD_PRELOAD="$LIBASAN"
              ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$OUT/logs/asan")
    run_stage sanitizer_cases 1800 "${ASAN_ENV[@]}" $PY "$REPO/benchmarks/gpu_sanitize_case.py" --dry-run
    run_stage sanitizer_planted 900 "${ASAN_ENV[@]}" $PY -m pytest -q -rs -p no:cacheprovider \
      -c "$REPO/pyproject.toml" --rootdir "$REPO" "$REPO/python_tests/test_cuda_emulator.py"
  fi
elif command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    run_stage "sanitizer_$tool" 60 compute-sanitizer --tool "$tool" --error-exitcode 9 \
      --log-file "$OUT/logs/sanitizer_$tool.txt" $PY "$REPO/benchmarks/gpu_sanitize_case.py"
  done
else
  finish_stage sanitizers "FAIL (no compute-sanitizer)" 0 ""
fi

# 6. benchmarks, each row capped; JSON rewritten after every row
#    (the first light is about correctness: rows are capped at BENCH_CAP_SECONDS and the
#    cases run in the order of BENCH_ONLY, the issue's targets first, so a timeout cuts
#    the least important)
BENCH_ARGS=(--out "$OUT" --cap-seconds "${BENCH_CAP_SECONDS:-20}"
            --only "${BENCH_ONLY:-scan,small,batched,uncertainty,pruned}")
(( SCRIPT_DRY )) && BENCH_ARGS+=(--dry-run)
run_stage bench 200 $PY "$REPO/benchmarks/bench_gpu.py" "${BENCH_ARGS[@]}"
grep -A40 '^| case' "$OUT/logs/bench.log" 2> /dev/null || true

# 7. many sets in one call on the GPU (bench_groups.py --gpu, small sizes); dry run:
#    its imports and arguments
if (( DRY || EMU )); then
  run_stage bench_groups 60 $PY "$REPO/benchmarks/bench_groups.py" --help
else
  run_stage bench_groups 90 $PY "$REPO/benchmarks/bench_groups.py" --gpu --quick --out "$OUT"
fi

echo
echo "total $(( $(date +%s) - T_ALL )) s"
cat "$OUT/summary.md"
rm -rf "$WORK"
exit $FAILED
