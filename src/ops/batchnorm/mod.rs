//! Batch normalisation, as `torch.nn.functional.batch_norm`: per-channel statistics over the
//! batch (and spatial positions), an affine transform, and in-place running statistics.
//!
//! # Forward
//! The input is `[N, C]`, `[N, C, L]` or `[N, C, H, W]`; for each channel `c` take its
//! `M = N*L` (or `N*H*W`, or `N`) values `x_i`. In training mode
//! ```text
//! mu = (1/M) sum_i x_i,   var = (1/M) sum_i (x_i - mu)^2   (biased),   r = 1/sqrt(var + eps)
//! xhat_i = (x_i - mu) r,  y_i = w xhat_i + b
//! ```
//! and the running statistics (buffers, not graph inputs) move towards the batch's:
//! `rm = (1 - momentum) rm + momentum mu`, `rv = (1 - momentum) rv + momentum var_u`, with the
//! unbiased `var_u = var M/(M-1)`. In eval mode `mu = rm` and `var = rv` are constants.
//!
//! # Backward (closed form, per channel)
//! Let `g_i = dL/dy_i`. Directly: `dL/db = sum_i g_i`, `dL/dw = sum_i g_i xhat_i`, and
//! `dL/dxhat_i = w g_i`. In training `mu` and `r` depend on every `x_j`:
//! ```text
//! dmu/dx_j  = 1/M
//! dvar/dx_j = (2/M) (x_j - mu)            (the term through mu is (2/M) sum_i (x_i - mu) = 0)
//! dr/dx_j   = -1/2 (var + eps)^(-3/2) dvar/dx_j = -r^3 (x_j - mu)/M = -r^2 xhat_j / M
//! dxhat_i/dx_j = r (delta_ij - 1/M) + (x_i - mu) dr/dx_j = r (delta_ij - 1/M - xhat_i xhat_j / M)
//! ```
//! so
//! ```text
//! dL/dx_j = sum_i w g_i r (delta_ij - 1/M - xhat_i xhat_j / M)
//!         = (w r / M) (M g_j - sum_i g_i - xhat_j sum_i g_i xhat_i).
//! ```
//! The two sums are exactly `dL/db` and `dL/dw`, so one kernel makes two passes over the data:
//! first the per-channel sums, then `dx` elementwise. In eval mode `mu` and `r` are constants
//! and `dL/dx = w r g`.

#[cfg(feature = "cuda")]
mod cuda;
mod fast;
mod reference;

use crate::autograd::{Backward, Saved, record};
use crate::cpu::{Kernels, kernels};
use crate::dtype::Float;
use crate::{Error, Result, Tensor};
use reference::BnDims;

const OP: &str = "batch_norm";

struct BatchNormBackward<T: Float> {
    dims: BnDims,
    training: bool,
    /// The input (for `xhat`, recomputed on the fly instead of stored).
    x: Saved<T>,
    /// The weight, if one was given (`dx` scales by it).
    weight: Option<Saved<T>>,
    /// Whether inputs[1] is the weight; the bias follows it if `has_bias`.
    has_weight: bool,
    has_bias: bool,
    /// Per channel: the mean and 1/sqrt(var + eps) used to normalise (batch or running).
    stats: SavedStats<T>,
    /// [`Tensor::batch_norm_relu`]: its output `y = relu(z)`, whose sign is the ReLU's mask.
    relu_out: Option<Saved<T>>,
    /// [`Tensor::batch_norm_relu`] with a residual: the last input, whose gradient is `dz`.
    has_residual: bool,
}

/// The per-channel statistics a forward normalised with, where its device keeps them.
enum SavedStats<T: Float> {
    /// The CPU path: host vectors (mean, invstd).
    Host { mean: Vec<T>, invstd: Vec<T> },
    /// The CUDA path: a device buffer that never leaves the GPU.
    #[cfg(feature = "cuda")]
    Dev(cuda::DevStats<T>),
}

