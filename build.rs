//! Build script: with the `cuda` feature, compiles every `kernels/*.cu` to PTX with `nvcc` into
//! OUT_DIR, where `src/backend/cuda/driver/ptx.rs` embeds them, and links the CUDA driver
//! (`libcuda.so.1`) and cuBLAS (`libcublas.so.13`). Without the feature it does nothing.
//!
//! - `NVCC`: the compiler (else `nvcc` on PATH). The PTX must load on the driver that runs it:
//!   nvcc 13.0.x emits PTX ISA 9.0, which a CUDA 13.0 driver (580) loads; a newer nvcc emits a
//!   newer ISA that such a driver rejects, so this script warns when the ISA is above 9.0.
//! - `CUDA_ARCH`: the virtual architecture (default `sm_80`, which the driver JIT-compiles for
//!   any newer GPU, Hopper included).
//! - Where the libraries are: `CUDA_LIBRARY_PATH` (directories, `:`-separated; each is searched
//!   itself and in `lib64/` and `lib64/stubs/`), `CUDA_PATH` / `CUDA_ROOT` /
//!   `CUDA_TOOLKIT_ROOT_DIR` (a toolkit root), `CUBLAS_LIB_DIR`, else `/usr/local/cuda`. Without a
//!   GPU, link against the simulator (`make -C cuda-sim`; `CUDA_LIBRARY_PATH=target/cuda-sim`),
//!   which has the same sonames: the binaries then run against a real driver unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    link_libraries();
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

/// Search paths for `libcuda.so` and `libcublas.so`, then the two `-l` flags.
fn link_libraries() {
    for var in [
        "CUDA_LIBRARY_PATH",
        "CUDA_PATH",
        "CUDA_ROOT",
        "CUDA_TOOLKIT_ROOT_DIR",
        "CUBLAS_LIB_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(paths) = std::env::var("CUDA_LIBRARY_PATH") {
        roots.extend(paths.split(':').filter(|p| !p.is_empty()).map(PathBuf::from));
    }
    for var in ["CUDA_PATH", "CUDA_ROOT", "CUDA_TOOLKIT_ROOT_DIR", "CUBLAS_LIB_DIR"] {
        if let Ok(p) = std::env::var(var) {
            roots.push(PathBuf::from(p));
        }
    }
    roots.push(PathBuf::from("/usr/local/cuda"));
    let mut found = (false, false);
    for root in &roots {
        for dir in [root.clone(), root.join("lib64"), root.join("lib64/stubs")] {
            let cuda = dir.join("libcuda.so").exists();
            let blas = dir.join("libcublas.so").exists();
            if cuda || blas {
                println!("cargo:rustc-link-search=native={}", dir.display());
                found.0 |= cuda;
                found.1 |= blas;
            }
        }
    }
    if !found.0 || !found.1 {
        println!(
            "cargo:warning=the `cuda` feature links libcuda.so and libcublas.so, and {} not found under {:?}; \
             set CUDA_LIBRARY_PATH (a toolkit, or the simulator: `make -C cuda-sim` then \
             CUDA_LIBRARY_PATH=$PWD/target/cuda-sim; see docs/cuda.md)",
            match found {
                (false, false) => "neither was",
                (false, true) => "libcuda.so was",
                _ => "libcublas.so was",
            },
            roots
        );
    }
    println!("cargo:rustc-link-lib=dylib=cuda");
    println!("cargo:rustc-link-lib=dylib=cublas");
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
             NVCC=$(scripts/nvcc-wheels.sh)   (nvidia-cuda-nvcc==13.0.88 and friends in \
             target/nvcc-venv; see docs/cuda.md)\n"
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
