#!/usr/bin/env bash
# Proof that the simulator catches what it claims: plants one bug at a time in a copy of the
# kernels or of the launchers, runs the CUDA suite on the simulator, and prints a table of what
# failed (docs/cuda.md keeps the last one). The unmodified tree runs first and must pass.
#
# - Kernel mutants change only the host build of kernels/*.cu (the simulator runs that; the
#   PTX keeps its parameter list and barriers, so it still loads), rebuilt in seconds.
# - Launcher mutants (Rust), and a kernel whose parameter type changes (its PTX changes too),
#   rebuild the test binaries from a patched copy of the tree (CARGO_TARGET_DIR=target/mutants).
#
# The suites run as in scripts/cuda-sim-test.sh, one test at a time, the op suite with
# CUDA_SIM_STICKY=0 (a finding fails the test that caused it, then the context works again),
# so that each failing test is one the bug reaches. About 15 minutes on 2 cores.
#
# Usage: scripts/cuda-sim-mutants.sh [NAME...]     (default: every mutant)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${NVCC:=$(scripts/nvcc-wheels.sh)}"
export NVCC
ROOT=$PWD
SIM=$ROOT/target/cuda-sim
WORK=$ROOT/target/mutants
mkdir -p "$WORK"
make -s -C cuda-sim all NVCC="$NVCC"
export CUDA_LIBRARY_PATH=$SIM LD_LIBRARY_PATH=$SIM/lib64 SMALLGRAD_REQUIRE_CUDA=1
# The op suite's settings (the driver suite sets its own, per test).
OPS_ENV=(CUDA_SIM_SCHEDULES=3 CUDA_SIM_RACECHECK=1 SMALLGRAD_CUDA_NO_CACHING=1 CUDA_SIM_STICKY=0)

# name | kind (kernel: host build only; rust: rebuild the binaries) | file | old | new | what it is
MUTANTS=$(cat <<'EOF'
block_sum_barrier|kernel|common.cuh|sh[threadIdx.x] += sh[threadIdx.x + s];\n        __syncthreads();\n    }\n    T r = sh[0];\n    __syncthreads();|sh[threadIdx.x] += sh[threadIdx.x + s];\n        __syncthreads();\n    }\n    T r = sh[0];|the last __syncthreads() of block_sum removed (kernels/common.cuh)
im2col_bound|kernel|conv.cu|iy >= 0 && iy < g.h|iy >= 0 && iy <= g.h|an off-by-one bound in im2col (`iy <= h`, kernels/conv.cu)
sum_rows_all_threads_write|kernel|reduce.cu|if (threadIdx.x == 0) out[r] = s * scale;|out[r] = s * scale;|every thread of sum_rows writes the row's result (kernels/reduce.cu)
stale_host_build|kernel|elementwise.cu|EXPORT(unary, (i64 op, const T* x, T* y, i64 n, T p), (op, x, y, n, p))|EXPORT(unary, (i64 op, const T* x, T* y, i64 n, double p), (op, x, y, n, (T)p))|the simulator's host build of `unary` takes a double where its PTX has T (a stale build)
download_without_sync|rust|src/backend/cuda/driver/mod.rs|        self.synchronize("cuMemcpyDtoHAsync")?;\n|\n|no synchronisation between the asynchronous download and the host read (driver/mod.rs dtoh)
gemm_leading_dimension|rust|src/backend/cuda/blas.rs|            lda: if g.tb { k } else { n },|            lda: if g.tb { n } else { k },|a wrong leading dimension in the row-major to cuBLAS mapping (blas.rs)
gemm_default_stream|rust|src/backend/cuda/driver/mod.rs|        blas_check("cublasSetStream", unsafe { cublasSetStream_v2(h, self.stream) })?;|        let _ = self.stream;|cuBLAS left on the NULL stream: no cublasSetStream (driver/mod.rs)
kernel_param_size|rust|kernels/elementwise.cu|EXPORT(unary, (i64 op, const T* x, T* y, i64 n, T p), (op, x, y, n, p))|EXPORT(unary, (i64 op, const T* x, T* y, int n, T p), (op, x, y, n, p))|a kernel parameter of the wrong size: `unary` takes an int n, the launcher passes an i64 (kernels/elementwise.cu, PTX and host)
EOF
)

patch_file() { # file old new (\n escapes)
  python3 - "$1" "$2" "$3" <<'PY'
import sys
path, old, new = sys.argv[1], sys.argv[2].replace("\\n", "\n"), sys.argv[3].replace("\\n", "\n")
s = open(path).read()
if s.count(old) != 1:
    sys.exit(f"{path}: the mutant's text occurs {s.count(old)} times (expected once)")
open(path, "w").write(s.replace(old, new))
PY
}

exe() { "$ROOT/scripts/cargo-exe.py" "$1"; }

build_tests() { # tree target-dir -> prints the CUDA test binary
  (cd "$1" && CARGO_TARGET_DIR=$2 cargo test --release --features cuda --test cuda --no-run \
    --message-format=json 2>/dev/null) > "$WORK/build.json"
  exe cuda < "$WORK/build.json"
}

