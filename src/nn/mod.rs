//! Neural-network modules: the [`Module`] trait and the layers a ResNet is built from.
//!
//! A module owns its parameters (leaf tensors with `requires_grad`) and buffers (batch norm's
//! running statistics), names them as PyTorch / torchvision do (`layer1.0.conv1.weight`,
//! `bn1.running_mean`, ...) so checkpoints line up, and switches between training and
//! evaluation with [`Module::set_training`]. Initialisation follows PyTorch's defaults (and
//! torchvision's for the ResNets) and is driven by a seeded [`Rng`](crate::Rng).

mod layers;
pub mod resnet;

pub use layers::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU, Sequential,
};

use crate::dtype::Float;
use crate::{Result, Tensor};

/// A building block of a network: a forward function plus the tensors it owns.
pub trait Module<T: Float>: Send + Sync {
    /// Applies the module to `x`.
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>>;

    /// The trainable parameters with their dotted names, in a fixed order.
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)>;

    /// The trainable parameters (the order of [`named_parameters`](Self::named_parameters)).
    fn parameters(&self) -> Vec<Tensor<T>> {
        self.named_parameters().into_iter().map(|(_, t)| t).collect()
    }

    /// Non-trainable state saved in checkpoints (batch norm's running mean and variance).
    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }

    /// Training mode (batch statistics in batch norm) or evaluation mode (running statistics).
    fn set_training(&mut self, _training: bool) {}

    /// The number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }
}

/// Prefixes the names of a child's tensors with `prefix.`.
pub(crate) fn prefixed<T: Float>(prefix: &str, items: Vec<(String, Tensor<T>)>) -> Vec<(String, Tensor<T>)> {
    items.into_iter().map(|(n, t)| (format!("{prefix}.{n}"), t)).collect()
}

/// Every tensor a checkpoint needs from `module`: its parameters and its buffers, by name.
pub fn state_dict<T: Float>(module: &dyn Module<T>) -> Vec<(String, Tensor<T>)> {
    let mut v = module.named_parameters();
    v.extend(module.buffers());
    v
}

/// Moves every parameter and buffer of `module` to `device`, in place: modules are built on
/// the CPU (their seeded initialisation is the same everywhere), then moved. Gradients are
/// dropped; build the optimiser after moving.
///
/// ```
/// # use smallgrad::{Device, Rng, nn::{self, Linear, Module}};
/// let lin: Linear = Linear::new(3, 2, true, &mut Rng::new(0), Device::Cpu)?;
/// nn::to_device(&lin, Device::Cpu)?;                       // already there: nothing to do
/// let cuda = Device::cuda_if_available(0);                 // Cpu without a GPU
/// nn::to_device(&lin, cuda)?;
/// assert!(lin.parameters().iter().all(|p| p.device() == cuda));
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub fn to_device<T: Float>(module: &dyn Module<T>, device: crate::Device) -> Result<()> {
    for (_, t) in state_dict(module) {
        t.relocate(device)?;
    }
    Ok(())
}

/// Copies saved values into `module`'s parameters and buffers, matched by name (the inverse
/// of [`state_dict`]). The copy is in place (it bumps the tensors' version counters, so a
/// graph built before it cannot be backpropagated). `Err` if a name is missing from `saved`
/// or a shape differs; names in `saved` that the module lacks are an `Err` too, so a
/// checkpoint of another architecture is never half-loaded silently.
pub fn load_state_dict<T: Float>(module: &dyn Module<T>, saved: &[(String, Tensor<T>)]) -> Result<()> {
    let targets = state_dict(module);
    for (name, _) in saved {
        if !targets.iter().any(|(n, _)| n == name) {
            return Err(crate::Error::invalid(
                "load_state_dict",
                format!("the module has no tensor named `{name}`"),
            ));
        }
    }
    let mut pairs = Vec::with_capacity(targets.len());
    for (name, dst) in &targets {
        let src = saved
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| crate::Error::invalid("load_state_dict", format!("no saved tensor for `{name}`")))?;
        if src.shape() != dst.shape() {
            return Err(crate::Error::shape(
                "load_state_dict",
                format!(
                    "`{name}`: saved shape {:?}, module shape {:?}",
                    src.shape(),
                    dst.shape()
                ),
            ));
        }
        pairs.push((dst, src));
    }
    // All checks passed: now copy, so a failed load changes nothing.
    for (dst, src) in pairs {
        let values = src.to_vec()?;
        dst.update_in_place(|d| d.copy_from_slice(&values))?;
    }
    Ok(())
}
