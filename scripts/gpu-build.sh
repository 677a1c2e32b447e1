#!/usr/bin/env bash
# The first half of the GPU check, run HERE (no GPU needed): builds the CUDA test binaries, the
# CUDA bench and the ResNet example with PTX from nvcc 13.0.x, linked against the simulator's
# libcuda.so.1 / libcublas.so.13 (cuda-sim: the same sonames and symbols as the real ones), and
# copies them stripped into target/gpu-bundle (at most 64 MiB), which the GPU machine receives
# with the working tree (`carry`). There, scripts/gpu-check.sh runs them against the real driver
# and cuBLAS — the very binaries CI runs on the simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${NVCC:=$(scripts/nvcc-wheels.sh)}"
export NVCC
"$NVCC" --version | grep -q "release 13.0" || { echo "need nvcc 13.0.x, got: $("$NVCC" --version | tail -1)"; exit 1; }
make -s -C cuda-sim driver
export CUDA_LIBRARY_PATH=$PWD/target/cuda-sim
export CUDA_ARCH=${CUDA_ARCH:-sm_80}

exe() { scripts/cargo-exe.py "$1"; }
json=$(cargo test --release --features cuda --lib --test cuda --no-run --message-format=json)
bench=$(cargo bench --features cuda --bench cuda --no-run --message-format=json | exe cuda)
cargo build --release --features cuda --example resnet
out=target/gpu-bundle
rm -rf "$out" && mkdir -p "$out"
cp "$(exe cuda <<< "$json")" "$out/cuda_tests"
cp "$(exe smallgrad <<< "$json")" "$out/unit_tests"
cp "$bench" "$out/cuda_bench"
cp target/release/examples/resnet "$out/resnet"
strip "$out"/*
du -sh "$out"
size=$(du -sm "$out" | cut -f1)
[ "$size" -lt 64 ] || { echo "bundle is ${size} MiB, over the 64 MiB carry limit"; exit 1; }
for b in "$out"/*; do
  echo "$b needs: $(objdump -p "$b" | awk '/NEEDED/ && /cu/ {print $2}' | tr '\n' ' ')"
done
echo "carry target/gpu-bundle and run scripts/gpu-check.sh on the GPU machine"
