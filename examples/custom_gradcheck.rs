//! Checking your own function with `gradcheck`, and what a failure report looks like.
//!
//! Run with `cargo run --release --example custom_gradcheck`.
//!
//! `gradcheck` compares the gradient autograd computes with central finite differences
//! (f(x + eps) - f(x - eps)) / (2 eps), in f64, element by element.

use smallgrad::{Device, GradcheckOptions, Result, Tensor, gradcheck};

/// Swish / SiLU, written as a composite of existing ops: x · sigmoid(x).
fn swish(x: &Tensor<f64>) -> Result<Tensor<f64>> {
    x.mul(&x.sigmoid()?)
}

/// A "layer norm"-like composite over the last dim: (x - mean) / sqrt(var + 1e-5).
fn standardize(x: &Tensor<f64>) -> Result<Tensor<f64>> {
    let d = x.ndim() - 1;
    let centered = x.sub(&x.mean_dim(&[d], true)?)?;
    let var = centered.mul(&centered)?.mean_dim(&[d], true)?;
    centered.div(&var.add_scalar(1e-5)?.sqrt()?)
}

/// A buggy square: `x * x.detach()` cuts one of the two paths from x, so autograd returns
/// x where the true derivative of x² is 2x. Finite differences see the truth.
fn buggy_square(x: &Tensor<f64>) -> Result<Tensor<f64>> {
    x.mul(&x.detach())
}

fn main() -> Result<()> {
    let x = Tensor::<f64>::randn(&[3, 4], 0, Device::Cpu)?;
    let opts = GradcheckOptions::default();

    let report = gradcheck(|v| swish(&v[0]), std::slice::from_ref(&x), &opts)?;
    println!("swish: passed\n{report}");

    let report = gradcheck(|v| standardize(&v[0]), std::slice::from_ref(&x), &opts)?;
    println!("standardize: passed\n{report}");

    match gradcheck(|v| buggy_square(&v[0]), std::slice::from_ref(&x), &opts) {
        Ok(_) => panic!("the buggy gradient should have been caught"),
        Err(e) => println!("buggy_square: caught, as it should be:\n{e}"),
    }
    Ok(())
}
