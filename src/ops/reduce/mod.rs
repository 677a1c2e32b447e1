//! Reductions: sum, mean (whole tensor or over dims), max along a dim, argmax, `sum_to` (the
//! backward of broadcasting) and the L2 norm along a dim.
//!
//! # Backward
//! - sum over a set of dims: every input element contributed once to its output element, so
//!   dL/dx = dL/dy broadcast back (expanded) over the reduced dims.
//! - mean: the same, divided by the number of elements reduced.
//! - max along a dim: y = x[argmax], so the gradient goes to the argmax position only (the
//!   first maximum on ties, the subgradient PyTorch also uses), 0 elsewhere.
//! - sum_to(shape): a sum over the broadcast dims, so its backward is expand back.
//! - L2 norm n = sqrt(sum x²): dn/dx = x / n; at n = 0 the subgradient 0 is used (as PyTorch's
//!   `linalg.vector_norm`), so a zero vector gets no NaN.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::{Backward, Saved, record};
use crate::dtype::Float;
use crate::shape::{broadcast_shapes, check_dim};
use crate::{Error, Result, Tensor};

/// `keepdim` form of `shape` reduced over `mask`.
fn kept_shape(shape: &[usize], mask: &[bool]) -> Vec<usize> {
    shape.iter().zip(mask).map(|(&s, &m)| if m { 1 } else { s }).collect()
}

fn squeezed_shape(shape: &[usize], mask: &[bool]) -> Vec<usize> {
    shape.iter().zip(mask).filter(|(_, m)| !**m).map(|(&s, _)| s).collect()
}

fn dims_mask(op: &'static str, dims: &[usize], shape: &[usize]) -> Result<Vec<bool>> {
    let mut mask = vec![false; shape.len()];
    if dims.is_empty() {
        // As PyTorch: an empty dim list reduces over every dim.
        mask.iter_mut().for_each(|m| *m = true);
    }
    for &d in dims {
        check_dim(op, d, shape)?;
        if std::mem::replace(&mut mask[d], true) {
            return Err(Error::invalid(
                op,
                format!("dim {d} appears more than once in {dims:?}"),
            ));
        }
    }
    Ok(mask)
}

struct SumBackward {
    /// Multiplier applied to the gradient: 1 for sum, 1/count for mean.
    scale: f64,
    /// The gradient's shape with reduced dims kept as 1.
    kept: Vec<usize>,
    name: &'static str,
}

impl<T: Float> Backward<T> for SumBackward {
    fn name(&self) -> &'static str {
        self.name
    }
    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let g = g.reshape(&self.kept)?;
        let g = if self.scale != 1.0 {
            g.mul_scalar(T::from_f64(self.scale))?
        } else {
            g
        };
        Ok(vec![Some(g.expand(inputs[0].shape())?)])
    }
}

/// For each output element of `max_dim`, the flat index of its (first) maximum in the input,
/// where the forward's device keeps it (the GPU's never cross to the host).
enum Argmax {
    Host(Vec<usize>),
    #[cfg(feature = "cuda")]
    Dev(crate::backend::cuda::DevBuf<i64>),
}

struct MaxBackward {
    argmax: Argmax,
}

impl<T: Float> Backward<T> for MaxBackward {
    fn name(&self) -> &'static str {
        "max_dim"
    }
    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let dx = match &self.argmax {
            #[cfg(feature = "cuda")]
            Argmax::Dev(idx) => cuda::scatter(g, idx, inputs[0].shape())?,
            Argmax::Host(idx) => {
                let mut dx = crate::backend::cpu::pool::zeroed(inputs[0].numel());
                for (&i, &gv) in idx.iter().zip(g.values()?.iter()) {
                    dx[i] += gv;
                }
                Tensor::from_cpu(dx, inputs[0].shape().to_vec())
            }
        };
        Ok(vec![Some(dx)])
    }
}

struct NormBackward<T: Float> {
    x: Saved<T>,
    norm: Saved<T>,
    dim: usize,
}

