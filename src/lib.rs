//! # smallgrad
//!
//! A small, from-scratch tensor library with reverse-mode automatic differentiation, written
//! to be read. It has exactly the operations a ResNet and the cosine + cross-entropy loss of
//! Barz & Denzler (WACV 2020) need, runs them on the CPU with rayon, and proves every gradient
//! against finite differences ([`gradcheck`]).
//!
//! ```
//! use smallgrad::{Tensor, Device};
//! let w: Tensor = Tensor::from_vec(vec![0.5, -1.0], &[2, 1], Device::Cpu)?.requires_grad();
//! let x: Tensor = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2], Device::Cpu)?;
//! let loss = x.matmul(&w)?.relu()?.sum()?;
//! loss.backward()?;
//! println!("{}", w.grad().unwrap());
//! # Ok::<(), smallgrad::Error>(())
//! ```
//!
//! Where to look: [`Tensor`] (creation, inspection, autograd), the op families under
//! `src/ops/` (each file holds forward, backward and the derivation), [`loss`], [`gradcheck`].

#![deny(missing_docs)]

/// Runs `$cuda` when `$dev` is a GPU, else `$cpu`: an op's one device dispatch. The CUDA
/// expression exists only with the `cuda` feature; otherwise it is compiled out.
macro_rules! on_device {
    ($dev:expr, cuda => $cuda:expr, cpu => $cpu:expr $(,)?) => {{
        #[cfg(feature = "cuda")]
        let r = if $dev != $crate::Device::Cpu { $cuda } else { $cpu };
        #[cfg(not(feature = "cuda"))]
        let r = $cpu;
        r
    }};
}

pub mod autograd;
mod backend;
pub mod checkpoint;
pub mod data;
mod device;
mod dtype;
mod error;
mod gradcheck;
#[cfg(doctest)]
mod guide;
mod instrument;
pub mod loss;
pub mod nn;
mod ops;
pub mod optim;
mod rng;
pub mod serialize;
pub mod shape;
mod tensor;
#[cfg(test)]
mod test_util;
pub mod viz;

pub use autograd::no_grad;
/// Which CPU kernels run: the fast ones (the default) or the readable reference kernels
/// (`SMALLGRAD_KERNELS=reference`).
pub use backend::cpu::kernels as cpu;
/// The CUDA backend's public helpers (feature `cuda`): allocator and call counters, and
/// synchronisation.
#[cfg(feature = "cuda")]
pub use backend::cuda::public as cuda;
pub use device::Device;
pub use dtype::Float;
pub use error::{Error, Result};
pub use gradcheck::{GradcheckOptions, GradcheckReport, InputReport, gradcheck};
pub use instrument::{Phase, Profile, detect_anomaly, profile};
pub use rng::Rng;
pub use shape::Pair;
pub use tensor::Tensor;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
