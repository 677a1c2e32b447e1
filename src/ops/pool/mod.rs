//! Pooling over NCHW input: max, average and adaptive average.
//!
//! # Backward
//! Pooling only routes values, so the backward routes gradients back along the same paths:
//! - max: y = x[argmax of the window], so dL/dx[argmax] += dL/dy and every other pixel of the
//!   window gets nothing. The argmax is saved in the forward (ties go to the first maximum in
//!   row-major window order; padding is -inf and never wins). Windows may overlap (kernel >
//!   stride) or leave pixels out (kernel < stride): the scatter-add handles both.
//! - average: y = (1/count) Σ window, so each input pixel of the window gets dL/dy / count.
//!   With PyTorch's default `count_include_pad = true`, count is the window size clipped to the
//!   padded input, so padding positions dilute the average but receive no gradient.
//! - adaptive average: the same with PyTorch's windows [floor(i·H/OH), ceil((i+1)·H/OH)).

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::{Backward, record};
use crate::dtype::Float;
use crate::ops::conv::out_len as conv_out_len;
use crate::shape::Pair;
use crate::{Error, Result, Tensor};
use cpu::PoolParams;

enum PoolKind {
    /// Max pooling, with each output's argmax (its index within the plane) where the data are.
    Max(Argmax),
    Avg,
    Adaptive,
}

/// Max pooling's argmax, kept on the device of the data.
enum Argmax {
    Host(Vec<usize>),
    #[cfg(feature = "cuda")]
    Dev(crate::backend::cuda::DevBuf<i64>),
}

struct PoolBackward {
    kind: PoolKind,
    p: PoolParams,
}

/// The argmax of a max pool on the other device than its gradient: an internal error (a
/// tensor's device never changes under a recorded graph), reported instead of a panic.
#[cfg(feature = "cuda")]
fn argmax_elsewhere() -> Error {
    Error::device("max_pool2d backward: the saved argmax is on another device than the gradient".to_string())
}

impl<T: Float> Backward<T> for PoolBackward {
    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max(_) => "max_pool2d",
            PoolKind::Avg => "avg_pool2d",
            PoolKind::Adaptive => "adaptive_avg_pool2d",
        }
    }
    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let shape = inputs[0].shape().to_vec();
        let dx = on_device!(g.device(),
        cuda => {
            let buf = match &self.kind {
                PoolKind::Max(Argmax::Dev(idx)) => cuda::max_pool_backward(g, idx, &self.p)?,
                PoolKind::Max(Argmax::Host(_)) => return Err(argmax_elsewhere()),
                PoolKind::Avg => cuda::avg_pool_backward(g, &self.p, false)?,
                PoolKind::Adaptive => cuda::avg_pool_backward(g, &self.p, true)?,
            };
            Tensor::from_dev(buf, shape)
        },
        cpu => {
            let g = g.values()?;
            let data = match &self.kind {
                PoolKind::Max(Argmax::Host(idx)) => cpu::max_pool_backward(&g, idx, &self.p),
                #[cfg(feature = "cuda")]
                PoolKind::Max(Argmax::Dev(_)) => return Err(argmax_elsewhere()),
                PoolKind::Avg => cpu::avg_pool_backward(&g, &self.p, false),
                PoolKind::Adaptive => cpu::avg_pool_backward(&g, &self.p, true),
            };
            Tensor::from_cpu(data, shape)
        });
        Ok(vec![Some(dx)])
    }
}

impl<T: Float> Tensor<T> {
    /// Validates a windowed pool and returns its geometry.
    #[track_caller]
    fn pool_params(&self, op: &'static str, kernel: Pair, stride: Pair, padding: Pair) -> Result<PoolParams> {
        let s = self.shape();
        if s.len() != 4 {
            return Err(Error::shape(op, format!("input {s:?} must be [N, C, H, W]")));
        }
        if kernel.h == 0 || kernel.w == 0 || stride.h == 0 || stride.w == 0 {
            return Err(Error::invalid(
                op,
                format!("kernel {kernel:?} and stride {stride:?} must be at least 1"),
            ));
        }
        if padding.h > kernel.h / 2 || padding.w > kernel.w / 2 {
            return Err(Error::invalid(
                op,
                format!("padding {padding:?} must be at most half the kernel {kernel:?} on each axis (as PyTorch)"),
            ));
        }
        // As PyTorch: an empty H or W is an error (with padding, windows would hold no pixel).
        if s[2] == 0 || s[3] == 0 {
            return Err(Error::shape(op, format!("input {s:?} has an empty spatial dimension")));
        }
        let (Some(oh), Some(ow)) = (
            conv_out_len(s[2], kernel.h, stride.h, padding.h),
            conv_out_len(s[3], kernel.w, stride.w, padding.w),
        ) else {
            return Err(Error::shape(
                op,
                format!("kernel {kernel:?} is larger than the padded input (input {s:?}, padding {padding:?})"),
            ));
        };
        Ok(PoolParams {
            planes: s[0] * s[1],
            h: s[2],
            w: s[3],
            kh: kernel.h,
            kw: kernel.w,
            sh: stride.h,
            sw: stride.w,
            ph: padding.h,
            pw: padding.w,
            oh,
            ow,
        })
    }

