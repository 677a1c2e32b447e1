//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and (L2) weight
//! decay, in exactly the order of PyTorch's `torch.optim.SGD`. For each parameter `p` with a
//! gradient `g` (parameters without a gradient are skipped, their momentum left untouched):
//!
//! ```text
//! d = g
//! if weight_decay != 0:  d = d + weight_decay * p
//! if momentum != 0:
//!     buf = d                                            (first step of this parameter)
//!     buf = momentum * buf + (1 - dampening) * d         (later steps)
//!     d = d + momentum * buf   if nesterov   else   d = buf
//! p = p - lr * d
//! ```
//!
//! The whole update of one parameter is one pass over its storage ([`sgd_update`]): no
//! temporary tensors, and the graph is not recorded.

use crate::autograd::no_grad;
use crate::backend::cpu::{CHUNK, PAR_THRESHOLD};
use crate::dtype::Float;
use crate::tensor::Tensor;
use crate::{Error, Result};
use rayon::prelude::*;

/// Hyper-parameters of [`Sgd`]. All fields are public; `Default` gives PyTorch's defaults:
/// `lr = 1e-3`, `momentum = 0`, `weight_decay = 0`, `nesterov = false`, `dampening = 0`.
///
/// ```
/// use smallgrad::optim::SgdConfig;
/// let c = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() };
/// assert_eq!((c.weight_decay, c.dampening), (0.0, 0.0));
/// assert_eq!(SgdConfig::default().lr, 1e-3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (step size), `>= 0`. Schedules change it with [`Sgd::set_lr`].
    pub lr: f64,
    /// Momentum factor, `>= 0` (0 disables momentum and its buffers).
    pub momentum: f64,
    /// L2 penalty added to the gradient as `weight_decay * p`, `>= 0`.
    pub weight_decay: f64,
    /// Nesterov momentum (needs `momentum > 0` and `dampening == 0`).
    pub nesterov: bool,
    /// Dampening of the new gradient in the momentum average (`1 - dampening` weights it).
    pub dampening: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            dampening: 0.0,
        }
    }
}

/// The state of an [`Sgd`] optimiser, for checkpoints: restoring it with [`Sgd::load_state`]
/// (onto parameters with the same values) continues training bit-identically.
///
/// ```
/// use smallgrad::optim::SgdState;
/// let s: SgdState<f32> = SgdState { lr: 0.1, step: 0, momentum_buffers: vec![None] };
/// assert_eq!(s.momentum_buffers.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SgdState<T: Float> {
    /// The current learning rate (as last set by [`Sgd::set_lr`] or the config).
    pub lr: f64,
    /// The number of completed [`Sgd::step`] calls.
    pub step: u64,
    /// One entry per parameter, in order: its momentum buffer (row-major, the parameter's
    /// number of elements), or `None` before its first update or without momentum.
    pub momentum_buffers: Vec<Option<Vec<T>>>,
}

/// SGD over a fixed list of parameters, exactly as PyTorch's `torch.optim.SGD` (see the
/// module documentation for the update order).
///
/// ```
/// use smallgrad::{Tensor, Device};
/// use smallgrad::optim::{Sgd, SgdConfig};
/// let w = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2], Device::Cpu)?.requires_grad();
/// let mut opt = Sgd::new(vec![w.clone()], SgdConfig { lr: 0.5, ..Default::default() })?;
/// w.mul_scalar(3.0)?.sum()?.backward()?;       // dL/dw = 3
/// opt.step()?;                                  // w <- w - 0.5 * 3
/// assert_eq!(w.to_vec()?, vec![-0.5, 0.5]);
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub struct Sgd<T: Float = f32> {
    params: Vec<Tensor<T>>,
    config: SgdConfig,
    buffers: Vec<Option<Momentum<T>>>,
    step: u64,
}

/// A momentum buffer, kept on the parameter's device.
enum Momentum<T: Float> {
    Host(Vec<T>),
    #[cfg(feature = "cuda")]
    Dev(crate::backend::cuda::DevBuf<T>),
}

impl<T: Float> Momentum<T> {
    fn to_host(&self) -> Result<Vec<T>> {
        match self {
            Momentum::Host(v) => Ok(v.clone()),
            #[cfg(feature = "cuda")]
            Momentum::Dev(b) => b.gpu().download(b),
        }
    }

