//! Learning-rate schedules as closed forms of the epoch: `lr_at(epoch) -> lr`.
//!
//! `epoch` is an `f64` counted from 0, so a per-step schedule passes a fractional epoch
//! (`epoch + step / steps_per_epoch`), as PyTorch's `CosineAnnealingWarmRestarts.step(epoch)`
//! allows. The formulas are those of PyTorch's schedulers:
//!
//! ```text
//! CosineAnnealing (CosineAnnealingLR):   min + (base - min) * (1 + cos(pi * t / t_max)) / 2
//! StepDecay (StepLR):                    base * gamma^floor(t / step_size)
//! WarmRestarts (CosineAnnealingWarmRestarts, SGDR): cycle i lasts t0 * t_mult^i epochs;
//!     with t_cur the epochs since the current cycle began and t_i its length,
//!                                        min + (base - min) * (1 + cos(pi * t_cur / t_i)) / 2
//! ```
//!
//! A negative (or NaN) epoch is treated as 0; an infinite one gives NaN for the cosine forms. Schedules never fail: degenerate lengths
//! (`t_max`, `step_size` or `t0` of 0, which PyTorch rejects) are documented per type.

use std::f64::consts::PI;

/// A learning rate as a function of the (possibly fractional) epoch.
///
/// ```
/// use smallgrad::optim::{LrSchedule, StepDecay, CosineAnnealing};
/// let schedules: Vec<Box<dyn LrSchedule>> = vec![
///     Box::new(StepDecay { base_lr: 0.1, step_size: 30, gamma: 0.1 }),
///     Box::new(CosineAnnealing { base_lr: 0.1, min_lr: 0.0, t_max: 100 }),
/// ];
/// for s in &schedules {
///     assert_eq!(s.lr_at(0.0), 0.1);
/// }
/// ```
pub trait LrSchedule {
    /// The learning rate at `epoch` (0-based; fractional values allowed).
    fn lr_at(&self, epoch: f64) -> f64;
}

fn clamp_epoch(epoch: f64) -> f64 {
    if epoch > 0.0 { epoch } else { 0.0 }
}

/// Half a cosine from `base` (at t = 0) down to `min` (at t = len).
fn cosine(base: f64, min: f64, t: f64, len: f64) -> f64 {
    min + (base - min) * (1.0 + (PI * t / len).cos()) / 2.0
}

/// Cosine annealing from `base_lr` at epoch 0 to `min_lr` at epoch `t_max` (PyTorch's
/// `CosineAnnealingLR` closed form, `eta_min = min_lr`). Past `t_max` the cosine continues and
/// the rate rises again, as in PyTorch. `t_max == 0` gives `min_lr` everywhere.
///
/// ```
/// use smallgrad::optim::CosineAnnealing;
/// let s = CosineAnnealing { base_lr: 0.1, min_lr: 0.0, t_max: 10 };
/// assert_eq!(s.lr_at(0.0), 0.1);
/// assert!((s.lr_at(5.0) - 0.05).abs() < 1e-15);
/// assert!(s.lr_at(10.0).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineAnnealing {
    /// The rate at epoch 0.
    pub base_lr: f64,
    /// The rate at epoch `t_max` (PyTorch's `eta_min`).
    pub min_lr: f64,
    /// The number of epochs of the half cosine (PyTorch's `T_max`).
    pub t_max: usize,
}

impl CosineAnnealing {
    /// The learning rate at `epoch` (see the type's documentation).
    ///
    /// ```
    /// use smallgrad::optim::CosineAnnealing;
    /// let s = CosineAnnealing { base_lr: 1.0, min_lr: 0.5, t_max: 4 };
    /// assert!((s.lr_at(2.0) - 0.75).abs() < 1e-15);
    /// ```
    pub fn lr_at(&self, epoch: f64) -> f64 {
        if self.t_max == 0 {
            return self.min_lr;
        }
        cosine(self.base_lr, self.min_lr, clamp_epoch(epoch), self.t_max as f64)
    }
}

impl LrSchedule for CosineAnnealing {
    fn lr_at(&self, epoch: f64) -> f64 {
        CosineAnnealing::lr_at(self, epoch)
    }
}

/// Step decay: `base_lr * gamma^floor(epoch / step_size)` (PyTorch's `StepLR`).
/// `step_size == 0` means no decay (`base_lr` everywhere).
///
/// ```
/// use smallgrad::optim::StepDecay;
/// let s = StepDecay { base_lr: 0.1, step_size: 30, gamma: 0.1 };
/// assert_eq!(s.lr_at(29.9), 0.1);
/// assert!((s.lr_at(30.0) - 0.01).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepDecay {
    /// The rate during the first `step_size` epochs.
    pub base_lr: f64,
    /// Epochs between two decays.
    pub step_size: usize,
    /// The factor applied at each decay.
    pub gamma: f64,
}