impl<T: Float> Backward<T> for BatchNormBackward<T> {
    fn name(&self) -> &'static str {
        if self.relu_out.is_some() { "batch_norm_relu" } else { OP }
    }

    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let d = self.dims;
        let x_in = &inputs[0];
        let w_in = self.has_weight.then(|| &inputs[1]);
        let b_in = self.has_bias.then(|| &inputs[1 + usize::from(self.has_weight)]);
        let needs = |t: Option<&Tensor<T>>| t.is_some_and(|t| t.is_requires_grad());
        let (need_x, need_w, need_b) = (x_in.is_requires_grad(), needs(w_in), needs(b_in));

        let x = self.x.get(OP)?;
        // The fused op: the gradient at the pre-activation z = bn(x) + residual is dy masked
        // by relu(z) > 0; everything below is batch norm's backward for that gradient.
        let dz = match &self.relu_out {
            Some(y) => {
                let (gv, yv) = (g.values()?, y.get(OP)?.values()?);
                let data = match kernels() {
                    Kernels::Fast => fast::relu_grad(d, &gv, &yv),
                    Kernels::Reference => reference::relu_grad(&gv, &yv),
                };
                Some(Tensor::from_cpu(data, g.shape().to_vec()))
            }
            None => None,
        };
        let g = dz.as_ref().unwrap_or(g);
        let residual_grad = |grads: &mut Vec<Option<Tensor<T>>>| {
            if self.has_residual {
                let r = &inputs[inputs.len() - 1];
                grads.push((r.is_requires_grad()).then(|| g.clone()));
            }
        };
        let (mean, invstd) = match &self.stats {
            SavedStats::Host { mean, invstd } => (mean, invstd),
            #[cfg(feature = "cuda")]
            SavedStats::Dev(stats) => {
                let weight = self.weight.as_ref().map(|w| w.get(OP)).transpose()?;
                let want = cuda::Wanted {
                    dx: need_x,
                    dw: need_w,
                    db: need_b,
                };
                let (dx, dw, db) = cuda::backward(x, g, weight, stats, d, self.training, want)?;
                let mut grads = vec![dx];
                if self.has_weight {
                    grads.push(dw);
                }
                if self.has_bias {
                    grads.push(db);
                }
                residual_grad(&mut grads);
                return Ok(grads);
            }
        };
        // The CPU path: per-channel vectors on the host. k = w * invstd per channel.
        let k: Vec<T> = match &self.weight {
            Some(w) => w.get(OP)?.to_vec()?.iter().zip(invstd).map(|(&w, &r)| w * r).collect(),
            None => invstd.clone(),
        };
        // Pass 1: per-channel (sum dy, sum dy * xhat), needed by dw, db and the training dx.
        let sums = if need_w || need_b || (need_x && self.training) {
            let (xv, gv) = (x.values()?, g.values()?);
            match kernels() {
                Kernels::Fast => fast::grad_sums(d, &xv, &gv, mean, invstd),
                Kernels::Reference => reference::grad_sums(d, &xv, &gv, mean, invstd),
            }
        } else {
            Vec::new()
        };
        // Pass 2: dx.
        let dx = if need_x {
            let m = T::from_usize(d.per_channel());
            let coefs: Option<Vec<(T, T)>> = self
                .training
                .then(|| sums.iter().map(|&(sg, sgx)| (sg / m, sgx / m)).collect());
            let (xv, gv, ab) = (x.values()?, g.values()?, coefs.as_deref());
            let data = match kernels() {
                Kernels::Fast => fast::grad_input(d, &xv, &gv, mean, invstd, &k, ab),
                Kernels::Reference => reference::grad_input(d, &xv, &gv, mean, invstd, &k, ab),
            };
            Some(Tensor::from_cpu(data, x_in.shape().to_vec()))
        } else {
            None
        };
        let dev = g.device();
        let per_channel = |f: fn(&(T, T)) -> T| Tensor::from_vec(sums.iter().map(f).collect(), &[d.c], dev);
        let mut grads = vec![dx];
        if self.has_weight {
            grads.push(if need_w { Some(per_channel(|s| s.1)?) } else { None });
        }
        if self.has_bias {
            grads.push(if need_b { Some(per_channel(|s| s.0)?) } else { None });
        }
        residual_grad(&mut grads);
        Ok(grads)
    }
}

