//! How the error of a central difference depends on the step `eps`, in f64 and in f32.
//!
//! Run with `cargo run --release --example eps_sweep`.
//!
//! For f(x) = sum(tanh(x)) at x = 0.5 it prints, for eps = 1e-1 .. 1e-12, the absolute error
//! |(f(x + eps) - f(x - eps)) / (2 eps) - f'(x)|, with f'(x) from backward. The error first
//! falls as eps² (truncation), then rises as u/eps (rounding; u is the unit roundoff), with the
//! best eps near u^(1/3): about 6e-6 in f64 and 5e-3 in f32. Chapter 4 of the guide
//! (docs/guide/04-checking-gradients.md) shows this table.

use smallgrad::{Device, Float, Result, Tensor, no_grad};

/// f(x) = sum(tanh(x)).
fn f<T: Float>(x: &Tensor<T>) -> Result<Tensor<T>> {
    x.tanh()?.sum()
}

/// The central difference of `f` at the one-element point `x0` with step `eps`, and the
/// analytic derivative from backward, both in precision `T`, returned as f64.
fn central_vs_backward<T: Float>(x0: f64, eps: f64) -> Result<(f64, f64)> {
    let at = |v: T| Tensor::<T>::from_vec(vec![v], &[1], Device::Cpu);
    // x ± eps is rounded to T, exactly as a gradcheck working in T would do it.
    let (x, h) = (T::from_f64(x0), T::from_f64(eps));
    let fp = no_grad(|| f(&at(x + h)?)?.item())?;
    let fm = no_grad(|| f(&at(x - h)?)?.item())?;
    let numeric = (fp - fm) / (h + h);

    let leaf = at(x)?.requires_grad();
    f(&leaf)?.backward()?;
    let analytic = leaf.grad().expect("backward reached the leaf").item()?;
    Ok((numeric.to_f64(), analytic.to_f64()))
}

fn main() -> Result<()> {
    let x0 = 0.5;
    println!("f(x) = sum(tanh(x)) at x = {x0}; error = |central difference - backward|");
    println!("{:>7} {:>12} {:>12}", "eps", "f64 error", "f32 error");
    for k in 1..=12 {
        let eps = 10f64.powi(-k);
        let (n64, a64) = central_vs_backward::<f64>(x0, eps)?;
        let (n32, a32) = central_vs_backward::<f32>(x0, eps)?;
        println!("{eps:>7.0e} {:>12.1e} {:>12.1e}", (n64 - a64).abs(), (n32 - a32).abs());
    }
    Ok(())
}