    #[track_caller]
    fn finish_pool(&self, out: Tensor<T>, p: PoolParams, kind: PoolKind) -> Result<Tensor<T>> {
        record(out, &[self], PoolBackward { kind, p })
    }

    /// The pooled output's shape, `[N, C, oh, ow]`.
    fn pooled_shape(&self, p: &PoolParams) -> Vec<usize> {
        vec![self.shape()[0], self.shape()[1], p.oh, p.ow]
    }

    /// 2-d max pooling (as `F.max_pool2d`): the largest value of each window; padding (at most
    /// half the kernel) never wins. Derivative: the gradient goes to the window's (first) maximum.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f32>::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4], Device::Cpu)?;
    /// let y = x.max_pool2d(3, 2, 1)?;
    /// assert_eq!(y.to_vec()?, vec![5., 7., 13., 15.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn max_pool2d(
        &self,
        kernel: impl Into<Pair>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
    ) -> Result<Tensor<T>> {
        let p = self.pool_params("max_pool2d", kernel.into(), stride.into(), padding.into())?;
        let shape = self.pooled_shape(&p);
        let (out, argmax) = on_device!(self.device(),
        cuda => {
            let (y, idx) = cuda::max_pool(self, &p)?;
            (Tensor::from_dev(y, shape), Argmax::Dev(idx))
        },
        cpu => {
            let (data, idx) = cpu::max_pool(&self.values()?, &p);
            (Tensor::from_cpu(data, shape), Argmax::Host(idx))
        });
        self.finish_pool(out, p, PoolKind::Max(argmax))
    }

    /// 2-d average pooling (as `F.avg_pool2d` with `count_include_pad = true`): padding counts
    /// in the divisor. Derivative: each window pixel gets dL/dy / count.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f32>::ones(&[1, 1, 2, 2], Device::Cpu)?;
    /// let y = x.avg_pool2d(2, 1, 1)?;               // corner windows hold one pixel of four
    /// assert_eq!(y.to_vec()?[0], 0.25);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn avg_pool2d(
        &self,
        kernel: impl Into<Pair>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
    ) -> Result<Tensor<T>> {
        let p = self.pool_params("avg_pool2d", kernel.into(), stride.into(), padding.into())?;
        let shape = self.pooled_shape(&p);
        let out = on_device!(self.device(),
            cuda => Tensor::from_dev(cuda::avg_pool(self, &p, false)?, shape),
            cpu => Tensor::from_cpu(cpu::avg_pool(&self.values()?, &p, false), shape));
        self.finish_pool(out, p, PoolKind::Avg)
    }

    /// Adaptive average pooling to `output_size` (as `F.adaptive_avg_pool2d`; NCHW input only):
    /// output cell i averages input rows [floor(i·H/OH), ceil((i+1)·H/OH)), the same for
    /// columns. `output_size = 1` is the global average pool. Derivative: dL/dy / window size
    /// to each pixel of the window.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[1, 1, 2, 2], Device::Cpu)?;
    /// assert_eq!(x.adaptive_avg_pool2d(1)?.to_vec()?, vec![2.5]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn adaptive_avg_pool2d(&self, output_size: impl Into<Pair>) -> Result<Tensor<T>> {
        const OP: &str = "adaptive_avg_pool2d";
        let o = output_size.into();
        let s = self.shape();
        if s.len() != 4 {
            return Err(Error::shape(OP, format!("input {s:?} must be [N, C, H, W]")));
        }
        if o.h == 0 || o.w == 0 {
            return Err(Error::invalid(
                OP,
                format!("output size {o:?} must be at least 1 on both axes"),
            ));
        }
        if s[2] == 0 || s[3] == 0 {
            return Err(Error::shape(OP, format!("input {s:?} has an empty spatial dimension")));
        }
        let p = PoolParams {
            planes: s[0] * s[1],
            h: s[2],
            w: s[3],
            kh: 0,
            kw: 0,
            sh: 0,
            sw: 0,
            ph: 0,
            pw: 0,
            oh: o.h,
            ow: o.w,
        };
        let shape = self.pooled_shape(&p);
        let out = on_device!(self.device(),
            cuda => Tensor::from_dev(cuda::avg_pool(self, &p, true)?, shape),
            cpu => Tensor::from_cpu(cpu::avg_pool(&self.values()?, &p, true), shape));
        self.finish_pool(out, p, PoolKind::Adaptive)
    }
}