    /// `values` as a buffer on `device`.
    fn on(device: crate::Device, values: Vec<T>) -> Result<Self> {
        match device {
            #[cfg(feature = "cuda")]
            crate::Device::Cuda(n) => Ok(Momentum::Dev(crate::backend::cuda::gpu(n)?.upload(&values)?)),
            _ => Ok(Momentum::Host(values)),
        }
    }
}

fn check_nonneg(what: &str, v: f64) -> Result<()> {
    if v >= 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(
            "Sgd",
            format!("{what} must be finite and >= 0, got {v}"),
        ))
    }
}

impl<T: Float> Sgd<T> {
    /// An optimiser for `params` (leaf tensors, normally marked `requires_grad`).
    ///
    /// `Err` (as PyTorch's `ValueError`s) if `lr`, `momentum` or `weight_decay` is negative (or
    /// not finite), if `dampening` is not finite, if `nesterov` is set without `momentum > 0`
    /// and `dampening == 0`, or if a parameter is not a leaf (it could not be updated).
    ///
    /// ```
    /// use smallgrad::{Tensor, Device};
    /// use smallgrad::optim::{Sgd, SgdConfig};
    /// let w = Tensor::<f32>::zeros(&[3], Device::Cpu)?.requires_grad();
    /// let bad = SgdConfig { nesterov: true, momentum: 0.0, ..Default::default() };
    /// assert!(Sgd::new(vec![w.clone()], bad).is_err());
    /// assert!(Sgd::new(vec![w], SgdConfig { lr: -1.0, ..Default::default() }).is_err());
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn new(params: Vec<Tensor<T>>, config: SgdConfig) -> Result<Self> {
        check_nonneg("lr", config.lr)?;
        check_nonneg("momentum", config.momentum)?;
        check_nonneg("weight_decay", config.weight_decay)?;
        if !config.dampening.is_finite() {
            return Err(Error::invalid(
                "Sgd",
                format!("dampening must be finite, got {}", config.dampening),
            ));
        }
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::invalid(
                "Sgd",
                format!(
                    "Nesterov momentum requires a momentum and zero dampening (got momentum {}, \
                     dampening {})",
                    config.momentum, config.dampening
                ),
            ));
        }
        if let Some(i) = params.iter().position(|p| !p.is_leaf()) {
            return Err(Error::invalid(
                "Sgd",
                format!(
                    "parameter {i} (shape {:?}) is not a leaf tensor (made by `{}`); optimise leaves",
                    params[i].shape(),
                    params[i].op_name().unwrap_or("?")
                ),
            ));
        }
        let buffers = params.iter().map(|_| None).collect();
        Ok(Sgd {
            params,
            config,
            buffers,
            step: 0,
        })
    }

    /// The parameters, in the order given to [`new`](Self::new).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// # use smallgrad::optim::{Sgd, SgdConfig};
    /// let w = Tensor::<f32>::zeros(&[3], Device::Cpu)?.requires_grad();
    /// let opt = Sgd::new(vec![w], SgdConfig::default())?;
    /// assert_eq!(opt.params().len(), 1);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn params(&self) -> &[Tensor<T>] {
        &self.params
    }

    /// The configuration, with the current learning rate.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// # use smallgrad::optim::{Sgd, SgdConfig};
    /// let opt = Sgd::<f32>::new(vec![], SgdConfig { momentum: 0.9, ..Default::default() })?;
    /// assert_eq!(opt.config().momentum, 0.9);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// The current learning rate.
    ///
    /// ```
    /// # use smallgrad::optim::{Sgd, SgdConfig};
    /// let mut opt = Sgd::<f32>::new(vec![], SgdConfig { lr: 0.1, ..Default::default() })?;
    /// opt.set_lr(0.01);
    /// assert_eq!(opt.lr(), 0.01);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate for the following steps (what a schedule calls each epoch or
    /// step). Not validated here: [`step`](Self::step) returns `Err` for a negative or
    /// non-finite rate.
    ///
    /// ```
    /// # use smallgrad::optim::{Sgd, SgdConfig};
    /// let mut opt = Sgd::<f32>::new(vec![], SgdConfig::default())?;
    /// opt.set_lr(0.5);
    /// assert_eq!(opt.lr(), 0.5);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The number of completed [`step`](Self::step) calls.
    ///
    /// ```
    /// # use smallgrad::optim::{Sgd, SgdConfig};
    /// let mut opt = Sgd::<f32>::new(vec![], SgdConfig::default())?;
    /// opt.step()?;
    /// assert_eq!(opt.steps(), 1);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Clears every parameter's gradient (it becomes `None`, as PyTorch's default
    /// `set_to_none=True`).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// # use smallgrad::optim::{Sgd, SgdConfig};
    /// let w = Tensor::<f32>::ones(&[2], Device::Cpu)?.requires_grad();
    /// let opt = Sgd::new(vec![w.clone()], SgdConfig::default())?;
    /// w.sum()?.backward()?;
    /// opt.zero_grad();
    /// assert!(w.grad().is_none());
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn zero_grad(&self) {
        for p in &self.params {
            p.zero_grad();
        }
    }

    /// One SGD update of every parameter that has a gradient, in place (see the module
    /// documentation for the formula). Parameters without a gradient are skipped and their
    /// momentum buffers kept. Bumps each updated parameter's version, so a graph recorded
    /// before the step that saved a parameter can no longer be backpropagated (`Err`).
    ///
    /// `Err` (before anything is modified) if the learning rate is negative or not finite, or
    /// a gradient's number of elements differs from its parameter's.
    ///
    /// ```
    /// use smallgrad::{Tensor, Device};
    /// use smallgrad::optim::{Sgd, SgdConfig};
    /// let w = Tensor::<f64>::from_vec(vec![1.0], &[1], Device::Cpu)?.requires_grad();
    /// let mut opt = Sgd::new(vec![w.clone()], SgdConfig { lr: 0.1, momentum: 0.5, ..Default::default() })?;
    /// for _ in 0..2 {
    ///     opt.zero_grad();
    ///     w.mul_scalar(2.0)?.sum()?.backward()?;   // gradient 2 each step
    ///     opt.step()?;
    /// }
    /// // buf: 2, then 0.5 * 2 + 2 = 3; w = 1 - 0.1 * 2 - 0.1 * 3
    /// assert!((w.item()? - 0.5).abs() < 1e-12);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn step(&mut self) -> Result<()> {
        check_nonneg("lr", self.config.lr)?;
        let grads: Vec<Option<Tensor<T>>> = self.params.iter().map(|p| p.grad()).collect();
        for (i, (p, g)) in self.params.iter().zip(&grads).enumerate() {
            if let Some(g) = g
                && g.numel() != p.numel()
            {
                return Err(Error::shape(
                    "Sgd::step",
                    format!(
                        "parameter {i} has shape {:?} but its gradient has shape {:?}",
                        p.shape(),
                        g.shape()
                    ),
                ));
            }
        }
        let c = &self.config;
        let h = SgdHyper {
            lr: T::from_f64(c.lr),
            momentum: T::from_f64(c.momentum),
            one_minus_dampening: T::from_f64(1.0 - c.dampening),
            weight_decay: T::from_f64(c.weight_decay),
            use_weight_decay: c.weight_decay != 0.0,
            nesterov: c.nesterov,
        };
        let use_momentum = c.momentum != 0.0;
        no_grad(|| -> Result<()> {
            for ((p, g), slot) in self.params.iter().zip(&grads).zip(self.buffers.iter_mut()) {
                let Some(g) = g else { continue };
                #[cfg(feature = "cuda")]
                if p.device() != crate::Device::Cpu {
                    sgd_update_cuda(p, g, slot, use_momentum, &h)?;
                    continue;
                }
                // A gradient that aliases its own parameter (`p.backward_with(&p)`) must be
                // copied first: we cannot read and write the same storage at once.
                let owned;
                let guard;
                let gs: &[T] = if g.shares_storage(p) {
                    owned = g.to_vec()?;
                    &owned
                } else {
                    guard = g.values()?;
                    &guard
                };
                let mom = if use_momentum {
                    let first = slot.is_none();
                    let buf = slot.get_or_insert_with(|| Momentum::Host(vec![T::ZERO; gs.len()]));
                    match buf {
                        Momentum::Host(v) => Some((v.as_mut_slice(), first)),
                        #[cfg(feature = "cuda")]
                        Momentum::Dev(_) => unreachable!("a CPU parameter's buffer is on the host"),
                    }
                } else {
                    None
                };
                p.update_in_place(|ps| sgd_update(ps, gs, mom, &h))?;
            }
            Ok(())
        })?;
        self.step += 1;
        Ok(())
    }

    /// A copy of the optimiser's state (learning rate, step count, momentum buffers), for
    /// checkpoints.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// # use smallgrad::optim::{Sgd, SgdConfig};
    /// let w = Tensor::<f32>::ones(&[2], Device::Cpu)?.requires_grad();
    /// let mut opt = Sgd::new(vec![w.clone()], SgdConfig { momentum: 0.9, ..Default::default() })?;
    /// w.sum()?.backward()?;
    /// opt.step()?;
    /// let s = opt.state();
    /// assert_eq!((s.step, s.momentum_buffers[0].clone()), (1, Some(vec![1.0, 1.0])));
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    ///
    /// # Panics
    /// Only if a momentum buffer on a GPU cannot be copied back (a device fault);
    /// [`try_state`](Self::try_state) returns that as an `Err` instead.
    pub fn state(&self) -> SgdState<T> {
        self.try_state().expect("copying the SGD momentum buffers from the GPU")
    }

    /// As [`state`](Self::state), with a failed copy from a GPU as an `Err`.
    pub fn try_state(&self) -> Result<SgdState<T>> {
        let momentum_buffers = self
            .buffers
            .iter()
            .map(|b| b.as_ref().map(Momentum::to_host).transpose())
            .collect::<Result<_>>()?;
        Ok(SgdState {
            lr: self.config.lr,
            step: self.step,
            momentum_buffers,
        })
    }

    /// Restores a state saved by [`state`](Self::state) (learning rate, step count, momentum
    /// buffers). `Err`, leaving the optimiser unchanged, if the number of buffers differs from
    /// the number of parameters, a buffer's length differs from its parameter's number of
    /// elements, buffers are given while momentum is 0, or the learning rate is invalid.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// # use smallgrad::optim::{Sgd, SgdConfig, SgdState};
    /// let w = Tensor::<f32>::ones(&[2], Device::Cpu)?.requires_grad();
    /// let mut opt = Sgd::new(vec![w], SgdConfig { momentum: 0.9, ..Default::default() })?;
    /// let bad = SgdState { lr: 0.1, step: 3, momentum_buffers: vec![Some(vec![0.0; 3])] };
    /// assert!(opt.load_state(bad).is_err());
    /// opt.load_state(SgdState { lr: 0.1, step: 3, momentum_buffers: vec![Some(vec![0.5; 2])] })?;
    /// assert_eq!(opt.steps(), 3);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn load_state(&mut self, state: SgdState<T>) -> Result<()> {
        check_nonneg("lr", state.lr)?;
        if state.momentum_buffers.len() != self.params.len() {
            return Err(Error::shape(
                "Sgd::load_state",
                format!(
                    "the state holds {} momentum buffers but the optimiser has {} parameters",
                    state.momentum_buffers.len(),
                    self.params.len()
                ),
            ));
        }
        for (i, (b, p)) in state.momentum_buffers.iter().zip(&self.params).enumerate() {
            let Some(b) = b else { continue };
            if self.config.momentum == 0.0 {
                return Err(Error::invalid(
                    "Sgd::load_state",
                    format!("momentum buffer {i} given but this optimiser has momentum 0"),
                ));
            }
            if b.len() != p.numel() {
                return Err(Error::shape(
                    "Sgd::load_state",
                    format!(
                        "momentum buffer {i} has {} values but parameter {i} has shape {:?} ({} elements)",
                        b.len(),
                        p.shape(),
                        p.numel()
                    ),
                ));
            }
        }
        let buffers = state
            .momentum_buffers
            .into_iter()
            .zip(&self.params)
            .map(|(b, p)| b.map(|v| Momentum::on(p.device(), v)).transpose())
            .collect::<Result<_>>()?;
        self.config.lr = state.lr;
        self.step = state.step;
        self.buffers = buffers;
        Ok(())
    }
}