/// The running statistics and affine parameters of a batch norm call, as passed.
#[derive(Clone, Copy)]
struct BnArgs<'a, T: Float> {
    running_mean: Option<&'a Tensor<T>>,
    running_var: Option<&'a Tensor<T>>,
    weight: Option<&'a Tensor<T>>,
    bias: Option<&'a Tensor<T>>,
    training: bool,
    momentum: f64,
    eps: f64,
    /// Fused: `relu(batch_norm(x) + residual)` ([`Tensor::batch_norm_relu`]).
    relu: bool,
    residual: Option<&'a Tensor<T>>,
}

fn missing_running_stats() -> Error {
    Error::invalid(OP, "running_mean and running_var are required when training is false")
}

/// `Err` unless `t` is a `[c]` vector on `device`.
fn check_channel_vec<T: Float>(name: &str, t: Option<&Tensor<T>>, c: usize, x: &Tensor<T>) -> Result<()> {
    let Some(t) = t else { return Ok(()) };
    x.same_device(OP, t)?;
    if t.shape() != [c] {
        return Err(Error::shape(
            OP,
            format!(
                "{name} has shape {:?}, expected [{c}] (one value per channel of input {:?})",
                t.shape(),
                x.shape()
            ),
        ));
    }
    Ok(())
}

impl<T: Float> Tensor<T> {
    /// Batch normalisation, as `torch.nn.functional.batch_norm(input, running_mean, running_var,
    /// weight, bias, training, momentum, eps)`. The input is `[N, C]`, `[N, C, L]` or
    /// `[N, C, H, W]`; statistics are per channel over the other dims. Missing `weight` /
    /// `bias` mean 1 / 0.
    ///
    /// - `training = true`: normalise with the batch mean and biased variance; if running
    ///   statistics are given, update them in place: `rm = (1 - momentum) rm + momentum mean`,
    ///   `rv = (1 - momentum) rv + momentum var_unbiased`. One value per channel
    ///   (`N*H*W == 1`) is an `Err`, as in PyTorch. An empty input gives an empty output and
    ///   leaves the running statistics untouched.
    /// - `training = false`: normalise with `running_mean` / `running_var` (both required).
    ///
    /// Running statistics are buffers, never differentiated. `Err` for other ranks, for
    /// running stats / weight / bias not of shape `[C]` or on another device, for `eps` not
    /// finite and >= 0 (0 is allowed, as in PyTorch), or `momentum` not finite.
    ///
    /// Derivative (training, per channel, M values):
    /// `dx = (w r / M) (M dy - sum dy - xhat sum(dy xhat))`, `dw = sum(dy xhat)`, `db = sum dy`
    /// (eval: `dx = w r dy`); derivation at the top of `src/ops/batchnorm/mod.rs`.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f32>::from_vec(vec![1., 10., 3., 30.], &[2, 2], Device::Cpu)?;
    /// let rm = Tensor::<f32>::zeros(&[2], Device::Cpu)?;
    /// let rv = Tensor::<f32>::ones(&[2], Device::Cpu)?;
    /// let y = x.batch_norm(Some(&rm), Some(&rv), None, None, true, 0.1, 1e-5)?;
    /// let y = y.to_vec()?;          // each channel normalised to about -1, +1
    /// assert!((y[0] + 1.0).abs() < 1e-3 && (y[2] - 1.0).abs() < 1e-3);
    /// assert!((rm.to_vec()?[0] - 0.2).abs() < 1e-6);   // 0.9 * 0 + 0.1 * mean 2
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor<T>>,
        running_var: Option<&Tensor<T>>,
        weight: Option<&Tensor<T>>,
        bias: Option<&Tensor<T>>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor<T>> {
        self.batch_norm_with(&BnArgs {
            running_mean,
            running_var,
            weight,
            bias,
            training,
            momentum,
            eps,
            relu: false,
            residual: None,
        })
    }

