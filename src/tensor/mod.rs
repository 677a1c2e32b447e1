//! [`Tensor`]: a cheap, thread-safe handle to an n-dimensional array on a [`Device`], plus the
//! node of the graph that produced it.
//!
//! Data are contiguous and row-major (NCHW for images). `reshape` and `flatten` share storage;
//! every other op makes new storage. Storage is immutable to users; the optimiser and batch
//! norm's running statistics update it through the crate-private [`Tensor::update_in_place`],
//! which bumps a version counter that backward checks.

mod fmt;

use crate::autograd::{self, Node};
use crate::dtype::Float;
use crate::rng::Rng;
use crate::shape::{checked_numel, numel};
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
    fn from_vec(data: Vec<T>, device: Device) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Buffer::Cpu(data)),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => Ok(Buffer::Cuda(crate::backend::cuda::gpu(n)?.upload(&data)?)),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(Error::device("CUDA support is not built in".to_string())),
        }
    }

    /// A copy of a host view on `device` (a view that is already a downloaded copy is reused).
    fn copy_of(data: CpuRef<'_, T>, device: Device) -> Result<Self> {
        let owned = match data {
            #[cfg(feature = "cuda")]
            CpuRef::Owned(v) => v,
            view => view.to_vec(),
        };
        Self::from_vec(owned, device)
    }
}

impl<T: Float> Storage<T> {
    fn new(buf: Buffer<T>, device: Device) -> Arc<Self> {
        Arc::new(Storage {
            buf: RwLock::new(buf),
            version: AtomicU64::new(0),
            device: AtomicUsize::new(encode(device)),
        })
    }
}

struct Inner<T: Float> {
    shape: Vec<usize>,
    storage: Arc<Storage<T>>,
    /// The op that produced this tensor; `None` for leaves.
    node: Option<Arc<Node<T>>>,
    /// For leaves: whether gradients flow into `grad`.
    requires_grad: AtomicBool,
    /// For leaves: the accumulated gradient.
    grad: Mutex<Option<Tensor<T>>>,
}

/// The backward of `to_device`: the gradient moves back to the source device.
struct ToDeviceBackward {
    from: Device,
}

impl<T: Float> crate::autograd::Backward<T> for ToDeviceBackward {
    fn name(&self) -> &'static str {
        "to_device"
    }
    fn backward(&self, g: &Tensor<T>, _inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(g.to_device(self.from)?)])
    }
}

/// An n-dimensional array of `f32` (default) or `f64` on a [`Device`], with reverse-mode
/// autograd. Cloning is cheap (an `Arc`), and tensors are `Send + Sync`.
///
/// ```
/// use smallgrad::{Tensor, Device};
/// let x: Tensor = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3], Device::Cpu)?.requires_grad();
/// let y = x.mul(&x)?.sum()?;          // y = sum(x^2)
/// y.backward()?;
/// assert_eq!(x.grad().unwrap().to_vec()?, vec![2.0, 4.0, 6.0]);   // dy/dx = 2x
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub struct Tensor<T: Float = f32> {
    inner: Arc<Inner<T>>,
}

impl<T: Float> Clone for Tensor<T> {
    fn clone(&self) -> Self {
        Tensor {
            inner: self.inner.clone(),
        }
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

/// A host buffer of `shape`'s size filled with `value`; `Err` (not an abort) when the size
/// overflows or the memory cannot be reserved.
fn filled<T: Float>(shape: &[usize], value: T) -> Result<Vec<T>> {
    let n = checked_numel("tensor creation", shape)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        msg: format!("cannot allocate {n} elements of {} for shape {shape:?}", T::DTYPE),
    })?;
    v.resize(n, value);
    Ok(v)
}

impl<T: Float> Tensor<T> {
    // ---------------------------------------------------------------- crate-private plumbing

    /// Wraps a host vector (length already checked by the caller) as a new leaf on `device`.
    pub(crate) fn from_parts(data: Vec<T>, shape: Vec<usize>, device: Device) -> Self {
        debug_assert_eq!(data.len(), numel(&shape), "from_parts: length vs shape {shape:?}");
        debug_assert_eq!(device, Device::Cpu, "from_parts holds host data");
        Self::with_storage(Storage::new(Buffer::Cpu(data), device), shape, None)
    }

