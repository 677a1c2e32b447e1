//! L2 normalisation and cosine similarity along a dim, as `F.normalize` and
//! `F.cosine_similarity`: composite ops built from `norm_dim`, `clamp_min`, `div`, `mul` and
//! `sum_dim`, so their backward is the chain rule through those ops.
//!
//! # Where the eps goes (the two ops differ, as in PyTorch)
//! - `normalize(x, dim, eps) = x / clamp_min(||x||, eps)`. The clamp is part of the graph: where
//!   `||x|| < eps` the denominator is the constant `eps`, so the gradient is `I / eps`, and a
//!   zero vector gives output 0 with a finite gradient.
//! - `cosine_similarity(x1, x2, dim, eps) = sum((x1 / c(||x1||)) * (x2 / c(||x2||)), dim)` with
//!   `c(n) = max(n, eps)`, each norm clamped separately. Current PyTorch (ATen
//!   `cosine_similarity`) clamps a clone of the norm *in place under no_grad*, so the clamp
//!   changes the value but not the graph: the gradient flows through the norm as if it were
//!   unclamped (`d||x||/dx = x / ||x||`, 0 at a zero vector). [`clamp_min_straight_through`]
//!   reproduces exactly that: forward `max(n, eps)`, backward the identity.
//!
//! For ordinary inputs (norms above eps) cosine similarity is `x1·x2 / (||x1|| ||x2||)`, and
//! d cos / d x1 = `(x2_hat - cos * x1_hat) / ||x1||` with `x_hat = x / ||x||`.

use crate::autograd::{Backward, record};
use crate::dtype::Float;
use crate::shape::{broadcast_shapes, check_dim};
use crate::{Error, Result, Tensor};

fn check_eps(op: &'static str, eps: f64) -> Result<()> {
    if eps.is_nan() || eps < 0.0 {
        return Err(Error::invalid(op, format!("eps must be a number >= 0, got {eps}")));
    }
    Ok(())
}

/// Backward of [`clamp_min_straight_through`]: the identity.
struct StraightThroughBackward;

impl<T: Float> Backward<T> for StraightThroughBackward {
    fn name(&self) -> &'static str {
        "clamp_min_straight_through"
    }
    fn backward(&self, g: &Tensor<T>, _inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(g.clone())])
    }
}

/// `max(x, min)` in the forward, but the gradient passes through unchanged (as if no clamp).
///
/// Why this exists: PyTorch's `cosine_similarity` does `norm.clone().clamp_min_(eps)` under
/// `no_grad`, an in-place edit invisible to autograd. The regular [`Tensor::clamp_min`] would
/// zero the gradient below `min`, which differs from PyTorch for tiny norms; this op gives the
/// clamped value with the identity gradient, i.e. the same value and gradient as PyTorch.
#[track_caller]
pub(crate) fn clamp_min_straight_through<T: Float>(x: &Tensor<T>, min: T) -> Result<Tensor<T>> {
    let out = on_device!(x.device(),
    cuda => crate::ops::elementwise::cuda::unary(crate::ops::elementwise::unary::ClampMin(min), x)?,
    cpu => {
        let data: Vec<T> = x.values()?.iter().map(|&v| if v < min { min } else { v }).collect();
        Tensor::from_cpu(data, x.shape().to_vec())
    });
    record(out, &[x], StraightThroughBackward)
}

