//! Matrix multiplication: `[m, k] x [k, n]`, batched `[b, m, k] x [b, k, n]`, and
//! `[b, m, k] x [k, n]` (the right-hand matrix broadcast over the batch), as `torch.matmul`
//! does for these ranks. 1-D operands and ranks above 3 are not supported (an `Err`).
//!
//! # Backward
//! `C = A·B` means `C[i,j] = sum_p A[i,p] B[p,j]`, so `dC[i,j]/dA[i,p] = B[p,j]` and
//! `dC[i,j]/dB[p,j] = A[i,p]`. Summing over the outputs each element touches:
//! - `dL/dA[i,p] = sum_j dL/dC[i,j] B[p,j]`, i.e. `dA = dC · B^T`;
//! - `dL/dB[p,j] = sum_i A[i,p] dL/dC[i,j]`, i.e. `dB = A^T · dC`.
//!
//! Batched, these hold matrix by matrix. When B is broadcast over the batch, every batch used
//! the same B, so its gradient is the sum over the batch, `dB = sum_b A_b^T · dC_b`. Stacking
//! the batch's rows, `A` viewed as `[(b*m), k]` and `dC` as `[(b*m), n]`, that sum is exactly
//! one product `A^T · dC`: the broadcast case is an ordinary 2-D matmul with `b*m` rows, and
//! both its forward and backward are computed that way.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::{Backward, Saved, record};
use crate::dtype::Float;
use crate::{Error, Result, Tensor};
use cpu::MatmulDims;

const OP: &str = "matmul";

struct MatmulBackward<T: Float> {
    dims: MatmulDims,
    /// Saved when A needs a gradient (dA = dC · B^T).
    b: Option<Saved<T>>,
    /// Saved when B needs a gradient (dB = A^T · dC).
    a: Option<Saved<T>>,
}

impl<T: Float> MatmulBackward<T> {
    /// The saved sizes, with the kernels chosen on the thread running the backward.
    fn dims_now(&self) -> MatmulDims {
        MatmulDims {
            kernels: crate::cpu::kernels(),
            ..self.dims
        }
    }
}

impl<T: Float> Backward<T> for MatmulBackward<T> {
    fn name(&self) -> &'static str {
        OP
    }

    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let (a_in, b_in) = (&inputs[0], &inputs[1]);
        let ga = match (&self.b, a_in.is_requires_grad()) {
            (Some(b), true) => {
                let b = b.get(OP)?;
                Some(on_device!(g.device(),
                cuda => cuda::grad_a(self.dims, g, b, a_in.shape())?,
                cpu => {
                    let data = cpu::grad_a(self.dims_now(), &g.values()?, &b.values()?);
                    Tensor::from_cpu(data, a_in.shape().to_vec())
                }))
            }
            _ => None,
        };
        let gb = match (&self.a, b_in.is_requires_grad()) {
            (Some(a), true) => {
                let a = a.get(OP)?;
                Some(on_device!(g.device(),
                cuda => cuda::grad_b(self.dims, a, g, b_in.shape())?,
                cpu => {
                    let data = cpu::grad_b(self.dims_now(), &a.values()?, &g.values()?);
                    Tensor::from_cpu(data, b_in.shape().to_vec())
                }))
            }
            _ => None,
        };
        Ok(vec![ga, gb])
    }
}

