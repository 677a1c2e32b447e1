//! The crate's side of a [`Tensor`]: the buffer behind it (host memory or a GPU allocation),
//! the shared storage with its lock and version counter, the read guards kernels use, and the
//! crate-private accessors and constructors the ops build on. Nothing here is public; the
//! tensor's public face is in `mod.rs`.

use super::{Inner, Tensor};
use crate::autograd::Node;
use crate::dtype::Float;
use crate::shape::numel;
use crate::{Device, Error, Result};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

/// The device buffer behind a tensor.
pub(crate) enum Buffer<T: Float> {
    /// Host memory.
    Cpu(Vec<T>),
    /// GPU memory (feature `cuda`).
    #[cfg(feature = "cuda")]
    Cuda(crate::backend::cuda::DevBuf<T>),
}

/// Shared storage: the buffer and its version counter (bumped by every in-place update).
pub(crate) struct Storage<T: Float> {
    buf: RwLock<Buffer<T>>,
    version: AtomicU64,
    /// The device holding `buf`: 0 for the CPU, n + 1 for `Cuda(n)` (changed only by
    /// `relocate`, which moves a module's parameters between devices).
    device: AtomicUsize,
}

fn encode(d: Device) -> usize {
    match d {
        Device::Cpu => 0,
        Device::Cuda(n) => n + 1,
    }
}

fn decode(v: usize) -> Device {
    match v {
        0 => Device::Cpu,
        n => Device::Cuda(n - 1),
    }
}

impl<T: Float> Buffer<T> {
    /// Host data as a buffer on `device` (kept as is on the CPU, uploaded to a GPU).
    pub(super) fn from_vec(data: Vec<T>, device: Device) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Buffer::Cpu(data)),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => Ok(Buffer::Cuda(crate::backend::cuda::gpu(n)?.upload(&data)?)),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(Error::device("CUDA support is not built in".to_string())),
        }
    }

    /// A copy of a host view on `device` (a view that is already a downloaded copy is reused).
    pub(super) fn copy_of(data: CpuRef<'_, T>, device: Device) -> Result<Self> {
        let owned = match data {
            #[cfg(feature = "cuda")]
            CpuRef::Owned(v) => v,
            view => view.to_vec(),
        };
        Self::from_vec(owned, device)
    }
}

/// Host memory of a dropped tensor goes to the buffer pool (`backend::cpu::pool`), which keeps
/// large buffers for the next op's output.
impl<T: Float> Drop for Storage<T> {
    fn drop(&mut self) {
        let buf = self.buf.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        #[allow(irrefutable_let_patterns)] // without the `cuda` feature, Cpu is the only variant
        if let Buffer::Cpu(v) = buf {
            crate::backend::cpu::pool::give(std::mem::take(v));
        }
    }
}

impl<T: Float> Storage<T> {
    pub(super) fn new(buf: Buffer<T>, device: Device) -> Arc<Self> {
        Arc::new(Storage {
            buf: RwLock::new(buf),
            version: AtomicU64::new(0),
            device: AtomicUsize::new(encode(device)),
        })
    }

    /// The device holding the buffer.
    pub(super) fn device(&self) -> Device {
        decode(self.device.load(Ordering::SeqCst))
    }
}

/// Host access to a tensor's data: a read guard on a CPU tensor's buffer, or (for inspection of
/// a GPU tensor) a downloaded copy. Dereferences to the slice.
pub(crate) enum CpuRef<'a, T: Float> {
    Guard(RwLockReadGuard<'a, Buffer<T>>),
    #[cfg(feature = "cuda")]
    Owned(Vec<T>),
}

impl<T: Float> Deref for CpuRef<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            CpuRef::Guard(g) => match &**g {
                Buffer::Cpu(v) => v,
                #[cfg(feature = "cuda")]
                Buffer::Cuda(_) => unreachable!("a guard is only taken on a CPU tensor"),
            },
            #[cfg(feature = "cuda")]
            CpuRef::Owned(v) => v,
        }
    }
}