impl<T: Float> Tensor<T> {
    /// L2-normalises along `dim`: `x / max(||x||_2, eps)`, as `F.normalize(x, p=2, dim, eps)`
    /// (PyTorch's default eps is 1e-12). A zero vector gives 0. `Err` if `dim` is out of range
    /// or `eps` is NaN or negative.
    /// Backward: `(g - x_hat * <g, x_hat>) / ||x||` where `||x|| >= eps`, `g / eps` below
    /// (the clamp is in the graph).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f32>::from_vec(vec![3., 4., 0., 0.], &[2, 2], Device::Cpu)?;
    /// assert_eq!(x.normalize(1, 1e-12)?.to_vec()?, vec![0.6, 0.8, 0., 0.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn normalize(&self, dim: usize, eps: f64) -> Result<Tensor<T>> {
        check_dim("normalize", dim, self.shape())?;
        check_eps("normalize", eps)?;
        let n = self.norm_dim(dim, true)?.clamp_min(T::from_f64(eps))?;
        self.div(&n)
    }

    /// Cosine similarity along `dim`, as current `F.cosine_similarity(x1, x2, dim, eps)`
    /// (PyTorch's default eps is 1e-8): the inputs are broadcast to a common shape, each is
    /// divided by its own norm clamped at `eps`, and the products are summed over `dim`
    /// (which is removed). A zero vector gives 0. `Err` if the shapes do not broadcast, `dim`
    /// is out of range for the broadcast shape, or `eps` is NaN or negative.
    /// Backward (norms above eps): d/dx1 = `(x2_hat - cos * x1_hat) / ||x1||`, and likewise
    /// for x2.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f64>::from_vec(vec![1., 0., 2., 2.], &[2, 2], Device::Cpu)?;
    /// let b = Tensor::<f64>::from_vec(vec![1., 1.], &[2], Device::Cpu)?;   // broadcast
    /// let c = a.cosine_similarity(&b, 1, 1e-8)?.to_vec()?;
    /// assert!((c[0] - 0.5f64.sqrt()).abs() < 1e-12 && (c[1] - 1.0).abs() < 1e-12);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn cosine_similarity(&self, other: &Tensor<T>, dim: usize, eps: f64) -> Result<Tensor<T>> {
        const OP: &str = "cosine_similarity";
        self.same_device(OP, other)?;
        let shape = broadcast_shapes(OP, self.shape(), other.shape())?;
        check_dim(OP, dim, &shape)?;
        check_eps(OP, eps)?;
        let expand = |t: &Tensor<T>| {
            if t.shape() == shape.as_slice() {
                Ok(t.clone())
            } else {
                t.expand(&shape)
            }
        };
        let (x1, x2) = (expand(self)?, expand(other)?);
        let eps = T::from_f64(eps);
        let n1 = clamp_min_straight_through(&x1.norm_dim(dim, true)?, eps)?;
        let n2 = clamp_min_straight_through(&x2.norm_dim(dim, true)?, eps)?;
        x1.div(&n1)?.mul(&x2.div(&n2)?)?.sum_dim(&[dim], false)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};

    fn t(data: Vec<f64>, shape: &[usize]) -> Tensor<f64> {
        Tensor::from_vec(data, shape, Device::Cpu).unwrap()
    }

    #[test]
    fn normalize_values_and_small_norm_gradient() {
        let x = t(vec![3.0, 4.0, 1e-14, 0.0], &[2, 2]).requires_grad();
        let y = x.normalize(1, 1e-12).unwrap();
        let v = y.to_vec().unwrap();
        assert!((v[0] - 0.6).abs() < 1e-15 && (v[1] - 0.8).abs() < 1e-15);
        assert!((v[2] - 1e-2).abs() < 1e-15 && v[3] == 0.0);
        y.sum().unwrap().backward().unwrap();
        let g = x.grad().unwrap().to_vec().unwrap();
        // row 0: (1 - x_hat * sum(x_hat)) / 5 ; row 1: below eps, I / eps
        assert!((g[0] - (1.0 - 0.6 * 1.4) / 5.0).abs() < 1e-12 && (g[1] - (1.0 - 0.8 * 1.4) / 5.0).abs() < 1e-12);
        assert!(g[2..].iter().all(|v| (v / 1e12 - 1.0).abs() < 1e-12), "{g:?}");
        assert!(x.normalize(2, 1e-12).is_err() && x.normalize(1, -1.0).is_err());
    }

    #[test]
    fn cosine_of_zero_vector_is_zero_with_finite_gradient() {
        let a = t(vec![0.0, 0.0, 0.0, 1.0, 2.0, 2.0], &[2, 3]).requires_grad();
        let b = t(vec![1.0, 2.0, 3.0, 2.0, 0.0, 1.0], &[2, 3]).requires_grad();
        let c = a.cosine_similarity(&b, 1, 1e-8).unwrap();
        let v = c.to_vec().unwrap();
        assert_eq!(v[0], 0.0);
        assert!((v[1] - 4.0 / (3.0 * 5f64.sqrt())).abs() < 1e-12);
        c.sum().unwrap().backward().unwrap();
        let ga = a.grad().unwrap().to_vec().unwrap();
        let gb = b.grad().unwrap().to_vec().unwrap();
        assert!(ga.iter().chain(&gb).all(|g| g.is_finite()));
        // PyTorch: at x1 = 0 the norm's gradient is 0, so d/dx1 = x2 / (eps * ||x2||); b gets 0.
        let nb = 14f64.sqrt();
        for j in 0..3 {
            assert!((ga[j] - b.to_vec().unwrap()[j] / (1e-8 * nb)).abs() < 1e-3);
            assert_eq!(gb[j], 0.0);
        }
    }

    #[test]
    fn cosine_gradient_is_straight_through_the_clamp() {
        // ||x1|| = 5e-9 < eps: value uses eps, gradient uses x1 / ||x1|| (PyTorch's no_grad clamp).
        let (x1v, x2v) = (vec![3e-9, 4e-9], vec![1.0, 0.0]);
        let x1 = t(x1v.clone(), &[2]).requires_grad();
        let c = x1.cosine_similarity(&t(x2v, &[2]), 0, 1e-8).unwrap();
        assert!((c.item().unwrap() - 0.3).abs() < 1e-12); // 3e-9 / 1e-8
        c.backward().unwrap();
        let g = x1.grad().unwrap().to_vec().unwrap();
        // d/dx1 [x1 . e0 / c(n)] with dc/dn = 1: e0 / c - (x1_0 / c^2) * x1 / n
        let (n, cl) = (5e-9, 1e-8);
        let want = [
            1.0 / cl - x1v[0] / (cl * cl) * x1v[0] / n,
            -x1v[0] / (cl * cl) * x1v[1] / n,
        ];
        assert!(
            (g[0] - want[0]).abs() < 1e-3 && (g[1] - want[1]).abs() < 1e-3,
            "{g:?} vs {want:?}"
        );
    }

    #[test]
    fn cosine_rejects_bad_arguments() {
        let a = t(vec![1.0; 6], &[2, 3]);
        assert!(a.cosine_similarity(&t(vec![1.0; 4], &[2, 2]), 1, 1e-8).is_err());
        assert!(a.cosine_similarity(&a, 2, 1e-8).is_err());
        assert!(a.cosine_similarity(&a, 1, f64::NAN).is_err());
        // broadcasting [2, 3] with [3] and with [2, 1]
        assert_eq!(
            a.cosine_similarity(&t(vec![1.0; 3], &[3]), 1, 1e-8).unwrap().shape(),
            &[2]
        );
        assert_eq!(
            a.cosine_similarity(&t(vec![1.0; 2], &[2, 1]), 0, 1e-8).unwrap().shape(),
            &[3]
        );
    }
}
