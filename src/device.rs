//! [`Device`]: where a tensor's data lives.

#[cfg(not(feature = "cuda"))]
use crate::Error;
use crate::Result;
use std::fmt;

/// Where a tensor's storage lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory; ops run on the CPU with rayon.
    #[default]
    Cpu,
    /// The n-th CUDA GPU (needs the `cuda` feature and a GPU; otherwise using it is an `Err`).
    Cuda(usize),
}

impl Device {
    /// `Device::Cuda(n)` if the crate was built with CUDA and that GPU is present, else `Cpu`.
    pub fn cuda_if_available(n: usize) -> Device {
        if Device::Cuda(n).check_available().is_ok() {
            Device::Cuda(n)
        } else {
            Device::Cpu
        }
    }

    /// `Ok` if tensors can be created on this device in this build on this machine.
    pub fn check_available(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => crate::backend::cuda::gpu(n).map(|_| ()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(n) => Err(Error::device(format!(
                "Device::Cuda({n}) is not available: smallgrad was built without the CUDA \
                 backend (build with `--features cuda`, see docs/cuda.md)"
            ))),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}
