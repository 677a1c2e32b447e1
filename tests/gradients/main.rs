//! Every differentiable op against finite differences (`gradcheck`), over random shapes and parameters.
//!
//! One test binary per theme (docs/testing.md); each file below is one module of it.

#[path = "../common/mod.rs"]
mod common;

mod batchnorm;
mod conv;
mod elementwise;
mod loss;
mod matmul;
mod pool;
mod reduce;
mod shape;
mod softmax;