/// A read guard on a GPU tensor's buffer; dereferences to the [`DevBuf`](crate::backend::cuda::DevBuf).
#[cfg(feature = "cuda")]
pub(crate) struct DevRef<'a, T: Float> {
    guard: RwLockReadGuard<'a, Buffer<T>>,
}

#[cfg(feature = "cuda")]
impl<T: Float> Deref for DevRef<'_, T> {
    type Target = crate::backend::cuda::DevBuf<T>;
    fn deref(&self) -> &Self::Target {
        match &*self.guard {
            Buffer::Cuda(b) => b,
            Buffer::Cpu(_) => unreachable!("a DevRef is only taken on a GPU tensor"),
        }
    }
}

impl<T: Float> Tensor<T> {
    /// Wraps a host vector (length already checked by the caller) as a new CPU leaf: how a CPU
    /// kernel's output becomes a tensor.
    pub(crate) fn from_cpu(data: Vec<T>, shape: Vec<usize>) -> Self {
        debug_assert_eq!(data.len(), numel(&shape), "from_cpu: length vs shape {shape:?}");
        Self::with_storage(Storage::new(Buffer::Cpu(data), Device::Cpu), shape, None)
    }

    pub(super) fn with_storage(storage: Arc<Storage<T>>, shape: Vec<usize>, node: Option<Arc<Node<T>>>) -> Self {
        Tensor {
            inner: Arc::new(Inner {
                shape,
                storage,
                node,
                requires_grad: AtomicBool::new(false),
                grad: Mutex::new(None),
            }),
        }
    }

    /// The same storage seen with another shape (same numel), as a new leaf without a node.
    pub(crate) fn view_as_shape(&self, shape: Vec<usize>) -> Self {
        debug_assert_eq!(numel(&shape), self.numel());
        Self::with_storage(self.inner.storage.clone(), shape, None)
    }

    /// This tensor's storage with `node` attached (used by `autograd::record`).
    pub(crate) fn with_node(self, node: Arc<Node<T>>) -> Self {
        Self::with_storage(self.inner.storage.clone(), self.inner.shape.clone(), Some(node))
    }

