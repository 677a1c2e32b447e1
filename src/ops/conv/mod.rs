//! 2-d convolution (cross-correlation, as PyTorch) over NCHW input with an OIHW weight.
//!
//! Kernels: `reference.rs` computes exactly the derivation below (im2col + the textbook GEMM,
//! image by image); `fast.rs` computes the same products without building the column matrix
//! (the GEMM reads the zero-padded image in place, on a "wide grid"), with the packed SIMD
//! GEMM, in parallel over chunks of images; for convs with more channels (forward: 16 in, 32
//! out; backward: 32 in, 64 out) it hands each chunk to `channels_last.rs`, which turns the
//! chunk into channels-last order so that the positions of all its images form one long GEMM
//! dimension; and a 3x3 stride-1 conv computes its forward (from 32 input channels) and its
//! input gradient (from 32 output channels) in `winograd.rs` (Winograd F(2x2, 3x3): 16
//! multiplies per 2 x 2 outputs instead of 36, through 16 GEMMs over channels). Which set
//! runs, fast or reference: [`crate::cpu::Kernels`].
//!
//! The derivation below is the reference kernels'; the fast ones compute the same sums in
//! another order (Winograd's reassociated through its transforms), so their results differ in
//! rounding only.
//!
//! # Forward: im2col + GEMM
//! For one image, gather every receptive field into a column: the column matrix `col(X)` has
//! one row per (input channel, kernel row, kernel column) — K = C·R·S rows — and one column per
//! output position — P = OH·OW columns. Then the convolution is one matrix product:
//! `Y = W · col(X)` with W seen as `[O, K]`, and the bias is added to each output channel.
//!
//! # Backward
//! `Y = W · col(X)` is a matrix product, so with G = dL/dY (`[O, P]` per image):
//! - dL/dW = Σ_n G_n · col(X_n)ᵀ (`[O, K]`), summed over the images;
//! - dL/dcol = Wᵀ · G_n (`[K, P]`), and since col only copies input values (each input value
//!   appears in every column whose window covers it, padding contributes nothing), dL/dX is
//!   the adjoint of the copy: col2im adds each entry of dL/dcol back to the pixel it was read
//!   from. That handles stride > 1, padding and sizes where (H + 2p - R) is not a multiple of
//!   the stride (rows that no window reaches get 0);
//! - dL/db[o] = Σ_{n, oy, ox} G[n, o, oy, ox].

mod channels_last;
#[cfg(feature = "cuda")]
mod cuda;
mod fast;
mod reference;
mod winograd;

use crate::autograd::{Backward, Saved, record};
use crate::cpu::{Kernels, kernels};
use crate::dtype::Float;
use crate::shape::Pair;
use crate::{Error, Result, Tensor};
use reference::Conv2dParams;

struct Conv2dBackward<T: Float> {
    x: Saved<T>,
    w: Saved<T>,
    p: Conv2dParams,
}

impl<T: Float> Backward<T> for Conv2dBackward<T> {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let (x, w) = (self.x.get("conv2d")?, self.w.get("conv2d")?);
        let need_dx = inputs[0].is_requires_grad();
        let need_dw = inputs[1].is_requires_grad();
        let (dx, dw) = on_device!(g.device(),
        cuda => cuda::backward(x, w, g, &self.p, need_dx, need_dw)?,
        cpu => {
            let (xv, wv, gv) = (x.values()?, w.values()?, g.values()?);
            let (dx, dw) = match kernels() {
                Kernels::Fast => fast::backward(&xv, &wv, &gv, &self.p, need_dx, need_dw),
                Kernels::Reference => reference::backward(&xv, &wv, &gv, &self.p, need_dx, need_dw),
            };
            (
                dx.map(|d| Tensor::from_cpu(d, x.shape().to_vec())),
                dw.map(|d| Tensor::from_cpu(d, w.shape().to_vec())),
            )
        });
        let mut grads = vec![dx, dw];
        if let Some(b) = inputs.get(2) {
            grads.push(if b.is_requires_grad() {
                Some(g.sum_dim(&[0, 2, 3], false)?)
            } else {
                None
            });
        }
        Ok(grads)
    }
}

