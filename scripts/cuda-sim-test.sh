#!/usr/bin/env bash
# The whole CUDA suite on the simulator, no GPU needed (CI runs this; see docs/cuda.md):
#   1. builds cuda-sim (the simulated libcuda.so.1 / libcublas.so.13 and the host build of
#      kernels/*.cu) and runs its own tests;
#   2. builds the `--features cuda` test, bench and example binaries, linked against the
#      simulator's libraries (the same binaries scripts/gpu-build.sh bundles for a real GPU);
#   3. runs the CUDA unit tests and the op suite (tests/cuda/ops.rs) with the race checks on
#      (three schedules compared bit for bit, every access tracked) and exact-size allocations,
#      so every overrun meets a bounds check; then the driver suite (tests/cuda/driver.rs:
#      faults injected, contexts, counters);
#   4. runs the ResNet example with --device cuda for 2 epochs on synthetic data, and the CUDA
#      bench in its short mode (the call counters of one training step);
# and fails on any skipped test, finding or failure.
#
# Usage: scripts/cuda-sim-test.sh            (NVCC: nvcc 13.0.x, else scripts/nvcc-wheels.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo; echo "==> $* ($(( $(date +%s) - start ))s)"; }

: "${NVCC:=$(scripts/nvcc-wheels.sh)}"
export NVCC
SIM=$PWD/target/cuda-sim
LOGS=target/cuda-sim-logs
mkdir -p "$LOGS"

step "cuda-sim: build, and its own tests"
make -s -C cuda-sim all selftest NVCC="$NVCC"
make -s -C cuda-sim run-selftest NVCC="$NVCC" | tee "$LOGS/selftest.log" | tail -n 1

# Build against the simulator's libraries, run against them.
export CUDA_LIBRARY_PATH=$SIM
export LD_LIBRARY_PATH=$SIM/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# A CUDA test that finds no device fails instead of printing a skip line.
export SMALLGRAD_REQUIRE_CUDA=1

step "build the cuda test, bench and example binaries"
cargo test --release --features cuda --lib --test cuda --no-run
cargo bench --features cuda --bench cuda --no-run
cargo build --release --features cuda --example resnet

step "CUDA unit tests and the op suite: 3 schedules, access tracking, exact-size allocations"
CUDA_SIM_SCHEDULES=3 CUDA_SIM_RACECHECK=1 SMALLGRAD_CUDA_NO_CACHING=1 \
  cargo test --release --features cuda --lib backend::cuda 2>&1 | tee "$LOGS/unit.log" | grep -E "^test |test result"
CUDA_SIM_SCHEDULES=3 CUDA_SIM_RACECHECK=1 SMALLGRAD_CUDA_NO_CACHING=1 \
  cargo test --release --features cuda --test cuda -- ops:: 2>&1 | tee "$LOGS/ops.log" | grep -E "^test |test result"

step "the driver suite: injected faults, contexts, counters, the allocator"
cargo test --release --features cuda --test cuda -- driver:: --nocapture 2>&1 | tee "$LOGS/driver.log" |
  grep -E "^test |test result|one warm ResNet-20 step"

step "the ResNet example, --device cuda, 2 epochs of synthetic data"
target/release/examples/resnet --device cuda --dataset synthetic --loss cosine-xent --epochs 2 \
  --per-class 5 --batch 25 --eval-every 2 --test-limit 100 --out target/cuda-sim-logs/resnet 2>&1 |
  tee "$LOGS/example.log" | tail -n 3

step "the CUDA bench, short mode: what one training step asks of the driver"
cargo bench --features cuda --bench cuda -- --short 2>&1 | tee "$LOGS/bench.log" | grep -E "^#|cuda-step"

step "checks"
fail=0
if grep -h "skipping" "$LOGS"/unit.log "$LOGS"/ops.log "$LOGS"/driver.log; then
  echo "a CUDA test skipped on the simulator"; fail=1
fi
for log in unit ops driver; do
  grep -q "^test result: ok" "$LOGS/$log.log" || { echo "$log: no passing test result"; fail=1; }
done
grep -q "top-1" "$LOGS/example.log" || { echo "the example printed no result"; fail=1; }
[ "$(grep -c '^cuda-step' "$LOGS/bench.log")" -eq 4 ] || { echo "the bench printed no counter lines"; fail=1; }
if grep -h "^cuda-sim: " "$LOGS"/unit.log "$LOGS"/ops.log "$LOGS"/example.log "$LOGS"/bench.log; then
  echo "the simulator reported findings (above)"; fail=1
fi
[ "$fail" -eq 0 ] || exit 1
ran=$(awk '/^test result: ok\./ {s += $4} END {print s + 0}' "$LOGS"/unit.log "$LOGS"/ops.log "$LOGS"/driver.log)
echo "cuda-sim: $(grep -o '[0-9]* passed' "$LOGS/selftest.log") self-tests; $ran CUDA tests passed, none skipped, no findings ($(( $(date +%s) - start ))s)"