    /// An identity for this tensor (shared by its clones, distinct for every op output).
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const u8 as usize
    }

    pub(crate) fn node(&self) -> Option<&Arc<Node<T>>> {
        self.inner.node.as_ref()
    }

    /// Read access to the data of a CPU tensor.
    /// Ops call this to read their inputs; for tracing and profiling it also marks the start
    /// of the op (see `instrument`).
    pub(crate) fn values(&self) -> Result<CpuRef<'_, T>> {
        crate::instrument::op_started();
        match self.device() {
            Device::Cpu => self.host_values(),
            d => Err(Error::device(format!(
                "a CPU kernel was handed a tensor on {d} (shape {:?}); this op has no path for that device",
                self.shape()
            ))),
        }
    }

    /// Read access without marking an op start (inspection: `to_vec`, `item`, `Display`). A GPU
    /// tensor is downloaded.
    pub(crate) fn host_values(&self) -> Result<CpuRef<'_, T>> {
        let guard = self.inner.storage.buf.read().unwrap();
        match &*guard {
            Buffer::Cpu(_) => Ok(CpuRef::Guard(guard)),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => Ok(CpuRef::Owned(b.gpu().download(b)?)),
        }
    }

    /// Read access to the buffer of a GPU tensor (ops' CUDA paths); marks the op start.
    #[cfg(feature = "cuda")]
    pub(crate) fn dev(&self) -> Result<DevRef<'_, T>> {
        crate::instrument::op_started();
        let guard = self.inner.storage.buf.read().unwrap();
        match &*guard {
            Buffer::Cuda(_) => Ok(DevRef { guard }),
            Buffer::Cpu(_) => Err(Error::device(format!(
                "a CUDA kernel was handed a tensor on cpu (shape {:?})",
                self.shape()
            ))),
        }
    }

    /// Wraps a device buffer (length already checked by the caller) as a new leaf on its GPU.
    #[cfg(feature = "cuda")]
    pub(crate) fn from_dev(buf: crate::backend::cuda::DevBuf<T>, shape: Vec<usize>) -> Self {
        debug_assert_eq!(buf.len(), numel(&shape), "from_dev: length vs shape {shape:?}");
        let device = Device::Cuda(buf.gpu().ordinal);
        Self::with_storage(Storage::new(Buffer::Cuda(buf), device), shape, None)
    }

    /// Updates a GPU tensor's buffer in place through `f` (optimiser steps, running statistics)
    /// and bumps the version counter, as [`update_in_place`](Self::update_in_place).
    #[cfg(feature = "cuda")]
    pub(crate) fn update_in_place_dev(
        &self,
        f: impl FnOnce(&crate::backend::cuda::DevBuf<T>) -> Result<()>,
    ) -> Result<()> {
        // A write lock although the host only reads the handle: the GPU writes the buffer, and no
        // reader may see it half-updated.
        #[allow(clippy::readonly_write_lock)]
        let buf = self.inner.storage.buf.write().unwrap();
        match &*buf {
            Buffer::Cuda(b) => f(b)?,
            Buffer::Cpu(_) => return Err(Error::device("update_in_place_dev on a CPU tensor".to_string())),
        }
        self.inner.storage.version.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The storage version (bumped by each in-place update).
    pub(crate) fn version(&self) -> u64 {
        self.inner.storage.version.load(Ordering::SeqCst)
    }

    /// Updates the data in place (optimiser steps, running statistics) and bumps the version
    /// counter, so that a backward which saved this tensor fails instead of using new values.
    /// A GPU tensor is downloaded, updated and uploaded (for rare updates such as loading a
    /// checkpoint; the hot paths have device kernels).
    pub(crate) fn update_in_place(&self, f: impl FnOnce(&mut [T])) -> Result<()> {
        let mut buf = self.inner.storage.buf.write().unwrap();
        match &mut *buf {
            Buffer::Cpu(v) => f(v),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => {
                let g = b.gpu();
                let mut host = g.download(b)?;
                f(&mut host);
                g.write(b, &host)?;
            }
        }
        self.inner.storage.version.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Moves this tensor's storage to `device` in place (every handle sharing it moves too),
    /// bumping the version counter and dropping the gradient (which lives on the old device).
    /// For moving a module's parameters and buffers (`nn::to_device`).
    pub(crate) fn relocate(&self, device: Device) -> Result<()> {
        device.check_available()?;
        if device == self.device() {
            return Ok(());
        }
        let moved = Buffer::copy_of(self.host_values()?, device)?; // the read guard ends here
        *self.inner.storage.buf.write().unwrap() = moved;
        self.inner.storage.device.store(encode(device), Ordering::SeqCst);
        self.inner.storage.version.fetch_add(1, Ordering::SeqCst);
        *self.inner.grad.lock().unwrap() = None;
        Ok(())
    }

    /// Adds `g` into this leaf's gradient (summing across backward calls).
    pub(crate) fn accumulate_grad(&self, g: Tensor<T>) -> Result<()> {
        let mut slot = self.inner.grad.lock().unwrap();
        let new = match slot.take() {
            None => g,
            Some(prev) => prev.add(&g)?,
        };
        *slot = Some(new.detach());
        Ok(())
    }

    /// Replaces this leaf's gradient (`clip_grad_norm` writes scaled gradients back). The new
    /// gradient is stored detached. No-op on non-leaves.
    pub(crate) fn set_grad(&self, g: Option<Tensor<T>>) {
        if self.inner.node.is_none() {
            *self.inner.grad.lock().unwrap() = g.map(|g| g.detach());
        }
    }

    /// True if both handles read the same storage (e.g. a tensor and its `detach`), so a read
    /// of one while writing the other in place would alias.
    pub(crate) fn shares_storage(&self, other: &Tensor<T>) -> bool {
        Arc::ptr_eq(&self.inner.storage, &other.inner.storage)
    }

    /// `Err` unless both tensors are on the same device.
    pub(crate) fn same_device(&self, op: &'static str, other: &Tensor<T>) -> Result<()> {
        if self.device() == other.device() {
            Ok(())
        } else {
            Err(Error::device(format!(
                "{op}: tensors on different devices ({} and {}); move one with to_device",
                self.device(),
                other.device()
            )))
        }
    }
}
