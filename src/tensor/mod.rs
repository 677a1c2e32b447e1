//! [`Tensor`]: a cheap, thread-safe handle to an n-dimensional array on a [`Device`], plus the
//! node of the graph that produced it.
//!
//! Data are contiguous and row-major (NCHW for images). `reshape` and `flatten` share storage;
//! every other op makes new storage. Storage is immutable to users; the optimiser and batch
//! norm's running statistics update it through the crate-private [`Tensor::update_in_place`],
//! which bumps a version counter that backward checks.

mod fmt;
mod storage;

use storage::Buffer;
use storage::Storage;

use crate::autograd::{self, Node};
use crate::dtype::Float;
use crate::rng::Rng;
use crate::shape::{checked_numel, numel};
use crate::{Device, Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

impl<T: Float> Tensor<T> {
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
        Ok(Self::with_storage(
            Storage::new(Buffer::from_vec(data, device)?, device),
            shape.to_vec(),
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
        self.inner.storage.device()
    }

    /// The element type's name, `"f32"` or `"f64"`.
    pub fn dtype(&self) -> &'static str {
        T::DTYPE
    }

    /// A host copy of the data, row-major.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.host_values()?.to_vec())
    }

    /// The single value of a one-element tensor; `Err` for any other size.
    pub fn item(&self) -> Result<T> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!("needs exactly one element, got shape {:?}", self.shape()),
            ));
        }
        Ok(self.host_values()?[0])
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
        let buf = Buffer::copy_of(self.host_values()?, device)?;
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