/// The hyper-parameters of one update, already in the element type.
pub(crate) struct SgdHyper<T: Float> {
    pub(crate) lr: T,
    pub(crate) momentum: T,
    pub(crate) one_minus_dampening: T,
    pub(crate) weight_decay: T,
    pub(crate) use_weight_decay: bool,
    pub(crate) nesterov: bool,
}

/// The GPU twin of the CPU loop body: one `sgd_update` kernel (kernels/optim.cu) per parameter.
#[cfg(feature = "cuda")]
fn sgd_update_cuda<T: Float>(
    p: &Tensor<T>,
    g: &Tensor<T>,
    slot: &mut Option<Momentum<T>>,
    use_momentum: bool,
    h: &SgdHyper<T>,
) -> Result<()> {
    use crate::backend::cuda::{arg, float_arg, gpu_of};
    let gpu = gpu_of(p)?;
    // A gradient aliasing its parameter is copied first (as on the CPU).
    let g = if g.shares_storage(p) {
        Tensor::from_dev(gpu.duplicate(&*g.dev()?)?, g.shape().to_vec())
    } else {
        g.clone()
    };
    let first = i64::from(slot.is_none());
    if use_momentum && slot.is_none() {
        // Uninitialised: the first update writes buf = d before reading it.
        *slot = Some(Momentum::Dev(gpu.alloc::<T>(p.numel())?));
    }
    let pbuf = match slot {
        Some(Momentum::Dev(b)) if use_momentum => b.ptr(),
        _ => 0,
    };
    let bg = g.dev()?;
    let (pg, n) = (bg.ptr(), p.numel() as i64);
    let (use_wd, has_mom, nesterov) = (
        i64::from(h.use_weight_decay),
        i64::from(use_momentum),
        i64::from(h.nesterov),
    );
    p.update_in_place_dev(|pb| {
        let pp = pb.ptr();
        gpu.launch::<T>(
            "optim",
            "sgd_update",
            p.numel(),
            &[
                arg(&pp),
                arg(&pg),
                arg(&pbuf),
                arg(&n),
                float_arg(&h.lr),
                float_arg(&h.momentum),
                float_arg(&h.one_minus_dampening),
                float_arg(&h.weight_decay),
                arg(&use_wd),
                arg(&has_mom),
                arg(&first),
                arg(&nesterov),
            ],
        )
    })
}

