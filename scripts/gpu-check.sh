#!/usr/bin/env bash
# The second half of the GPU check, run ON THE GPU MACHINE (CUDA 13.0 driver, toolkit, PyTorch;
# no Rust, no network) over the binaries scripts/gpu-build.sh left in target/gpu-bundle:
#   0. `ldd -r`: every driver and cuBLAS symbol the binaries use resolves in the real libraries;
#   1. every CUDA test, first one at a time with SMALLGRAD_CUDA_SYNC=1 (a synchronisation after
#      every launch, so an asynchronous fault names its kernel), then all at once; the
#      simulator-only tests print `not the simulator: skipping`;
#   2. GEMM GFLOP/s and ResNet-20 / ResNet-50 training steps (time and driver-call counts),
#      ours and PyTorch eager's;
#   3. a short `--device cuda` run of the ResNet example (synthetic data);
# then a summary. About 4 minutes on one H200. Writes logs under $OUT (or out/gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
B=target/gpu-bundle
OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT"
# The real libraries: the toolkit's cuBLAS and the driver's libcuda (never the simulator's).
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SMALLGRAD_REQUIRE_CUDA=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== 0. symbols"
: > "$OUT/libs.txt"
for b in "$B"/*; do
  ldd -r "$b" > "$OUT/ldd-$(basename "$b").txt" 2>&1
  grep -E "libcuda|libcublas" "$OUT/ldd-$(basename "$b").txt" | sed "s|^|$(basename "$b"): |" >> "$OUT/libs.txt"
done
cat "$OUT/libs.txt"
if grep -q cuda-sim "$OUT/libs.txt"; then echo "the simulator's libraries are on the path: refusing"; exit 1; fi
undefined=$(cat "$OUT"/ldd-*.txt | grep -c "undefined symbol" || true)
echo "undefined symbols: $undefined"

echo "== 1. CUDA tests"
t0=$(date +%s)
SMALLGRAD_CUDA_SYNC=1 timeout 150 "$B/cuda_tests" ops:: --test-threads 1 2>&1 | tee "$OUT/tests-sync.log" | grep -E "^test |test result|panicked"
sync_rc=${PIPESTATUS[0]}
timeout 90 "$B/cuda_tests" ops:: --test-threads 4 2>&1 | tee "$OUT/tests.log" | grep -E "^test |test result|panicked"
tests_rc=${PIPESTATUS[0]}
timeout 60 "$B/cuda_tests" driver:: 2>&1 | tee -a "$OUT/tests.log" | grep -E "^test |test result|panicked|skipping"
[ "${PIPESTATUS[0]}" -eq 0 ] || tests_rc=1
timeout 30 "$B/unit_tests" backend::cuda 2>&1 | tee -a "$OUT/tests.log" | grep -E "^test |test result|panicked"
[ "${PIPESTATUS[0]}" -eq 0 ] || tests_rc=1
tests_s=$(( $(date +%s) - t0 ))

echo "== 2. benchmarks"
timeout 90 "$B/cuda_bench" 2>&1 | tee "$OUT/bench.txt"
timeout 90 python3 scripts/gpu_torch_bench.py 2>&1 | tee "$OUT/torch.txt"

echo "== 3. the example on the GPU"
timeout 60 "$B/resnet" --device cuda --dataset synthetic --loss cosine-xent --epochs 2 --per-class 50 \
  --eval-every 2 --out "$OUT/resnet" 2>&1 | tail -n 5 | tee "$OUT/example.txt"
example_rc=${PIPESTATUS[0]}

echo
echo "== summary"
echo "| check | result |"
echo "|---|---|"
echo "| GPU | $(cat "$OUT/gpu.txt") |"
echo "| undefined symbols (ldd -r, must be 0) | $undefined |"
echo "| CUDA tests, one at a time, SMALLGRAD_CUDA_SYNC=1 | $(grep -E '^test result' "$OUT/tests-sync.log" | tr '\n' ' ') (exit $sync_rc) |"
echo "| CUDA tests | $(grep -E '^test result' "$OUT/tests.log" | tr '\n' ' ') (exit $tests_rc, ${tests_s} s in all) |"
echo "| simulator-only tests skipped | $(grep -c 'not the simulator: skipping' "$OUT/tests.log") |"
echo "| example --device cuda | exit $example_rc: $(grep -E 'top-1' "$OUT/example.txt" | tail -n 1) |"
echo
echo "ours (smallgrad):"; grep -E '^\||^cuda-step' "$OUT/bench.txt"
echo "PyTorch:"; grep -E '^\|' "$OUT/torch.txt"