    /// Batch norm fused with the ReLU after it, and with the residual add before that ReLU:
    /// `relu(batch_norm(x, ...) + residual)`, the `relu(bn(conv(x)))` and
    /// `relu(bn(conv(h)) + shortcut)` of a ResNet block, as one op. Arguments as
    /// [`batch_norm`](Self::batch_norm) (the running statistics are updated the same way);
    /// `residual`, if given, has this tensor's shape and device.
    ///
    /// The result equals the three ops' (the same arithmetic per element), but the CPU kernel
    /// makes one pass for normalise + add + ReLU instead of three, and the graph keeps one
    /// output instead of three. On CUDA, and with the reference kernels
    /// ([`crate::cpu::Kernels::Reference`]), it runs as those three ops.
    ///
    /// Derivative: with `z = bn(x) + residual` and `y = relu(z)`, `dz = dy` where `y > 0`, else
    /// 0 (relu'(0) = 0, as [`relu`](Self::relu)); `d residual = dz`; and `dx`, `dw`, `db` are
    /// batch norm's for the incoming gradient `dz` (`src/ops/batchnorm/mod.rs`).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f32>::from_vec(vec![1., 10., 3., 30.], &[2, 2], Device::Cpu)?;
    /// let r = Tensor::<f32>::from_vec(vec![0.5, 0.5, 0.5, 0.5], &[2, 2], Device::Cpu)?;
    /// let y = x.batch_norm_relu(None, None, None, None, Some(&r), true, 0.1, 1e-5)?;
    /// let y = y.to_vec()?;          // relu(about -1 + 0.5) = 0, relu(about 1 + 0.5) = 1.5
    /// assert!(y[0] == 0.0 && (y[2] - 1.5).abs() < 1e-3);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub fn batch_norm_relu(
        &self,
        running_mean: Option<&Tensor<T>>,
        running_var: Option<&Tensor<T>>,
        weight: Option<&Tensor<T>>,
        bias: Option<&Tensor<T>>,
        residual: Option<&Tensor<T>>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor<T>> {
        if let Some(r) = residual {
            self.same_device("batch_norm_relu", r)?;
            if r.shape() != self.shape() {
                return Err(Error::shape(
                    "batch_norm_relu",
                    format!(
                        "residual has shape {:?}, expected the input's {:?}",
                        r.shape(),
                        self.shape()
                    ),
                ));
            }
        }
        let args = BnArgs {
            running_mean,
            running_var,
            weight,
            bias,
            training,
            momentum,
            eps,
            relu: true,
            residual,
        };
        if self.device() != crate::Device::Cpu || kernels() == Kernels::Reference {
            let z = self.batch_norm_with(&BnArgs {
                relu: false,
                residual: None,
                ..args
            })?;
            let z = match residual {
                Some(r) => z.add(r)?,
                None => z,
            };
            return z.relu();
        }
        self.batch_norm_with(&args)
    }

    /// [`batch_norm`](Self::batch_norm) and, on the CPU, [`batch_norm_relu`](Self::batch_norm_relu).
    #[track_caller]
    fn batch_norm_with(&self, args: &BnArgs<'_, T>) -> Result<Tensor<T>> {
        let BnArgs {
            running_mean,
            running_var,
            weight,
            bias,
            training,
            momentum,
            eps,
            ..
        } = *args;
        let d = self.check_batch_norm_args([running_mean, running_var, weight, bias], training, momentum, eps)?;
        if !training && (running_mean.is_none() || running_var.is_none()) {
            return Err(missing_running_stats());
        }
        let mut inputs: Vec<&Tensor<T>> = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        inputs.extend(args.residual);
        let saved = |stats| BatchNormBackward {
            dims: d,
            training,
            x: Saved::new(self),
            weight: weight.map(Saved::new),
            has_weight: weight.is_some(),
            has_bias: bias.is_some(),
            stats,
            relu_out: None,
            has_residual: args.residual.is_some(),
        };
        #[cfg(feature = "cuda")]
        if matches!(self.device(), crate::Device::Cuda(_)) {
            let (out, stats) = cuda::forward(self, d, args)?;
            return record(out, &inputs, saved(SavedStats::Dev(stats)));
        }
        self.batch_norm_cpu(d, args, inputs, saved)
    }