/// The fused SGD update of one parameter `p` with gradient `g`, in place. `mom` is the momentum
/// buffer (same length) and whether this is its first use (then `buf = d`), or `None` without
/// momentum. Elementwise, so parallel chunks give the same bits as one thread.
pub(crate) fn sgd_update<T: Float>(p: &mut [T], g: &[T], mom: Option<(&mut [T], bool)>, h: &SgdHyper<T>) {
    debug_assert_eq!(p.len(), g.len());
    let par = p.len() >= PAR_THRESHOLD;
    match mom {
        None => {
            if par {
                p.par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .for_each(|(p, g)| update_plain(p, g, h));
            } else {
                update_plain(p, g, h);
            }
        }
        Some((buf, first)) => {
            debug_assert_eq!(buf.len(), p.len());
            if par {
                p.par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .zip(buf.par_chunks_mut(CHUNK))
                    .for_each(|((p, g), b)| update_momentum(p, g, b, first, h));
            } else {
                update_momentum(p, g, buf, first, h);
            }
        }
    }
}

fn update_plain<T: Float>(p: &mut [T], g: &[T], h: &SgdHyper<T>) {
    for (p, &g) in p.iter_mut().zip(g) {
        let d = if h.use_weight_decay { g + h.weight_decay * *p } else { g };
        *p -= h.lr * d;
    }
}

fn update_momentum<T: Float>(p: &mut [T], g: &[T], buf: &mut [T], first: bool, h: &SgdHyper<T>) {
    for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
        let d = if h.use_weight_decay { g + h.weight_decay * *p } else { g };
        *b = if first {
            d
        } else {
            h.momentum * *b + h.one_minus_dampening * d
        };
        let d = if h.nesterov { d + h.momentum * *b } else { *b };
        *p -= h.lr * d;
    }
}
