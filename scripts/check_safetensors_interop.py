#!/usr/bin/env python3
"""Cross-checks smallgrad's hand-written safetensors code against the reference `safetensors`
package (with PyTorch). Run by hand from the repository root:

    cargo test --test serialize interop   # writes target/interop/smallgrad_written.safetensors
    python scripts/check_safetensors_interop.py            # check it, (re)write the fixture
    cargo test --test serialize                           # reads tests/fixtures/torch_written.safetensors

Needs: torch and safetensors (`pip install safetensors`).

1. Loads the file the Rust test `interop_writes_file_for_python` wrote and checks every value
   and the metadata against the same formulas used there.
2. Writes tests/fixtures/torch_written.safetensors with PyTorch's writer; the Rust test
   `interop_reads_file_written_by_torch` checks its values against the formulas below.
"""

import math
import pathlib
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUST_WRITTEN = ROOT / "target" / "interop" / "smallgrad_written.safetensors"
FIXTURE = ROOT / "tests" / "fixtures" / "torch_written.safetensors"


def check_rust_written() -> None:
    if not RUST_WRITTEN.exists():
        sys.exit(f"{RUST_WRITTEN} is missing: run `cargo test --test serialize interop` first")
    t = load_file(str(RUST_WRITTEN))
    assert set(t) == {"w_f32", "b_f64", "scalar", "empty"}, sorted(t)
    w = t["w_f32"]
    assert w.dtype == torch.float32 and tuple(w.shape) == (2, 3, 4), (w.dtype, w.shape)
    assert torch.equal(w, (torch.arange(24, dtype=torch.float32) * 0.25 - 2.0).reshape(2, 3, 4))
    b = t["b_f64"]
    assert b.dtype == torch.float64 and tuple(b.shape) == (4,)
    assert b.tolist() == [-1.5, 0.0, 1e-300, math.pi], b.tolist()
    s = t["scalar"]
    assert s.dtype == torch.float64 and s.dim() == 0 and s.item() == 2.5
    e = t["empty"]
    assert e.dtype == torch.float32 and tuple(e.shape) == (0, 3)
    with safe_open(str(RUST_WRITTEN), framework="pt") as f:
        meta = f.metadata()
    assert meta == {"epoch": "7", "note": 'quote " backslash \\ é\n'}, meta
    print(f"ok: {RUST_WRITTEN.relative_to(ROOT)} read by safetensors {len(t)} tensors, metadata {meta}")


def write_fixture() -> None:
    tensors = {
        "arange_f32": (torch.arange(12, dtype=torch.float32) * 0.5 - 1.0).reshape(3, 4),
        "arange_f64": (torch.arange(6, dtype=torch.float64) / 3.0).reshape(2, 1, 3),
        "scalar_f32": torch.tensor(3.25, dtype=torch.float32),
        "empty_f32": torch.zeros(0, 5, dtype=torch.float32),
    }
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(FIXTURE), metadata={"format": "pt", "written_by": "torch"})
    back = load_file(str(FIXTURE))
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    print(f"ok: wrote {FIXTURE.relative_to(ROOT)} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    check_rust_written()
    write_fixture()
