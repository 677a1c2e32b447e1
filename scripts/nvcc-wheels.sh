#!/usr/bin/env bash
# Installs nvcc 13.0.x from NVIDIA's PyPI wheels into a venv (about 100 MB download, no CUDA
# toolkit or GPU needed) and prints the path of its nvcc. nvcc 13.0.x emits PTX ISA 9.0, which a
# CUDA 13.0 driver loads (a newer nvcc's PTX would be rejected there).
#
# Usage: NVCC=$(scripts/nvcc-wheels.sh [VENV])   (default target/nvcc-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-target/nvcc-venv}
nvcc="$venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc"
if ! ls $nvcc >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 >&2
fi
realpath $nvcc
