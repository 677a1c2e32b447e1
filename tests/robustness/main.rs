//! Misuse is an `Err`, never a panic: every op and module with bad shapes or parameters, and proptests over random (mostly invalid) inputs.
//!
//! One test binary per theme (docs/testing.md); each file below is one module of it.

#[path = "../common/strategies.rs"]
mod strategies;

mod nn;
mod ops;