/// Output length of a window sliding over `len` padded by `pad` on both sides.
pub(crate) fn out_len(len: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    pad.checked_mul(2)?
        .checked_add(len)?
        .checked_sub(kernel)
        .map(|span| span / stride + 1)
}

impl<T: Float> Tensor<T> {
    /// 2-d convolution of an NCHW input with an OIHW `weight` (and an optional `[O]` bias), as
    /// `F.conv2d`: output `[N, O, (H + 2ph - R) / sh + 1, (W + 2pw - S) / sw + 1]`.
    /// `stride` and `padding` take one number for both axes or an (h, w) pair.
    /// Derivative: dL/dW = Σ dY·col(X)ᵀ, dL/dX = col2im(Wᵀ·dY), dL/db = Σ dY.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f32>::ones(&[1, 1, 4, 5], Device::Cpu)?;
    /// let w = Tensor::<f32>::ones(&[2, 1, 3, 3], Device::Cpu)?;
    /// let y = x.conv2d(&w, None, (2, 1), 1)?;
    /// assert_eq!(y.shape(), &[1, 2, 2, 5]);
    /// assert_eq!(y.to_vec()?[6], 9.0);   // an interior window sums nine ones
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn conv2d(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
    ) -> Result<Tensor<T>> {
        const OP: &str = "conv2d";
        let (stride, padding) = (stride.into(), padding.into());
        self.same_device(OP, weight)?;
        let (xs, ws) = (self.shape(), weight.shape());
        if xs.len() != 4 || ws.len() != 4 {
            return Err(Error::shape(
                OP,
                format!("input {xs:?} must be [N, C, H, W] and weight {ws:?} must be [O, C, kH, kW]"),
            ));
        }
        if ws[1] != xs[1] {
            return Err(Error::shape(
                OP,
                format!(
                    "input {xs:?} has {} channels but weight {ws:?} expects {}",
                    xs[1], ws[1]
                ),
            ));
        }
        if ws[0] == 0 || ws[2] == 0 || ws[3] == 0 {
            return Err(Error::invalid(OP, format!("weight {ws:?} has a zero-sized dimension")));
        }
        if stride.h == 0 || stride.w == 0 {
            return Err(Error::invalid(
                OP,
                format!("stride {stride:?} must be at least 1 on both axes"),
            ));
        }
        if let Some(b) = bias {
            self.same_device(OP, b)?;
            if b.shape() != [ws[0]] {
                return Err(Error::shape(
                    OP,
                    format!("bias {:?} must be [{}] (one per output channel)", b.shape(), ws[0]),
                ));
            }
        }
        let (Some(oh), Some(ow)) = (
            out_len(xs[2], ws[2], stride.h, padding.h),
            out_len(xs[3], ws[3], stride.w, padding.w),
        ) else {
            return Err(Error::shape(
                OP,
                format!(
                    "kernel {}x{} does not fit the input {xs:?} padded by {padding:?}",
                    ws[2], ws[3]
                ),
            ));
        };
        let p = Conv2dParams {
            n: xs[0],
            c: xs[1],
            h: xs[2],
            w: xs[3],
            o: ws[0],
            r: ws[2],
            s: ws[3],
            stride_h: stride.h,
            stride_w: stride.w,
            pad_h: padding.h,
            pad_w: padding.w,
            oh,
            ow,
        };
        p.check_memory::<T>()?;
        let out = on_device!(self.device(),
        cuda => cuda::forward(self, weight, bias, &p)?,
        cpu => {
            let data = {
                let bias_data = bias.map(|b| b.values()).transpose()?;
                let (xv, wv, bv) = (self.values()?, weight.values()?, bias_data.as_deref());
                match kernels() {
                    Kernels::Fast => fast::forward(&xv, &wv, bv, &p),
                    Kernels::Reference => reference::forward(&xv, &wv, bv, &p),
                }
            };
            Tensor::from_cpu(data, vec![p.n, p.o, oh, ow])
        });
        let bw = Conv2dBackward {
            x: Saved::new(self),
            w: Saved::new(weight),
            p,
        };
        match bias {
            Some(b) => record(out, &[self, weight, b], bw),
            None => record(out, &[self, weight], bw),
        }
    }
}
