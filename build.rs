//! Build script: with the `cuda` feature, compiles every `kernels/*.cu` to PTX with `nvcc` into
//! OUT_DIR, where `src/backend/cuda/ptx.rs` embeds them. Without the feature it does nothing.
//!
//! - `NVCC`: the compiler (else `nvcc` on PATH). The PTX must load on the driver that runs it:
//!   nvcc 13.0.x emits PTX ISA 9.0, which a CUDA 13.0 driver (580) loads; a newer nvcc emits a
//!   newer ISA that such a driver rejects, so this script warns when the ISA is above 9.0.
//! - `CUDA_ARCH`: the virtual architecture (default `sm_80`, which the driver JIT-compiles for
//!   any newer GPU, Hopper included).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_CUDA");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_ARCH");
    println!("cargo:rerun-if-changed=kernels");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    let arch = std::env::var("CUDA_ARCH").unwrap_or_else(|_| "sm_80".to_string());
    let mut sources: Vec<PathBuf> = std::fs::read_dir("kernels")
        .expect("kernels/ is part of the crate")
        .map(|e| e.expect("readable kernels/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src.file_stem().unwrap().to_string_lossy().to_string();
        let ptx = out.join(format!("{stem}.ptx"));
        compile(&nvcc, &arch, src, &ptx);
        check_isa(&ptx);
    }
    for h in std::fs::read_dir("kernels").unwrap().flatten() {
        println!("cargo:rerun-if-changed={}", h.path().display());
    }
}

fn compile(nvcc: &str, arch: &str, src: &Path, ptx: &Path) {
    let status = Command::new(nvcc)
        .args(["-ptx", "-O3", "-std=c++17", "-Ikernels"])
        .arg(format!("-arch={arch}"))
        .arg(src)
        .arg("-o")
        .arg(ptx)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("nvcc failed on {} ({s}); see its messages above", src.display()),
        Err(e) => panic!(
            "\n\nthe `cuda` feature needs nvcc to compile kernels/*.cu to PTX, and `{nvcc}` could \
             not be run ({e}).\nInstall the CUDA toolkit (nvcc 13.0.x) or the pip wheels:\n  \
             python3 -m venv .venv-nvcc && .venv-nvcc/bin/pip install nvidia-cuda-nvcc==13.0.88 \
             nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96\nthen set \
             NVCC=$PWD/.venv-nvcc/lib/python3.11/site-packages/nvidia/cu13/bin/nvcc (see docs/cuda.md).\n"
        ),
    }
}

/// Warns when the PTX ISA is newer than a CUDA 13.0 driver loads.
fn check_isa(ptx: &Path) {
    let text = std::fs::read_to_string(ptx).expect("nvcc wrote the PTX");
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(".version "))
        .map(|v| v.trim().to_string());
    if let Some(v) = version {
        let parts: Vec<u32> = v.split('.').filter_map(|p| p.parse().ok()).collect();
        if parts.as_slice() > [9, 0].as_slice() {
            println!(
                "cargo:warning={} has PTX ISA {v}: a CUDA 13.0 driver (580) loads at most 9.0; build \
                 with nvcc 13.0.x to run there",
                ptx.display()
            );
        }
    }
}
