//! Gradient clipping by the global L2 norm, as `torch.nn.utils.clip_grad_norm_`:
//!
//! ```text
//! total = sqrt(sum over parameters p with a gradient, sum over elements of g^2)
//! coef  = max_norm / (total + 1e-6)
//! if coef < 1:  g <- g * coef   for every gradient
//! ```
//!
//! On the CPU the sum of squares is accumulated in `f64` in a fixed order (fixed chunks,
//! combined in order), so the result does not depend on the number of threads. With every
//! gradient on one GPU, it is accumulated there in the gradients' type (deterministic device
//! sums), and the factor and the scaling stay on the device too: clipping waits for nothing, and
//! reading the returned norm is its one synchronisation.

use crate::autograd::no_grad;
use crate::backend::cpu::{self, CHUNK, PAR_THRESHOLD};
use crate::dtype::Float;
use crate::tensor::Tensor;
use crate::{Error, Result};
use rayon::prelude::*;

/// Sum of squares of a slice in `f64`, deterministic: fixed chunks summed in parallel for large
/// inputs, then combined in chunk order.
fn sum_squares<T: Float>(x: &[T]) -> f64 {
    let seq = |x: &[T]| -> f64 {
        let mut acc = [0.0f64; 4];
        let chunks = x.chunks_exact(4);
        let rest = chunks.remainder();
        for c in chunks {
            for k in 0..4 {
                let v = c[k].to_f64();
                acc[k] += v * v;
            }
        }
        let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for &r in rest {
            s += r.to_f64() * r.to_f64();
        }
        s
    };
    if x.len() >= PAR_THRESHOLD {
        let parts: Vec<f64> = x.par_chunks(CHUNK).map(seq).collect();
        parts.iter().sum()
    } else {
        seq(x)
    }
}

/// Clips the gradients of `params` so that their global L2 norm is at most about `max_norm`
/// (as `torch.nn.utils.clip_grad_norm_` with `norm_type = 2`), and returns the total norm
/// *before* clipping.
///
/// The norm is taken over all gradients together (parameters without a gradient are skipped).
/// If `max_norm / (total + 1e-6) < 1`, every gradient is replaced by itself times that factor
/// (note the `1e-6`: as in PyTorch, a norm just below `max_norm` is still scaled by a factor
/// a hair below 1). A NaN or infinite total norm is returned as is and, as in PyTorch, turns
/// the gradients into NaN / zero; check the returned value to skip such steps.
///
/// `Err` if `max_norm` is negative or NaN.
///
/// ```
/// use smallgrad::{Tensor, Device};
/// use smallgrad::optim::clip_grad_norm;
/// let w = Tensor::<f64>::zeros(&[2], Device::Cpu)?.requires_grad();
/// let c = Tensor::from_vec(vec![3.0, 4.0], &[2], Device::Cpu)?;
/// w.mul(&c)?.sum()?.backward()?;                 // grad = [3, 4], norm 5
/// let total = clip_grad_norm(std::slice::from_ref(&w), 1.0)?;
/// assert_eq!(total, 5.0);
/// let g = w.grad().unwrap().to_vec()?;           // scaled by 1 / (5 + 1e-6)
/// assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub fn clip_grad_norm<T: Float>(params: &[Tensor<T>], max_norm: f64) -> Result<f64> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::invalid(
            "clip_grad_norm",
            format!("max_norm must be >= 0, got {max_norm}"),
        ));
    }
    let grads: Vec<(&Tensor<T>, Tensor<T>)> = params.iter().filter_map(|p| p.grad().map(|g| (p, g))).collect();
    if let Some(total) = clip_on_one_gpu(&grads, max_norm)? {
        return Ok(total.item()?.to_f64()); // the one read of the GPU path
    }
    let mut total_sq = 0.0f64;
    for (_, g) in &grads {
        total_sq += on_device!(g.device(),
            cuda => no_grad(|| g.mul(g)?.sum()?.item())?.to_f64(),
            cpu => sum_squares(&g.values()?));
    }
    let total = total_sq.sqrt();
    let coef = max_norm / (total + 1e-6);
    // `coef < 1` is false for NaN, which PyTorch's clamp propagates into the gradients.
    if coef < 1.0 || coef.is_nan() {
        let c = T::from_f64(coef);
        no_grad(|| -> Result<()> {
            for (p, g) in &grads {
                let scaled = on_device!(g.device(),
                    cuda => g.mul_scalar(c)?,
                    cpu => Tensor::from_cpu(cpu::map(&g.values()?, |v| v * c), g.shape().to_vec()));
                p.set_grad(Some(scaled));
            }
            Ok(())
        })?;
    }
    Ok(total)
}

/// The GPU path, when every gradient is on the same GPU (`None` otherwise): the norm, the
/// factor and the scaling all stay on the device (sums of squares in the gradients' type), so
/// clipping queues kernels and waits for nothing; the caller reads the returned total norm.
/// As on the CPU, the gradients are scaled by `min(coef, 1)` (NaN stays NaN); a factor of
/// exactly 1 leaves them bit for bit as they were.
fn clip_on_one_gpu<T: Float>(grads: &[(&Tensor<T>, Tensor<T>)], max_norm: f64) -> Result<Option<Tensor<T>>> {
    let Some((_, first)) = grads.first() else {
        return Ok(None);
    };
    let dev = first.device();
    if dev == crate::Device::Cpu || grads.iter().any(|(_, g)| g.device() != dev) {
        return Ok(None);
    }
    no_grad(|| {
        let mut total_sq = Tensor::zeros(&[], dev)?;
        for (_, g) in grads {
            total_sq = total_sq.add(&g.mul(g)?.sum()?)?;
        }
        let total = total_sq.sqrt()?;
        let coef = Tensor::full(&[], T::from_f64(max_norm), dev)?.div(&total.add_scalar(T::from_f64(1e-6))?)?;
        // min(coef, 1) = -max(-coef, -1); NaN passes through clamp_min.
        let coef = coef.neg()?.clamp_min(-T::ONE)?.neg()?;
        for (p, g) in grads {
            p.set_grad(Some(g.mul(&coef)?));
        }
        Ok(Some(total))
    })
}
