//! Shape ops: reshape, flatten, permute, transpose, expand.
//!
//! `reshape` and `flatten` share the input's storage (data are contiguous, so a new shape is
//! only new metadata); `permute`, `transpose` and `expand` copy into a new contiguous buffer.
//!
//! # Backward
//! None of these change values, only where they sit, so each backward moves the gradient back:
//! - reshape / flatten: reshape the gradient to the input's shape.
//! - permute(p): permute the gradient by the inverse permutation p⁻¹ (p⁻¹[p[i]] = i), since
//!   out[..., i_k, ...] = in[..., i_{p⁻¹}, ...]. transpose is the permutation swapping d0, d1.
//! - expand (broadcast to a larger shape): every input element was copied to several output
//!   positions, so its gradient is the sum over them: `sum_to(grad, input.shape)`.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use crate::autograd::{Backward, record};
use crate::dtype::Float;
use crate::shape::{broadcast_shapes, check_dim, checked_numel, numel};
use crate::{Error, Result, Tensor};

struct ReshapeBackward;

impl<T: Float> Backward<T> for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(g.reshape(inputs[0].shape())?)])
    }
}

struct PermuteBackward {
    inverse: Vec<usize>,
}

impl<T: Float> Backward<T> for PermuteBackward {
    fn name(&self) -> &'static str {
        "permute"
    }
    fn backward(&self, g: &Tensor<T>, _inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(g.permute(&self.inverse)?)])
    }
}

struct ExpandBackward;

impl<T: Float> Backward<T> for ExpandBackward {
    fn name(&self) -> &'static str {
        "expand"
    }
    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(g.sum_to(inputs[0].shape())?)])
    }
}

impl<T: Float> Tensor<T> {
    /// The same data with a new shape of the same number of elements (shares storage).
    /// Backward: reshape the gradient back.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::zeros(&[2, 3], Device::Cpu)?;
    /// assert_eq!(a.reshape(&[3, 2])?.shape(), &[3, 2]);
    /// assert!(a.reshape(&[4]).is_err());
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor<T>> {
        if checked_numel("reshape", shape)? != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) to {shape:?} ({} elements)",
                    self.shape(),
                    self.numel(),
                    numel(shape)
                ),
            ));
        }
        let out = self.view_as_shape(shape.to_vec());
        record(out, &[self], ReshapeBackward)
    }

    /// Merges dims `start_dim..` into one (as `torch.flatten(x, start_dim)`); a scalar becomes
    /// `[1]`. Shares storage. Backward: reshape back.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::zeros(&[2, 3, 4, 5], Device::Cpu)?;
    /// assert_eq!(a.flatten(1)?.shape(), &[2, 60]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn flatten(&self, start_dim: usize) -> Result<Tensor<T>> {
        if self.ndim() == 0 {
            if start_dim == 0 {
                return self.reshape(&[1]);
            }
            return Err(Error::invalid(
                "flatten",
                format!("start_dim {start_dim} is out of range for a scalar"),
            ));
        }
        check_dim("flatten", start_dim, self.shape())?;
        let mut shape = self.shape()[..start_dim].to_vec();
        shape.push(numel(&self.shape()[start_dim..]));
        self.reshape(&shape)
    }

    /// Reorders the dims: output dim i is input dim `perm[i]` (as `torch.permute`). Copies.
    /// Backward: permute the gradient by the inverse permutation.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3], Device::Cpu)?;
    /// let t = a.permute(&[1, 0])?;
    /// assert_eq!(t.shape(), &[3, 2]);
    /// assert_eq!(t.to_vec()?, vec![1., 4., 2., 5., 3., 6.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor<T>> {
        let rank = self.ndim();
        let mut seen = vec![false; rank];
        if perm.len() != rank || perm.iter().any(|&p| p >= rank || std::mem::replace(&mut seen[p], true)) {
            return Err(Error::invalid(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the {rank} dims of a tensor of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape()[p]).collect();
        let out = on_device!(self.device(),
            cuda => cuda::permute(self, perm)?,
            cpu => Tensor::from_cpu(cpu::permute(&self.values()?, self.shape(), perm), shape));
        let mut inverse = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        record(out, &[self], PermuteBackward { inverse })
    }

    /// Swaps two dims (a permute). Copies. Backward: transpose the gradient back.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::zeros(&[2, 3, 4], Device::Cpu)?;
    /// assert_eq!(a.transpose(0, 2)?.shape(), &[4, 3, 2]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Tensor<T>> {
        check_dim("transpose", d0, self.shape())?;
        check_dim("transpose", d1, self.shape())?;
        let mut perm: Vec<usize> = (0..self.ndim()).collect();
        perm.swap(d0, d1);
        self.permute(&perm)
    }

    /// Broadcasts to `shape` (NumPy rules; copies). Backward: `sum_to` the input's shape.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2.], &[2], Device::Cpu)?;
    /// assert_eq!(a.expand(&[2, 2])?.to_vec()?, vec![1., 2., 1., 2.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let b = broadcast_shapes("expand", self.shape(), shape)?;
        if b != shape {
            return Err(Error::shape(
                "expand",
                format!("cannot expand {:?} to {shape:?}", self.shape()),
            ));
        }
        let out = on_device!(self.device(),
            cuda => cuda::expand(self, shape)?,
            cpu => Tensor::from_cpu(cpu::expand(&self.values()?, self.shape(), shape), shape.to_vec()));
        record(out, &[self], ExpandBackward)
    }
}
