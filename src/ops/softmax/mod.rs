//! Softmax and log-softmax along one dim, numerically stable, with fused backward kernels.
//!
//! # Forward
//! `softmax(x)_j = e^(x_j) / sum_k e^(x_k)` along the dim. Since `softmax(x) = softmax(x - c)`
//! for any constant `c`, the kernel subtracts `m = max_k x_k` first: every exponent is then
//! <= 0 (no overflow) and one term is e^0 = 1, so the sum is >= 1 (no division by 0, no
//! log(0)). `log_softmax(x)_j = x_j - m - log(sum_k e^(x_k - m))`, never `log(softmax)`, which
//! would underflow to log(0) = -inf for very negative inputs.
//!
//! # Backward
//! With `g = dL/dy` and sums along the dim:
//! - softmax: `dy_j/dx_i = y_j (δ_ij - y_i)`, so
//!   `dL/dx_i = sum_j g_j y_j (δ_ij - y_i) = y_i g_i - y_i sum_j g_j y_j = y_i (g_i - <g, y>)`.
//! - log_softmax: `y_j = x_j - log sum_k e^(x_k)`, so `dy_j/dx_i = δ_ij - softmax_i =
//!   δ_ij - e^(y_i)`, and `dL/dx_i = g_i - e^(y_i) sum_j g_j`.
//!
//! Both need only the output `y` (saved) and one sum per column, so the backward is one fused
//! pass instead of a graph of exp / mul / sum nodes.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::{Backward, Saved, record};
use crate::dtype::Float;
use crate::shape::{check_dim, split_at_dim};
use crate::{Result, Tensor};
use cpu::SoftmaxParams;

struct SoftmaxBackward<T: Float> {
    /// The forward's output (softmax or log_softmax), detached.
    y: Saved<T>,
    p: SoftmaxParams,
}

impl<T: Float> Backward<T> for SoftmaxBackward<T> {
    fn name(&self) -> &'static str {
        if self.p.log { "log_softmax" } else { "softmax" }
    }

    fn backward(&self, g: &Tensor<T>, _inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let y = self.y.get(self.name())?;
        let dx = on_device!(g.device(),
            cuda => cuda::backward(y, g, self.p)?,
            cpu => Tensor::from_cpu(cpu::backward(&y.values()?, &g.values()?, self.p), g.shape().to_vec()));
        Ok(vec![Some(dx)])
    }
}

impl<T: Float> Tensor<T> {
    #[track_caller]
    fn softmax_impl(&self, dim: usize, log: bool) -> Result<Tensor<T>> {
        let op = if log { "log_softmax" } else { "softmax" };
        // As PyTorch, a 0-d tensor accepts dim 0 and is treated as one element.
        let (outer, size, inner) = if self.ndim() == 0 && dim == 0 {
            (1, 1, 1)
        } else {
            check_dim(op, dim, self.shape())?;
            split_at_dim(self.shape(), dim)
        };
        let p = SoftmaxParams {
            outer,
            size,
            inner,
            log,
        };
        let out = on_device!(self.device(),
            cuda => cuda::forward(self, p)?,
            cpu => Tensor::from_cpu(cpu::forward(&self.values()?, p), self.shape().to_vec()));
        record(out.clone(), &[self], SoftmaxBackward { y: Saved::new(&out), p })
    }

    /// Softmax along `dim`: `e^(x_j) / sum_k e^(x_k)`, computed stably (the max is subtracted
    /// first), as `torch.softmax(x, dim)`. Works on any dim of any rank; `Err` if `dim` is out
    /// of range. Backward: `dx = y * (g - sum(g * y))` along `dim`.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f32>::from_vec(vec![1., 1., 1000., 1000.], &[2, 2], Device::Cpu)?;
    /// assert_eq!(x.softmax(1)?.to_vec()?, vec![0.5, 0.5, 0.5, 0.5]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn softmax(&self, dim: usize) -> Result<Tensor<T>> {
        self.softmax_impl(dim, false)
    }

    /// Log-softmax along `dim`: `x_j - log sum_k e^(x_k)`, computed stably (never as
    /// `log(softmax)`), as `torch.log_softmax(x, dim)`. `Err` if `dim` is out of range.
    /// Backward: `dx = g - exp(y) * sum(g)` along `dim`.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f64>::from_vec(vec![0., 0., -1000.], &[3, 1], Device::Cpu)?;
    /// let y = x.log_softmax(0)?.to_vec()?;
    /// assert!((y[0] + 2f64.ln()).abs() < 1e-12 && y[2] == -1000.0 - 2f64.ln());
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn log_softmax(&self, dim: usize) -> Result<Tensor<T>> {
        self.softmax_impl(dim, true)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{assert_close, central_difference};
    use crate::{Device, Tensor};

    fn t(data: Vec<f64>, shape: &[usize]) -> Tensor<f64> {
        Tensor::from_vec(data, shape, Device::Cpu).unwrap()
    }

    /// Central-difference gradient of `f` at `x`, with plain loops.
    fn data(n: usize) -> Vec<f64> {
        (0..n).map(|i| ((i * 7 + 3) % 11) as f64 * 0.37 - 1.8).collect()
    }

    #[test]
    fn rows_sum_to_one_on_every_dim() {
        let shape = [2, 3, 4];
        let x = t(data(24), &shape);
        for dim in 0..3 {
            let s = x
                .softmax(dim)
                .unwrap()
                .sum_dim(&[dim], false)
                .unwrap()
                .to_vec()
                .unwrap();
            assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-12), "dim {dim}: {s:?}");
        }
        assert!(x.softmax(3).is_err() && x.log_softmax(3).is_err());
    }

    #[test]
    fn log_softmax_is_log_of_softmax_and_stable() {
        let x = t(data(24), &[2, 3, 4]);
        for dim in 0..3 {
            let a = x.log_softmax(dim).unwrap().to_vec().unwrap();
            let b = x.softmax(dim).unwrap().log().unwrap().to_vec().unwrap();
            assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-12));
        }
        let big = t(vec![1000.0, 0.0, -1000.0], &[3]);
        let y = big.log_softmax(0).unwrap().to_vec().unwrap();
        assert!(y.iter().all(|v| v.is_finite()) && y[0] == 0.0 && y[2] == -2000.0);
        let s = big.softmax(0).unwrap().to_vec().unwrap();
        assert_eq!(s, vec![1.0, 0.0, 0.0]);
        // 0-d tensor, dim 0, as PyTorch
        assert_eq!(t(vec![3.0], &[]).softmax(0).unwrap().item().unwrap(), 1.0);
    }

    #[test]
    fn backward_matches_central_differences() {
        let shape = [2, 3, 2];
        let w = data(12).iter().map(|v| v * 1.3 + 0.2).collect::<Vec<_>>();
        for log in [false, true] {
            for dim in 0..3 {
                let loss = |xs: &[f64]| {
                    let x = t(xs.to_vec(), &shape).requires_grad();
                    let y = if log { x.log_softmax(dim) } else { x.softmax(dim) }.unwrap();
                    (x, y.mul(&t(w.clone(), &shape)).unwrap().sum().unwrap())
                };
                let x0 = data(12);
                let (x, l) = loss(&x0);
                l.backward().unwrap();
                let an = x.grad().unwrap().to_vec().unwrap();
                let num = central_difference(|xs| loss(xs).1.item().unwrap(), &x0);
                assert_close(&format!("log {log} dim {dim}"), &an, &num, 1e-7);
            }
        }
    }
}
