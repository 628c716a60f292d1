#!/usr/bin/env bash
# One device call: build with CUDA, run the GPU tests, a sanitizer pass, and the
# GPU benchmarks; prints a short table last. Usage (device tool):
#   bash benchmarks/gpu_check.sh            (OUT=... receives logs, JSON, PNG)
set -uo pipefail
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=16
OUT=${OUT:-/tmp/svp_gpu_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
SVP_FAST_CUDA=ON python3 -m pip install --no-build-isolation --no-deps -q . > "$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
cd /tmp  # import the installed package, not the source tree
python3 -c "import svp_fast; print(svp_fast.build_info())"
cd - > /dev/null
timeout 240 python3 -m pytest -q -x -W default -p no:cacheprovider python_tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 python3 -c "
import torch, svp_fast
x = torch.randn(3000, 64, device='cuda'); x[::7] = x[1::7][: x[::7].shape[0]]
for m in ('scan', 'pruned'):
    svp_fast.kcenter(x, 300, method=m, n_cells=32)
lab = torch.arange(3000, device='cuda') % 7; lab[:1500] = 0  # warp, block and multi-block teams
svp_fast.kcenter(x, 600, groups=lab)
svp_fast.kcenter(torch.rand(9, 700, 3, device='cuda'), 100, lengths=[700] * 8 + [50])
svp_fast.uncertainty(torch.randn(2000, 100, device='cuda'), 200, method='margin')
print('$tool ok')" 2>&1 | tail -4 | tee "$OUT/sanitizer_$tool.log"
  done
fi
timeout 420 python3 benchmarks/bench_gpu.py --out "$OUT" 2>&1 | tee "$OUT/bench.log" | tail -20
timeout 180 python3 benchmarks/bench_groups.py --gpu --out "$OUT" 2>&1 | tee "$OUT/bench_groups.log" | tail -4