impl<T: Float> Backward<T> for NormBackward<T> {
    fn name(&self) -> &'static str {
        "norm_dim"
    }
    fn backward(&self, g: &Tensor<T>, _inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let (x, n) = (self.x.get("norm_dim")?, self.norm.get("norm_dim")?);
        let dx = on_device!(g.device(),
        cuda => cuda::norm_backward(x, self.dim, n, g)?,
        cpu => {
            let dx = cpu::norm_backward(&x.values()?, x.shape(), self.dim, &n.values()?, &g.values()?);
            Tensor::from_cpu(dx, x.shape().to_vec())
        });
        Ok(vec![Some(dx)])
    }
}

impl<T: Float> Tensor<T> {
    #[track_caller]
    fn reduce_sum(&self, mask: Vec<bool>, keepdim: bool, mean: bool, name: &'static str) -> Result<Tensor<T>> {
        let count: usize = self
            .shape()
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(s, _)| *s)
            .product();
        let scale = if mean { 1.0 / count as f64 } else { 1.0 };
        let kept = kept_shape(self.shape(), &mask);
        let shape = if keepdim {
            kept.clone()
        } else {
            squeezed_shape(self.shape(), &mask)
        };
        let out = on_device!(self.device(),
        cuda => cuda::sum_dims(self, &mask, T::from_f64(scale), &shape)?,
        cpu => {
            let mut data = cpu::sum_dims(&self.values()?, self.shape(), &mask);
            if mean {
                let s = T::from_f64(scale);
                // count = 0 gives NaN (0 * inf), as PyTorch's mean of an empty tensor.
                data.iter_mut().for_each(|v| *v *= s);
            }
            Tensor::from_cpu(data, shape)
        });
        record(out, &[self], SumBackward { scale, kept, name })
    }

    /// Sum of all elements, as a scalar tensor (shape `[]`). Backward: dL/dx = dL/dy everywhere.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3.], &[3], Device::Cpu)?;
    /// assert_eq!(a.sum()?.item()?, 6.0);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn sum(&self) -> Result<Tensor<T>> {
        self.reduce_sum(vec![true; self.ndim()], false, false, "sum")
    }

    /// Mean of all elements, as a scalar tensor. Backward: dL/dx = dL/dy / numel.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3.], &[3], Device::Cpu)?;
    /// assert_eq!(a.mean()?.item()?, 2.0);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn mean(&self) -> Result<Tensor<T>> {
        self.reduce_sum(vec![true; self.ndim()], false, true, "mean")
    }

    /// Sum over `dims` (an empty list means all dims, as PyTorch); `keepdim` keeps them as size
    /// 1. Backward: the gradient expanded back over the reduced dims.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2], Device::Cpu)?;
    /// assert_eq!(a.sum_dim(&[0], false)?.to_vec()?, vec![4., 6.]);
    /// assert_eq!(a.sum_dim(&[1], true)?.shape(), &[2, 1]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn sum_dim(&self, dims: &[usize], keepdim: bool) -> Result<Tensor<T>> {
        let mask = dims_mask("sum_dim", dims, self.shape())?;
        self.reduce_sum(mask, keepdim, false, "sum_dim")
    }

    /// Mean over `dims` (empty = all). Backward: the gradient expanded back, divided by the
    /// number of elements averaged.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2], Device::Cpu)?;
    /// assert_eq!(a.mean_dim(&[1], false)?.to_vec()?, vec![1.5, 3.5]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn mean_dim(&self, dims: &[usize], keepdim: bool) -> Result<Tensor<T>> {
        let mask = dims_mask("mean_dim", dims, self.shape())?;
        self.reduce_sum(mask, keepdim, true, "mean_dim")
    }

    /// Maximum along `dim` (values only). Backward: the gradient goes to the first maximum.
    /// `Err` on an empty dim.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 5., 3., 2.], &[2, 2], Device::Cpu)?;
    /// assert_eq!(a.max_dim(1, false)?.to_vec()?, vec![5., 3.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn max_dim(&self, dim: usize, keepdim: bool) -> Result<Tensor<T>> {
        check_dim("max_dim", dim, self.shape())?;
        if self.shape()[dim] == 0 {
            return Err(Error::shape(
                "max_dim",
                format!("dim {dim} of {:?} is empty", self.shape()),
            ));
        }
        let mut mask = vec![false; self.ndim()];
        mask[dim] = true;
        let shape = if keepdim {
            kept_shape(self.shape(), &mask)
        } else {
            squeezed_shape(self.shape(), &mask)
        };
        let (out, argmax) = on_device!(self.device(),
        cuda => {
            let (values, idx) = cuda::max_dim(self, dim, &shape)?;
            (values, Argmax::Dev(idx))
        },
        cpu => {
            let (values, argmax) = cpu::max_dim(&self.values()?, self.shape(), dim);
            (Tensor::from_cpu(values, shape), Argmax::Host(argmax))
        });
        record(out, &[self], MaxBackward { argmax })
    }

    /// Index of the (first) maximum along `dim`, for each position of the other dims in
    /// row-major order. No gradient. `Err` on an empty dim.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 5., 3., 2.], &[2, 2], Device::Cpu)?;
    /// assert_eq!(a.argmax(1)?, vec![1, 0]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn argmax(&self, dim: usize) -> Result<Vec<usize>> {
        check_dim("argmax", dim, self.shape())?;
        if self.shape()[dim] == 0 {
            return Err(Error::shape(
                "argmax",
                format!("dim {dim} of {:?} is empty", self.shape()),
            ));
        }
        let flat = on_device!(self.device(),
            cuda => cuda::argmax_flat(self, dim)?,
            cpu => cpu::max_dim(&self.values()?, self.shape(), dim).1);
        let (_, size, inner) = crate::shape::split_at_dim(self.shape(), dim);
        Ok(flat.into_iter().map(|f| f / inner % size).collect())
    }

    /// Sums a broadcast result back to `shape` (which must broadcast to this tensor's shape):
    /// over leading extra dims and over dims where `shape` has 1. The backward of every
    /// broadcasting op. Backward: expand back.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::ones(&[3, 2, 4], Device::Cpu)?;
    /// let s = a.sum_to(&[2, 1])?;
    /// assert_eq!(s.shape(), &[2, 1]);
    /// assert_eq!(s.to_vec()?, vec![12., 12.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let ok = shape.len() <= self.ndim()
            && broadcast_shapes("sum_to", shape, self.shape()).is_ok_and(|b| b == self.shape());
        if !ok {
            return Err(Error::shape(
                "sum_to",
                format!(
                    "{shape:?} does not broadcast to {:?}, so {:?} cannot be summed to it",
                    self.shape(),
                    self.shape()
                ),
            ));
        }
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let lead = self.ndim() - shape.len();
        let mask: Vec<bool> = (0..self.ndim())
            .map(|d| d < lead || (shape[d - lead] == 1 && self.shape()[d] != 1))
            .collect();
        self.reduce_sum(mask, false, false, "sum_to")?.reshape(shape)
    }

    /// L2 norm along `dim`: sqrt(sum x²). Backward: x / norm (0 where the norm is 0).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f64>::from_vec(vec![3., 4.], &[1, 2], Device::Cpu)?;
    /// assert_eq!(a.norm_dim(1, false)?.to_vec()?, vec![5.0]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn norm_dim(&self, dim: usize, keepdim: bool) -> Result<Tensor<T>> {
        check_dim("norm_dim", dim, self.shape())?;
        let mut mask = vec![false; self.ndim()];
        mask[dim] = true;
        let kept = kept_shape(self.shape(), &mask);
        let shape = if keepdim {
            kept.clone()
        } else {
            squeezed_shape(self.shape(), &mask)
        };
        let norm = on_device!(self.device(),
            cuda => cuda::norm_dim(self, dim, &kept)?,
            cpu => Tensor::from_cpu(cpu::norm_dim(&self.values()?, self.shape(), dim), kept));
        let out = if keepdim {
            norm.clone()
        } else {
            norm.view_as_shape(shape)
        };
        record(
            out,
            &[self],
            NormBackward {
                x: Saved::new(self),
                norm: Saved::new(&norm),
                dim,
            },
        )
    }
}