run_suite() { # name binary [env...] -> writes $WORK/name.{ops,driver}.log, prints "failed total"
  local name=$1 bin=$2; shift 2
  env "${OPS_ENV[@]}" "$@" "$bin" ops:: --test-threads 1 > "$WORK/$name.ops.log" 2>&1 || true
  env "$@" "$bin" driver:: --test-threads 1 > "$WORK/$name.driver.log" 2>&1 || true
  cat "$WORK/$name.ops.log" "$WORK/$name.driver.log" > "$WORK/$name.log"
  summary "$WORK/$name.ops.log" "$WORK/$name.driver.log" > "$WORK/$name.summary"
  head -n 1 "$WORK/$name.summary"
}

summary() { # logs... -> "failed total" and then the failing tests, one per line
  python3 - "$@" <<'PY'
import re, sys
failed, total, names = 0, 0, []
for path in sys.argv[1:]:
    text = open(path, errors="replace").read()
    # the harness's own summary is the last "test result" line (a child test's output can
    # contain others, inside a panic message)
    results = list(re.finditer(r"^test result: \w+\. (\d+) passed; (\d+) failed", text, re.M))
    if not results:
        names.append(f"(no result in {path}: the binary crashed)")
        failed += 1
        continue
    last = results[-1]
    p, f = int(last.group(1)), int(last.group(2))
    failed, total = failed + f, total + p + f
    if f:
        block = text[: last.start()].rsplit("failures:\n", 1)[-1]
        names += [l.strip() for l in block.splitlines() if l.startswith("    ") and l.strip()]
print(failed, total)
print("\n".join(names))
PY
}

caught_by() { # what the log says caught it
  local log=$1 out=()
  grep -q "race in kernel" "$log" && out+=("race (access tracking)")
  grep -q "gives different results" "$log" && out+=("schedules differ")
  grep -q "CUDA_ERROR_ILLEGAL_ADDRESS" "$log" && out+=("out-of-bounds access")
  grep -q "has no host build\|bytes in the PTX but" "$log" && out+=("PTX vs host build check")
  grep -q "bytes in the PTX, the launcher passed" "$log" && out+=("launch argument check")
  grep -q "CUBLAS_STATUS_INVALID_VALUE" "$log" && out+=("cuBLAS argument check")
  grep -qE "cuda -?[0-9.e+-]+|NaN| vs cpu " "$log" && out+=("CUDA != CPU")
  local IFS=';'
  echo "${out[*]:-?}" | sed 's/;/, /g'
}

echo "==> baseline: the unmodified tree"
BIN=$(build_tests "$ROOT" "$ROOT/target")
read -r f t <<< "$(run_suite baseline "$BIN")"
[ "$f" -eq 0 ] && [ "$t" -gt 0 ] || { echo "the unmodified suite fails ($f of $t): see $WORK/baseline.log"; exit 1; }
echo "baseline: $t tests, all pass"

want=" $* "
rows=()
while IFS='|' read -r name kind file old new what; do
  [ -z "$name" ] && continue
  [ "$#" -gt 0 ] && [[ "$want" != *" $name "* ]] && continue
  echo "==> $name: $what"
  if [ "$kind" = kernel ]; then
    rm -rf "$WORK/$name" && mkdir -p "$WORK/$name"
    cp -r kernels "$WORK/$name/kernels"
    patch_file "$WORK/$name/kernels/$file" "$old" "$new"
    make -s -C cuda-sim kernels KERNELS="$WORK/$name/kernels" KERNELS_NAME="$name" BUILD="$WORK/$name/sim"
    read -r f t <<< "$(run_suite "$name" "$BIN" CUDA_SIM_KERNELS="$WORK/$name/sim/kernels/lib${name}_kernels.so")"
  else
    tree=$WORK/tree-$name
    rm -rf "$tree" && mkdir -p "$tree"
    git ls-files -z | xargs -0 -I{} cp --parents {} "$tree"
    patch_file "$tree/$file" "$old" "$new"
    kenv=()
    if [[ "$file" == kernels/* ]]; then  # the PTX changes too: so does the simulator's host build
      make -s -C cuda-sim kernels KERNELS="$tree/kernels" KERNELS_NAME="$name" BUILD="$WORK/$name/sim"
      kenv=(CUDA_SIM_KERNELS="$WORK/$name/sim/kernels/lib${name}_kernels.so")
    fi
    mbin=$(build_tests "$tree" "$WORK/target")
    read -r f t <<< "$(run_suite "$name" "$mbin" "${kenv[@]}")"
  fi
  failing=$(tail -n +2 "$WORK/$name.summary" | tr '\n' ' ')
  echo "$name: $f of $t tests fail: $failing"
  rows+=("| $what | $f of $t | ${failing% } | $(caught_by "$WORK/$name.log") |")
done <<< "$MUTANTS"

echo
echo "| planted bug | tests failing | which | caught by |"
echo "|---|---:|---|---|"
printf '%s\n' "${rows[@]}"