impl<T: Float> Tensor<T> {
    /// Matrix product, as `torch.matmul` for these ranks:
    /// - `[m, k] x [k, n] -> [m, n]`;
    /// - `[b, m, k] x [b, k, n] -> [b, m, n]` (one product per batch entry);
    /// - `[b, m, k] x [k, n] -> [b, m, n]` (the right-hand matrix is shared by the batch).
    ///
    /// 1-D operands, ranks above 3, a rank-2 left operand with a rank-3 right one, unequal
    /// batch sizes (no batch broadcasting besides the case above) and mismatched inner
    /// dimensions are an `Err`.
    ///
    /// Derivative: `dA = dC · B^T`, `dB = A^T · dC` (summed over the batch when B is shared).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3], Device::Cpu)?;
    /// let b = Tensor::<f32>::from_vec(vec![1., 0., 0., 1., 1., 1.], &[3, 2], Device::Cpu)?;
    /// let c = a.matmul(&b)?;
    /// assert_eq!(c.shape(), &[2, 2]);
    /// assert_eq!(c.to_vec()?, vec![4., 5., 10., 11.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn matmul(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.same_device(OP, other)?;
        let (sa, sb) = (self.shape(), other.shape());
        let unsupported = || {
            Error::shape(
                OP,
                format!(
                    "unsupported ranks: {sa:?} x {sb:?} (expected [m, k] x [k, n], [b, m, k] x \
                     [b, k, n] or [b, m, k] x [k, n]; 1-D operands and other ranks are not \
                     supported: reshape them first)"
                ),
            )
        };
        // (batch, m, k) of the left operand, (batch or None if shared, k, n) of the right.
        let (batch, m, k, out_shape) = match (sa.len(), sb.len()) {
            (2, 2) => (1, sa[0], sa[1], vec![sa[0], sb[1]]),
            (3, 2) | (3, 3) => (sa[0], sa[1], sa[2], vec![sa[0], sa[1], *sb.last().unwrap_or(&0)]),
            _ => return Err(unsupported()),
        };
        let (kb, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if sb.len() == 3 && sb[0] != batch {
            return Err(Error::shape(
                OP,
                format!(
                    "batch sizes differ: {sa:?} x {sb:?} (expected lhs.shape[0] == rhs.shape[0]; \
                     batch broadcasting is not supported)"
                ),
            ));
        }
        if kb != k {
            let (li, ri) = (sa.len() - 1, sb.len() - 2);
            return Err(Error::shape(
                OP,
                format!(
                    "inner dimensions differ: {sa:?} x {sb:?} (expected lhs.shape[{li}] == \
                     rhs.shape[{ri}])"
                ),
            ));
        }
        // The output must be addressable; the inputs already are.
        batch
            .checked_mul(m)
            .and_then(|v| v.checked_mul(n))
            .ok_or_else(|| Error::shape(OP, format!("output of {sa:?} x {sb:?} has too many elements")))?;
        // A shared right-hand matrix: fold the batch into the rows (see the module docs).
        let dims = if sb.len() == 2 {
            MatmulDims {
                batch: 1,
                m: batch * m,
                k,
                n,
                kernels: crate::cpu::kernels(),
            }
        } else {
            MatmulDims {
                batch,
                m,
                k,
                n,
                kernels: crate::cpu::kernels(),
            }
        };
        let out = on_device!(self.device(),
            cuda => cuda::forward(dims, self, other, &out_shape)?,
            cpu => Tensor::from_cpu(cpu::forward(dims, &self.values()?, &other.values()?), out_shape));
        let bw = MatmulBackward {
            dims,
            b: self.is_requires_grad().then(|| Saved::new(other)),
            a: other.is_requires_grad().then(|| Saved::new(self)),
        };
        record(out, &[self, other], bw)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{assert_close, central_difference};
    use crate::{Device, Tensor};

    fn t(data: Vec<f64>, shape: &[usize]) -> Tensor<f64> {
        Tensor::from_vec(data, shape, Device::Cpu).unwrap()
    }

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    /// Central-difference gradient of `sum(w * matmul(a, b))` w.r.t. input `which`.
    fn numeric(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize], w: &[f64], which: usize) -> Vec<f64> {
        let loss = |a: &[f64], b: &[f64]| -> f64 {
            let y = t(a.to_vec(), sa).matmul(&t(b.to_vec(), sb)).unwrap().to_vec().unwrap();
            y.iter().zip(w).map(|(y, w)| y * w).sum()
        };
        if which == 0 {
            central_difference(|p| loss(p, b), a)
        } else {
            central_difference(|p| loss(a, p), b)
        }
    }

    fn check_grads(sa: &[usize], sb: &[usize], seed: u64) {
        let a = Tensor::<f64>::randn(sa, seed, Device::Cpu).unwrap();
        let b = Tensor::<f64>::randn(sb, seed + 1, Device::Cpu).unwrap();
        let (av, bv) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let (a, b) = (a.requires_grad(), b.requires_grad());
        let c = a.matmul(&b).unwrap();
        let w = Tensor::<f64>::randn(c.shape(), seed + 2, Device::Cpu).unwrap();
        c.mul(&w).unwrap().sum().unwrap().backward().unwrap();
        let wv = w.to_vec().unwrap();
        for (which, got) in [(0, a.grad().unwrap()), (1, b.grad().unwrap())] {
            let want = numeric(&av, sa, &bv, sb, &wv, which);
            assert_close(
                &format!("{sa:?}x{sb:?} input {which}"),
                &got.to_vec().unwrap(),
                &want,
                1e-6,
            );
        }
    }