impl StepDecay {
    /// The learning rate at `epoch` (see the type's documentation).
    ///
    /// ```
    /// use smallgrad::optim::StepDecay;
    /// let s = StepDecay { base_lr: 1.0, step_size: 2, gamma: 0.5 };
    /// assert_eq!([s.lr_at(0.0), s.lr_at(2.0), s.lr_at(5.0)], [1.0, 0.5, 0.25]);
    /// ```
    pub fn lr_at(&self, epoch: f64) -> f64 {
        if self.step_size == 0 {
            return self.base_lr;
        }
        let n = (clamp_epoch(epoch) / self.step_size as f64).floor();
        self.base_lr * self.gamma.powf(n)
    }
}

impl LrSchedule for StepDecay {
    fn lr_at(&self, epoch: f64) -> f64 {
        StepDecay::lr_at(self, epoch)
    }
}

/// SGDR, cosine annealing with warm restarts (Loshchilov & Hutter; PyTorch's
/// `CosineAnnealingWarmRestarts`): the first cycle lasts `t0` epochs, each next cycle `t_mult`
/// times longer; within a cycle the rate follows a half cosine from `base_lr` to `min_lr`,
/// then jumps back to `base_lr`. `t_mult == 0` is treated as 1; `t0 == 0` gives `min_lr`
/// everywhere.
///
/// ```
/// use smallgrad::optim::WarmRestarts;
/// let s = WarmRestarts { base_lr: 0.1, min_lr: 0.0, t0: 10, t_mult: 2 };
/// assert_eq!(s.lr_at(10.0), 0.1);                    // restart after the first 10 epochs
/// assert!((s.lr_at(20.0) - 0.05).abs() < 1e-15);     // half-way through the 20-epoch cycle
/// assert_eq!(s.lr_at(30.0), 0.1);                    // next restart
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmRestarts {
    /// The rate at the start of every cycle.
    pub base_lr: f64,
    /// The rate approached at the end of every cycle (PyTorch's `eta_min`).
    pub min_lr: f64,
    /// The length of the first cycle in epochs (PyTorch's `T_0`).
    pub t0: usize,
    /// The growth factor of cycle lengths (PyTorch's `T_mult`, `>= 1`).
    pub t_mult: usize,
}

impl WarmRestarts {
    /// The cycle containing `epoch`: `(t_cur, t_i)`, the epochs since the cycle began and the
    /// cycle's length. `None` when `t0 == 0`.
    ///
    /// ```
    /// use smallgrad::optim::WarmRestarts;
    /// let s = WarmRestarts { base_lr: 0.1, min_lr: 0.0, t0: 10, t_mult: 2 };
    /// assert_eq!(s.cycle(35.0), Some((5.0, 40.0)));     // cycles [0,10) [10,30) [30,70)
    /// ```
    pub fn cycle(&self, epoch: f64) -> Option<(f64, f64)> {
        if self.t0 == 0 {
            return None;
        }
        let epoch = clamp_epoch(epoch);
        let t0 = self.t0 as f64;
        let mult = self.t_mult.max(1) as f64;
        if mult == 1.0 {
            return Some((epoch % t0, t0));
        }
        // Walk the cycles (their lengths grow geometrically, so this is a few dozen steps at
        // most); exact at cycle boundaries, unlike a logarithm.
        let (mut start, mut len) = (0.0_f64, t0);
        while len.is_finite() && epoch >= start + len {
            start += len;
            len *= mult;
        }
        Some((epoch - start, len))
    }

    /// The learning rate at `epoch` (see the type's documentation).
    ///
    /// ```
    /// use smallgrad::optim::WarmRestarts;
    /// let s = WarmRestarts { base_lr: 1.0, min_lr: 0.0, t0: 4, t_mult: 1 };
    /// assert!((s.lr_at(6.0) - 0.5).abs() < 1e-15);      // half-way through the second cycle
    /// ```
    pub fn lr_at(&self, epoch: f64) -> f64 {
        match self.cycle(epoch) {
            Some((t_cur, t_i)) => cosine(self.base_lr, self.min_lr, t_cur, t_i),
            None => self.min_lr,
        }
    }
}

impl LrSchedule for WarmRestarts {
    fn lr_at(&self, epoch: f64) -> f64 {
        WarmRestarts::lr_at(self, epoch)
    }
}
