//! Helpers shared by the test binaries: the proptest strategies and value generators
//! ([`strategies`], usable on their own by suites that do not call `gradcheck`), [`check_grad`],
//! which runs `smallgrad::gradcheck` so that backprop starts from a random upstream gradient,
//! and for the CUDA suite the GPU helpers (`cuda`) and the simulator's interface (`sim`).
#![allow(dead_code)]

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda")]
pub mod sim;
pub mod strategies;

pub use strategies::*;

use proptest::test_runner::TestCaseError;
use smallgrad::{GradcheckOptions, Result, Tensor, gradcheck, no_grad};

/// Above this many input elements in total, gradcheck runs in fast mode (random projections
/// instead of the full Jacobian).
pub const FAST_MODE_ABOVE: usize = 200;

/// Gradchecks `op` at `inputs` through `f(xs) = (op(xs) * R).sum()` for a fixed random `R`
/// of the output's shape (drawn from `seed`), so every backward starts from a random
/// upstream gradient rather than from the ones of `.sum()`. Fast mode when the inputs hold
/// more than [`FAST_MODE_ABOVE`] elements. Default tolerances (eps 1e-6, atol 1e-5, rtol 1e-3).
pub fn check_grad(
    name: &str,
    op: impl Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
    inputs: &[Tensor<f64>],
    seed: u64,
) -> std::result::Result<(), TestCaseError> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let out =
        no_grad(|| op(inputs)).map_err(|e| TestCaseError::fail(format!("{name}{shapes:?}: forward failed: {e}")))?;
    let r = upstream(out.shape(), seed);
    let f = |xs: &[Tensor<f64>]| op(xs)?.mul(&r)?.sum();
    let total: usize = inputs.iter().map(|t| t.numel()).sum();
    let opts = GradcheckOptions {
        fast_mode: total > FAST_MODE_ABOVE,
        seed,
        ..GradcheckOptions::default()
    };
    gradcheck(f, inputs, &opts).map_err(|e| TestCaseError::fail(format!("{name}{shapes:?}: {e}")))?;
    Ok(())
}