    /// The CPU path of [`batch_norm`](Self::batch_norm), after its checks: statistics and
    /// per-channel vectors on the host.
    fn batch_norm_cpu(
        &self,
        d: BnDims,
        a: &BnArgs<'_, T>,
        inputs: Vec<&Tensor<T>>,
        saved: impl FnOnce(SavedStats<T>) -> BatchNormBackward<T>,
    ) -> Result<Tensor<T>> {
        let BnArgs {
            running_mean,
            running_var,
            weight,
            bias,
            training,
            momentum,
            eps,
            relu,
            residual,
        } = *a;
        let stats = match (training, running_mean, running_var) {
            (true, _, _) => self.batch_stats(d, eps)?,
            (false, Some(rm), Some(rv)) => Stats::running(rm, rv, eps)?,
            (false, _, _) => return Err(missing_running_stats()),
        };

        // Per channel: y = (x - mean) * scale + shift, with scale = w * invstd and shift = b.
        let scale: Vec<T> = match weight {
            Some(w) => w.to_vec()?.iter().zip(&stats.invstd).map(|(&w, &r)| w * r).collect(),
            None => stats.invstd.clone(),
        };
        let shift = match bias {
            Some(b) => b.to_vec()?,
            None => vec![T::ZERO; d.c],
        };
        let xv = self.values()?;
        let data = match (relu, kernels()) {
            // (batch_norm_relu runs fused only with the fast kernels; see there.)
            (true, _) => {
                let r = residual.map(|r| r.values()).transpose()?;
                fast::normalize_relu(d, &xv, &stats.mean, &scale, &shift, r.as_deref())
            }
            (false, Kernels::Fast) => fast::normalize(d, &xv, &stats.mean, &scale, &shift),
            (false, Kernels::Reference) => reference::normalize(d, &xv, &stats.mean, &scale, &shift),
        };
        drop(xv);
        let out = Tensor::from_cpu(data, self.shape().to_vec());
        let mut backward = saved(SavedStats::Host {
            mean: stats.mean.clone(),
            invstd: stats.invstd.clone(),
        });
        if relu {
            backward.relu_out = Some(Saved::new(&out.detach()));
        }
        let out = record(out, &inputs, backward)?;

        // Running statistics, updated in place after every read of the inputs above (no read
        // guard is held here, so a running stat sharing storage with an input cannot deadlock).
        if training && d.per_channel() > 0 {
            let blend = |stat: Option<&Tensor<T>>, batch: &[T]| -> Result<()> {
                let Some(stat) = stat else { return Ok(()) };
                let mom = T::from_f64(momentum);
                let keep = T::ONE - mom;
                stat.update_in_place(|v| v.iter_mut().zip(batch).for_each(|(r, &b)| *r = keep * *r + mom * b))
            };
            blend(running_mean, &stats.mean)?;
            blend(running_var, &stats.var_unbiased)?;
        }
        Ok(out)
    }

    /// The dimensions of a batch norm input, after checking every argument: rank 2 to 4, each
    /// of `[running_mean, running_var, weight, bias]` given a `[C]` vector on this device,
    /// `eps` finite and >= 0, `momentum` finite, more than one value per channel in training.
    fn check_batch_norm_args(
        &self,
        channel_vecs: [Option<&Tensor<T>>; 4],
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<BnDims> {
        let shape = self.shape();
        if !(2..=4).contains(&shape.len()) {
            return Err(Error::shape(
                OP,
                format!("input has shape {shape:?}, expected [N, C], [N, C, L] or [N, C, H, W]"),
            ));
        }
        let d = BnDims {
            n: shape[0],
            c: shape[1],
            s: shape[2..].iter().product(),
        };
        let names = ["running_mean", "running_var", "weight", "bias"];
        for (name, t) in names.into_iter().zip(channel_vecs) {
            check_channel_vec(name, t, d.c, self)?;
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::invalid(OP, format!("eps = {eps}, expected a finite value >= 0")));
        }
        if !momentum.is_finite() {
            return Err(Error::invalid(
                OP,
                format!("momentum = {momentum}, expected a finite value"),
            ));
        }
        if training && d.per_channel() == 1 {
            return Err(Error::invalid(
                OP,
                format!("expected more than 1 value per channel when training, got input of shape {shape:?}"),
            ));
        }
        Ok(d)
    }

    /// The batch's per-channel statistics (training mode).
    fn batch_stats(&self, d: BnDims, eps: f64) -> Result<Stats<T>> {
        let sums = match kernels() {
            Kernels::Fast => fast::channel_stats(d, &self.values()?),
            Kernels::Reference => reference::channel_stats(d, &self.values()?),
        };
        let m = d.per_channel();
        let (mt, m1) = (T::from_usize(m), T::from_usize(m.saturating_sub(1)));
        Ok(Stats {
            mean: sums.iter().map(|s| s.0).collect(),
            invstd: sums.iter().map(|s| invstd(s.1 / mt, eps)).collect(),
            var_unbiased: sums.iter().map(|s| s.1 / m1).collect(),
        })
    }
}