    fn with_storage(storage: Arc<Storage<T>>, shape: Vec<usize>, node: Option<Arc<Node<T>>>) -> Self {
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
    pub(crate) fn cpu(&self) -> Result<CpuRef<'_, T>> {
        crate::instrument::op_started();
        match self.device() {
            Device::Cpu => self.host(),
            d => Err(Error::device(format!(
                "a CPU kernel was handed a tensor on {d} (shape {:?}); this op has no path for that device",
                self.shape()
            ))),
        }
    }

    /// Read access without marking an op start (inspection: `to_vec`, `item`, `Display`). A GPU
    /// tensor is downloaded.
    pub(crate) fn host(&self) -> Result<CpuRef<'_, T>> {
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
        let moved = Buffer::copy_of(self.host()?, device)?; // the read guard ends here
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

    // ---------------------------------------------------------------- creation

    /// A tensor holding `data` (row-major) with the given shape.
    /// `Err` if `data.len()` differs from the product of `shape` or the device is unavailable.
    pub fn from_vec(data: Vec<T>, shape: &[usize], device: Device) -> Result<Self> {
        device.check_available()?;
        if data.len() != checked_numel("from_vec", shape)? {
            return Err(Error::shape(
                "from_vec",
                format!(
                    "{} values cannot fill shape {shape:?} ({} elements)",
                    data.len(),
                    numel(shape)
                ),
            ));
        }
        Self::from_host(data, shape.to_vec(), device)
    }

