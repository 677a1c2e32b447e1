//! Optimisers and everything around a training step: [`Sgd`] (momentum, dampening, Nesterov,
//! weight decay, exactly PyTorch's `torch.optim.SGD`), learning-rate schedules
//! ([`CosineAnnealing`], [`StepDecay`], [`WarmRestarts`] behind the [`LrSchedule`] trait), and
//! global gradient-norm clipping ([`clip_grad_norm`]).
//!
//! A training step:
//!
//! ```
//! use smallgrad::{Tensor, Device};
//! use smallgrad::optim::{Sgd, SgdConfig, CosineAnnealing, clip_grad_norm};
//! let w = Tensor::<f32>::from_vec(vec![1.0, -2.0], &[2], Device::Cpu)?.requires_grad();
//! let mut opt = Sgd::new(vec![w.clone()], SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })?;
//! let sched = CosineAnnealing { base_lr: 0.1, min_lr: 0.0, t_max: 10 };
//! for epoch in 0..3 {
//!     opt.set_lr(sched.lr_at(epoch as f64));
//!     opt.zero_grad();
//!     let loss = w.mul(&w)?.sum()?;          // L = |w|^2, dL/dw = 2w
//!     loss.backward()?;
//!     clip_grad_norm(std::slice::from_ref(&w), 10.0)?;
//!     opt.step()?;                           // w <- w - lr * (momentum-averaged gradient)
//! }
//! let v = w.to_vec()?;
//! assert!(v[0].abs() < 1.0 && v[1].abs() < 2.0);
//! # Ok::<(), smallgrad::Error>(())
//! ```
//!
//! # How the update is done
//! Tensor storage is immutable to users; the optimiser is one of the two places that write it
//! (the other is batch norm's running statistics). [`Sgd::step`] runs one fused pass per
//! parameter over its storage through the crate-private `Tensor::update_in_place`, which bumps
//! the storage's version counter: a graph built before the step that saved the parameter for
//! its backward then fails with an `Err` instead of computing a gradient from the new values.

mod clip;
mod schedule;
mod sgd;

pub use clip::clip_grad_norm;
pub use schedule::{CosineAnnealing, LrSchedule, StepDecay, WarmRestarts};
pub use sgd::{Sgd, SgdConfig, SgdState};
