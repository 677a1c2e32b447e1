//! Device plumbing: thread-pool helpers and GEMM for the CPU (CUDA later). Kernels here know
//! nothing about autograd.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
