//! What finite differences cannot see: PyTorch's semantics (golden values), independent reference implementations, and determinism across thread counts.
//!
//! One test binary per theme (docs/testing.md); each file below is one module of it.

#[path = "../common/mod.rs"]
mod common;

mod determinism;
mod kernels;
mod reference_forward;
mod reference_loss;
mod torch;
