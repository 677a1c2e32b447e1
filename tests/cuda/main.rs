//! The CUDA backend (feature `cuda`): every op against the CPU (`ops`), and the driver layer — failures, contexts, counters (`driver`). CI runs it on the simulator (docs/cuda.md).
//!
//! One test binary per theme (docs/testing.md); each file below is one module of it.

#![cfg(feature = "cuda")]

#[path = "../common/mod.rs"]
mod common;

mod driver;
mod ops;