    /// Host data (length already checked) as a new leaf on `device`, uploading to a GPU.
    pub(crate) fn from_host(data: Vec<T>, shape: Vec<usize>, device: Device) -> Result<Self> {
        Ok(Self::with_storage(
            Storage::new(Buffer::from_vec(data, device)?, device),
            shape,
            None,
        ))
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], device: Device) -> Result<Self> {
        Self::full(shape, T::ZERO, device)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize], device: Device) -> Result<Self> {
        Self::full(shape, T::ONE, device)
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: T, device: Device) -> Result<Self> {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(n) = device {
            // Filled on the GPU: no host buffer of the full size.
            let len = checked_numel("tensor creation", shape)?;
            let g = crate::backend::cuda::gpu(n)?;
            let b = g.alloc::<T>(len)?;
            g.fill_raw(b.ptr(), len, value)?;
            return Ok(Self::from_dev(b, shape.to_vec()));
        }
        Self::from_vec(filled(shape, value)?, shape, device)
    }

    /// Standard-normal values drawn from `Rng::new(seed)`.
    pub fn randn(shape: &[usize], seed: u64, device: Device) -> Result<Self> {
        Self::randn_with(shape, &mut Rng::new(seed), device)
    }

    /// Standard-normal values drawn from `rng` (advancing it).
    pub fn randn_with(shape: &[usize], rng: &mut Rng, device: Device) -> Result<Self> {
        let mut data = filled(shape, T::ZERO)?;
        data.iter_mut().for_each(|v| *v = T::from_f64(rng.normal()));
        Self::from_vec(data, shape, device)
    }

    /// Uniform values in [0, 1) drawn from `Rng::new(seed)`.
    pub fn rand(shape: &[usize], seed: u64, device: Device) -> Result<Self> {
        Self::rand_with(shape, &mut Rng::new(seed), device)
    }

    /// Uniform values in [0, 1) drawn from `rng` (advancing it).
    pub fn rand_with(shape: &[usize], rng: &mut Rng, device: Device) -> Result<Self> {
        let mut data = filled(shape, T::ZERO)?;
        data.iter_mut().for_each(|v| *v = T::from_f64(rng.uniform()));
        Self::from_vec(data, shape, device)
    }

    /// One-hot rows: shape `[targets.len(), num_classes]`, 1 at each target's class.
    /// `Err` if a target is `>= num_classes`.
    pub fn one_hot(targets: &[usize], num_classes: usize, device: Device) -> Result<Self> {
        let mut data = filled(&[targets.len(), num_classes], T::ZERO)?;
        for (i, &t) in targets.iter().enumerate() {
            if t >= num_classes {
                return Err(Error::invalid(
                    "one_hot",
                    format!("target {t} at position {i} is out of range for {num_classes} classes"),
                ));
            }
            data[i * num_classes + t] = T::ONE;
        }
        Self::from_vec(data, &[targets.len(), num_classes], device)
    }

    // ---------------------------------------------------------------- inspection

    /// The shape (sizes of each dimension; `[]` for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.inner.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.inner.shape)
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        decode(self.inner.storage.device.load(Ordering::SeqCst))
    }

    /// The element type's name, `"f32"` or `"f64"`.
    pub fn dtype(&self) -> &'static str {
        T::DTYPE
    }

    /// A host copy of the data, row-major.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.host()?.to_vec())
    }

    /// The single value of a one-element tensor; `Err` for any other size.
    pub fn item(&self) -> Result<T> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!("needs exactly one element, got shape {:?}", self.shape()),
            ));
        }
        Ok(self.host()?[0])
    }

    /// This tensor on `device` (a copy). Moving to the device it is already on returns the same
    /// handle (graph included). Recorded: backward moves the gradient back to the source device
    /// (d copy(x)/dx = I).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let x = Tensor::<f32>::ones(&[2], Device::Cpu)?.requires_grad();
    /// let dev = Device::cuda_if_available(0);          // Cpu without a GPU
    /// x.to_device(dev)?.mul_scalar(3.0)?.sum()?.backward()?;
    /// assert_eq!(x.grad().unwrap().to_vec()?, vec![3.0, 3.0]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn to_device(&self, device: Device) -> Result<Self> {
        device.check_available()?;
        if device == self.device() {
            return Ok(self.clone());
        }
        let buf = Buffer::copy_of(self.host()?, device)?;
        let out = Self::with_storage(Storage::new(buf, device), self.shape().to_vec(), None);
        crate::autograd::record(out, &[self], ToDeviceBackward { from: self.device() })
    }

    // ---------------------------------------------------------------- autograd

    /// Marks this tensor as requiring gradients and returns it. On a leaf, backward will
    /// accumulate into [`grad`](Self::grad); a tensor produced by a recorded op already
    /// requires grad, so this is a no-op there.
    pub fn requires_grad(self) -> Self {
        if self.inner.node.is_none() {
            self.inner.requires_grad.store(true, Ordering::SeqCst);
        }
        self
    }

    /// True if gradients flow to this tensor (a leaf marked with `requires_grad`, or the
    /// output of a recorded op).
    pub fn is_requires_grad(&self) -> bool {
        self.inner.node.is_some() || self.inner.requires_grad.load(Ordering::SeqCst)
    }

    /// True if this tensor was not produced by a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.inner.node.is_none()
    }

    /// Backpropagates from this one-element tensor (seed gradient 1): gradients accumulate
    /// into the leaves' `.grad()`, and the graph behind this tensor is freed. A second
    /// `backward` through the same graph is an `Err`.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!(
                    "backward() needs a one-element tensor, got shape {:?}; use backward_with(&grad) \
                     for other shapes",
                    self.shape()
                ),
            ));
        }
        let seed = Tensor::full(self.shape(), T::ONE, self.device())?;
        autograd::run_backward(self, seed)
    }

    /// Backpropagates the upstream gradient `grad` (same shape as this tensor).
    pub fn backward_with(&self, grad: &Tensor<T>) -> Result<()> {
        autograd::run_backward(self, grad.detach())
    }

    /// The accumulated gradient: for leaves after a backward reached them, for non-leaves only
    /// after [`retain_grad`](Self::retain_grad). `None` otherwise.
    pub fn grad(&self) -> Option<Tensor<T>> {
        match &self.inner.node {
            Some(n) => n.retained_grad(),
            None => self.inner.grad.lock().unwrap().clone(),
        }
    }

    /// Clears the gradient (it becomes `None`, as in PyTorch >= 2).
    pub fn zero_grad(&self) {
        match &self.inner.node {
            Some(n) => n.clear_retained(),
            None => *self.inner.grad.lock().unwrap() = None,
        }
    }

    /// Keeps this non-leaf's gradient after backward, for inspection. No-op on leaves.
    pub fn retain_grad(self) -> Self {
        if let Some(n) = &self.inner.node {
            n.set_retain();
        }
        self
    }

    /// A new leaf sharing this tensor's storage, cut from the graph (no grad).
    pub fn detach(&self) -> Self {
        Self::with_storage(self.inner.storage.clone(), self.inner.shape.clone(), None)
    }

    /// The name of the op that produced this tensor, or `None` for a leaf.
    pub fn op_name(&self) -> Option<&'static str> {
        self.inner.node.as_ref().map(|n| n.name())
    }
}
