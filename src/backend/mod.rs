//! Device plumbing: thread-pool helpers, scratch and GEMM for the CPU ([`cpu`]); context,
//! stream, allocator, launches and cuBLAS for NVIDIA GPUs (`cuda`, feature `cuda`). Kernels here
//! know nothing about autograd.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