    #[test]
    fn forward_all_three_cases() {
        let (bsz, m, k, n) = (3, 2, 4, 5);
        let a = Tensor::<f64>::randn(&[bsz, m, k], 1, Device::Cpu).unwrap();
        let b3 = Tensor::<f64>::randn(&[bsz, k, n], 2, Device::Cpu).unwrap();
        let b2 = Tensor::<f64>::randn(&[k, n], 3, Device::Cpu).unwrap();
        let (av, b3v, b2v) = (a.to_vec().unwrap(), b3.to_vec().unwrap(), b2.to_vec().unwrap());
        let c3 = a.matmul(&b3).unwrap();
        let c2 = a.matmul(&b2).unwrap();
        assert_eq!(c3.shape(), &[bsz, m, n]);
        assert_eq!(c2.shape(), &[bsz, m, n]);
        let (c3v, c2v) = (c3.to_vec().unwrap(), c2.to_vec().unwrap());
        for i in 0..bsz {
            let ai = &av[i * m * k..(i + 1) * m * k];
            let want3 = naive(ai, &b3v[i * k * n..(i + 1) * k * n], m, k, n);
            let want2 = naive(ai, &b2v, m, k, n);
            for j in 0..m * n {
                assert!((c3v[i * m * n + j] - want3[j]).abs() < 1e-12);
                assert!((c2v[i * m * n + j] - want2[j]).abs() < 1e-12);
            }
        }
        let a2 = t(av[..m * k].to_vec(), &[m, k]);
        let c = a2.matmul(&b2).unwrap().to_vec().unwrap();
        assert_eq!(c, c2v[..m * n].to_vec());
    }

    #[test]
    fn backward_matches_central_differences() {
        check_grads(&[3, 4], &[4, 2], 10);
        check_grads(&[2, 3, 4], &[2, 4, 5], 20);
        check_grads(&[3, 2, 4], &[4, 3], 30);
        check_grads(&[1, 1], &[1, 1], 40);
    }

    #[test]
    fn large_batched_is_deterministic_and_correct() {
        // Large enough to take the parallel path over the batch.
        let (bsz, m, k, n) = (8, 33, 40, 31);
        let a = Tensor::<f64>::randn(&[bsz, m, k], 5, Device::Cpu).unwrap();
        let b = Tensor::<f64>::randn(&[bsz, k, n], 6, Device::Cpu).unwrap();
        let c1 = a.matmul(&b).unwrap().to_vec().unwrap();
        let c2 = a.matmul(&b).unwrap().to_vec().unwrap();
        assert_eq!(c1, c2);
        let (av, bv) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let want = naive(&av[m * k * 7..], &bv[k * n * 7..], m, k, n);
        for (x, y) in c1[m * n * 7..].iter().zip(&want) {
            assert!((x - y).abs() < 1e-10);
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let z = |s: &[usize]| Tensor::<f32>::zeros(s, Device::Cpu).unwrap();
        assert!(z(&[2, 3]).matmul(&z(&[4, 5])).is_err());
        assert!(z(&[3]).matmul(&z(&[3])).is_err());
        assert!(z(&[2, 3]).matmul(&z(&[3])).is_err());
        assert!(z(&[2, 3]).matmul(&z(&[2, 3, 4])).is_err());
        assert!(z(&[2, 3, 4]).matmul(&z(&[3, 4, 5])).is_err());
        assert!(z(&[2, 3, 4]).matmul(&z(&[2, 5, 6])).is_err());
        assert!(z(&[1, 2, 3, 4]).matmul(&z(&[1, 2, 4, 3])).is_err());
        let msg = z(&[2, 3]).matmul(&z(&[4, 5])).unwrap_err().to_string();
        assert!(
            msg.contains("matmul") && msg.contains("[2, 3]") && msg.contains("[4, 5]"),
            "{msg}"
        );
        // Empty dimensions are fine: a zero inner dimension gives zeros.
        assert_eq!(z(&[2, 0]).matmul(&z(&[0, 3])).unwrap().to_vec().unwrap(), vec![0.0; 6]);
    }
}

#[cfg(test)]
mod determinism {
    use crate::{Device, Tensor};

    fn run(threads: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let a = Tensor::<f32>::randn(&[6, 37, 50], 1, Device::Cpu)
                .unwrap()
                .requires_grad();
            let b = Tensor::<f32>::randn(&[6, 50, 29], 2, Device::Cpu)
                .unwrap()
                .requires_grad();
            let c = a.matmul(&b).unwrap();
            c.sum().unwrap().backward().unwrap();
            (
                c.to_vec().unwrap(),
                a.grad().unwrap().to_vec().unwrap(),
                b.grad().unwrap().to_vec().unwrap(),
            )
        })
    }

    #[test]
    fn bit_identical_across_thread_counts() {
        assert_eq!(run(1), run(3));
    }
}