/// `1 / sqrt(var + eps)`.
fn invstd<T: Float>(var: T, eps: f64) -> T {
    T::ONE / (var + T::from_f64(eps)).sqrt()
}

/// The per-channel statistics a batch norm normalises with.
struct Stats<T> {
    mean: Vec<T>,
    /// `1 / sqrt(var + eps)`, with the biased variance in training.
    invstd: Vec<T>,
    /// The unbiased variance, blended into `running_var` (training only; empty in eval).
    var_unbiased: Vec<T>,
}

impl<T: Float> Stats<T> {
    /// Evaluation mode: the running statistics.
    fn running(rm: &Tensor<T>, rv: &Tensor<T>, eps: f64) -> Result<Self> {
        Ok(Stats {
            mean: rm.to_vec()?,
            invstd: rv.to_vec()?.iter().map(|&v| invstd(v, eps)).collect(),
            var_unbiased: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{assert_close, central_difference};
    use crate::{Device, Tensor};

    fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
        Tensor::randn(shape, seed, Device::Cpu).unwrap()
    }

    /// Channel `c`'s values of a `[N, C, S]`-viewed buffer.
    fn channel(v: &[f64], shape: &[usize], c: usize) -> Vec<f64> {
        let (n, ch, s) = (shape[0], shape[1], shape[2..].iter().product::<usize>());
        (0..n)
            .flat_map(|i| v[(i * ch + c) * s..(i * ch + c + 1) * s].to_vec())
            .collect()
    }

    fn mean_var(v: &[f64]) -> (f64, f64) {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (m, v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64)
    }

    #[test]
    fn training_output_is_standardised_and_affine() {
        for shape in [&[5, 3][..], &[4, 3, 5], &[2, 3, 4, 3]] {
            let x = randn(shape, 1).mul_scalar(3.0).unwrap().add_scalar(2.0).unwrap();
            let y = x
                .batch_norm(None, None, None, None, true, 0.1, 1e-5)
                .unwrap()
                .to_vec()
                .unwrap();
            for c in 0..3 {
                let (m, v) = mean_var(&channel(&y, shape, c));
                assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-5, "{shape:?} c{c}: {m} {v}");
            }
            let w = Tensor::from_vec(vec![2.0, -1.0, 0.5], &[3], Device::Cpu).unwrap();
            let b = Tensor::from_vec(vec![1.0, 0.0, -3.0], &[3], Device::Cpu).unwrap();
            let z = x
                .batch_norm(None, None, Some(&w), Some(&b), true, 0.1, 1e-5)
                .unwrap()
                .to_vec()
                .unwrap();
            for (i, (&z, &y)) in z.iter().zip(&y).enumerate() {
                let c = (i / shape[2..].iter().product::<usize>()) % 3;
                let (wv, bv) = ([2.0, -1.0, 0.5][c], [1.0, 0.0, -3.0][c]);
                assert!((z - (y * wv + bv)).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn running_stats_follow_the_hand_formula() {
        let shape = [3, 2, 2, 2];
        let x = randn(&shape, 2);
        let xv = x.to_vec().unwrap();
        let rm = Tensor::from_vec(vec![0.5, -1.0], &[2], Device::Cpu).unwrap();
        let rv = Tensor::from_vec(vec![2.0, 0.25], &[2], Device::Cpu).unwrap();
        let v0 = rm.version();
        x.batch_norm(Some(&rm), Some(&rv), None, None, true, 0.3, 1e-5).unwrap();
        assert!(rm.version() > v0, "the update goes through update_in_place");
        let (rmv, rvv) = (rm.to_vec().unwrap(), rv.to_vec().unwrap());
        for (c, (m0, v0)) in [(0.5, 2.0), (-1.0, 0.25)].into_iter().enumerate() {
            let vals = channel(&xv, &shape, c);
            let (m, vb) = mean_var(&vals);
            let vu = vb * 12.0 / 11.0;
            assert!((rmv[c] - (0.7 * m0 + 0.3 * m)).abs() < 1e-12);
            assert!((rvv[c] - (0.7 * v0 + 0.3 * vu)).abs() < 1e-12);
        }
        // Eval uses (and does not change) the running statistics.
        let y = x
            .batch_norm(Some(&rm), Some(&rv), None, None, false, 0.3, 1e-5)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(rm.to_vec().unwrap(), rmv);
        for (i, &yv) in y.iter().enumerate() {
            let c = (i / 4) % 2;
            assert!((yv - (xv[i] - rmv[c]) / (rvv[c] + 1e-5).sqrt()).abs() < 1e-12);
        }
    }

    /// Checks dx, dw, db of `sum(g * batch_norm(x))` against central differences.
    fn check_backward(shape: &[usize], training: bool, affine: bool, seed: u64) {
        let c = shape[1];
        let xv = randn(shape, seed).to_vec().unwrap();
        let wv = randn(&[c], seed + 1).to_vec().unwrap();
        let bv = randn(&[c], seed + 2).to_vec().unwrap();
        let rmv = randn(&[c], seed + 3).to_vec().unwrap();
        let rvv: Vec<f64> = randn(&[c], seed + 4)
            .to_vec()
            .unwrap()
            .iter()
            .map(|v| v * v + 0.5)
            .collect();
        let gv = randn(shape, seed + 5).to_vec().unwrap();
        let t = |v: &[f64], s: &[usize]| Tensor::from_vec(v.to_vec(), s, Device::Cpu).unwrap();
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            // Fresh running stats each call, so the in-place update never leaks between calls.
            let (rm, rv) = (t(&rmv, &[c]), t(&rvv, &[c]));
            let (w, b) = (t(w, &[c]), t(b, &[c]));
            let (w, b) = if affine { (Some(&w), Some(&b)) } else { (None, None) };
            let y = t(x, shape)
                .batch_norm(Some(&rm), Some(&rv), w, b, training, 0.1, 1e-3)
                .unwrap();
            y.to_vec().unwrap().iter().zip(&gv).map(|(y, g)| y * g).sum()
        };
        let x = t(&xv, shape).requires_grad();
        let (w, b) = (t(&wv, &[c]).requires_grad(), t(&bv, &[c]).requires_grad());
        let (rm, rv) = (t(&rmv, &[c]), t(&rvv, &[c]));
        let (wo, bo) = if affine { (Some(&w), Some(&b)) } else { (None, None) };
        let y = x.batch_norm(Some(&rm), Some(&rv), wo, bo, training, 0.1, 1e-3).unwrap();
        y.backward_with(&t(&gv, shape)).unwrap();
        let mut cases = vec![(0, x.grad().unwrap().to_vec().unwrap())];
        if affine {
            cases.push((1, w.grad().unwrap().to_vec().unwrap()));
            cases.push((2, b.grad().unwrap().to_vec().unwrap()));
        } else {
            assert!(w.grad().is_none());
        }
        for (which, got) in cases {
            let base = [&xv, &wv, &bv][which];
            let num = central_difference(
                |v| {
                    let mut args = [xv.clone(), wv.clone(), bv.clone()];
                    args[which] = v.to_vec();
                    loss(&args[0], &args[1], &args[2])
                },
                base,
            );
            assert_close(
                &format!("{shape:?} training={training} input {which}"),
                &got,
                &num,
                1e-6,
            );
        }
    }

    #[test]
    fn backward_matches_central_differences() {
        for training in [true, false] {
            for affine in [true, false] {
                check_backward(&[4, 3], training, affine, 10);
                check_backward(&[2, 2, 3], training, affine, 20);
                check_backward(&[2, 3, 2, 3], training, affine, 30);
            }
        }
        // The smallest legal training batch.
        check_backward(&[2, 1], true, true, 40);
    }

    #[test]
    fn large_input_parallel_path_matches_a_plain_loop() {
        let shape = [8, 4, 32, 40];
        let x = randn(&shape, 7);
        let xv = x.to_vec().unwrap();
        let y1 = x
            .batch_norm(None, None, None, None, true, 0.1, 1e-5)
            .unwrap()
            .to_vec()
            .unwrap();
        let y2 = x
            .batch_norm(None, None, None, None, true, 0.1, 1e-5)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(y1, y2);
        for c in 0..4 {
            let (m, v) = mean_var(&channel(&xv, &shape, c));
            let (xs, ys) = (channel(&xv, &shape, c), channel(&y1, &shape, c));
            for (xv, yv) in xs.iter().zip(&ys) {
                assert!((yv - (xv - m) / (v + 1e-5).sqrt()).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = randn(&[4, 3, 2], 1);
        let v3 = Tensor::<f64>::ones(&[3], Device::Cpu).unwrap();
        let v2 = Tensor::<f64>::ones(&[2], Device::Cpu).unwrap();
        let bn = |x: &Tensor<f64>, rm, rv, w, b, tr, mom, eps| x.batch_norm(rm, rv, w, b, tr, mom, eps);
        assert!(bn(&randn(&[4], 1), None, None, None, None, true, 0.1, 1e-5).is_err());
        assert!(bn(&randn(&[1, 2, 3, 4, 5], 1), None, None, None, None, true, 0.1, 1e-5).is_err());
        assert!(bn(&x, Some(&v2), None, None, None, true, 0.1, 1e-5).is_err());
        assert!(bn(&x, None, Some(&v2), None, None, true, 0.1, 1e-5).is_err());
        assert!(bn(&x, None, None, Some(&v2), None, true, 0.1, 1e-5).is_err());
        assert!(bn(&x, None, None, None, Some(&v2), true, 0.1, 1e-5).is_err());
        assert!(bn(&x, None, None, None, None, true, 0.1, -1e-5).is_err());
        assert!(bn(&x, None, None, None, None, true, 0.1, f64::NAN).is_err());
        assert!(bn(&x, None, None, None, None, true, f64::INFINITY, 1e-5).is_err());
        assert!(bn(&x, None, Some(&v3), None, None, false, 0.1, 1e-5).is_err());
        assert!(bn(&x, Some(&v3), Some(&v3), None, None, false, 0.1, 1e-5).is_ok());
        // One value per channel: an error in training, fine in eval.
        let one = randn(&[1, 3, 1, 1], 1);
        let msg = bn(&one, None, None, None, None, true, 0.1, 1e-5)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("more than 1 value per channel"), "{msg}");
        assert!(bn(&one, Some(&v3), Some(&v3), None, None, false, 0.1, 1e-5).is_ok());
        // An empty batch: empty output, running stats untouched.
        let empty = Tensor::<f64>::zeros(&[0, 3], Device::Cpu).unwrap();
        let rm = Tensor::<f64>::zeros(&[3], Device::Cpu).unwrap();
        let y = bn(&empty, Some(&rm), None, None, None, true, 0.1, 1e-5).unwrap();
        assert_eq!(y.shape(), &[0, 3]);
        assert_eq!(rm.to_vec().unwrap(), vec![0.0; 3]);
    }

    #[test]
    fn weight_updated_in_place_after_forward_fails_backward() {
        let x = randn(&[4, 2], 1).requires_grad();
        let w = Tensor::<f64>::ones(&[2], Device::Cpu).unwrap().requires_grad();
        let y = x.batch_norm(None, None, Some(&w), None, true, 0.1, 1e-5).unwrap();
        w.update_in_place(|v| v[0] = 2.0).unwrap();
        assert!(y.sum().unwrap().backward().is_err());
    }
}

#[cfg(test)]
mod determinism {
    use crate::{Device, Tensor};

    /// Forward and backward of a large batch norm, in a pool of `threads` threads.
    fn run(threads: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let x = Tensor::<f32>::randn(&[16, 6, 24, 20], 3, Device::Cpu)
                .unwrap()
                .requires_grad();
            let w = Tensor::<f32>::randn(&[6], 4, Device::Cpu).unwrap().requires_grad();
            let g = Tensor::<f32>::randn(x.shape(), 5, Device::Cpu).unwrap();
            let y = x.batch_norm(None, None, Some(&w), None, true, 0.1, 1e-5).unwrap();
            y.backward_with(&g).unwrap();
            (
                y.to_vec().unwrap(),
                x.grad().unwrap().to_vec().unwrap(),
                w.grad().unwrap().to_vec().unwrap(),
            )
        })
    }

    #[test]
    fn bit_identical_across_thread_counts() {
        assert_eq!(run(1), run(3));
    }
}
