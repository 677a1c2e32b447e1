#!/usr/bin/env bash
# The first half of the GPU check, run HERE (no GPU needed): builds the CUDA test binary, the
# CUDA bench and the ResNet example with PTX from nvcc 13.0.x, linked against the stub driver
# and cuBLAS libraries (scripts/cuda-stubs.sh), and copies them stripped into target/gpu-bundle
# (at most 64 MiB), which the GPU machine receives with the working tree (`carry`). There,
# scripts/gpu-check.sh runs them against the real libcuda.so.1 and libcublas.so.13.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${NVCC:=$(scripts/nvcc-wheels.sh)}"
export NVCC
"$NVCC" --version | grep -q "release 13.0" || { echo "need nvcc 13.0.x, got: $("$NVCC" --version | tail -1)"; exit 1; }
scripts/cuda-stubs.sh target/cuda-stubs
export CUDA_LIBRARY_PATH=$PWD/target/cuda-stubs CUBLAS_LIB_DIR=$PWD/target/cuda-stubs/lib64
export CUDA_ARCH=${CUDA_ARCH:-sm_80}

exe() { # the executable cargo built for a target, from its JSON messages
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1" | tail -n 1
}
tests=$(cargo test --release --features cuda --test cuda_ops --no-run --message-format=json | exe cuda_ops)
alloc=$(cargo test --release --features cuda --test cuda_allocator --no-run --message-format=json | exe cuda_allocator)
bench=$(cargo bench --features cuda --bench cuda --no-run --message-format=json | exe cuda)
cargo build --release --features cuda --example resnet
out=target/gpu-bundle
rm -rf "$out" && mkdir -p "$out"
cp "$tests" "$out/cuda_ops"
cp "$alloc" "$out/cuda_allocator"
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
