//! Neural-network modules: the [`Module`] trait and the layers a ResNet is built from.
//!
//! A module owns its parameters (leaf tensors with `requires_grad`) and buffers (batch norm's
//! running statistics), names them as PyTorch / torchvision do (`layer1.0.conv1.weight`,
//! `bn1.running_mean`, ...) so checkpoints line up, and switches between training and
//! evaluation with [`Module::set_training`]. Initialisation follows PyTorch's defaults (and
//! torchvision's for the ResNets) and is driven by a seeded [`Rng`](crate::Rng).

mod layers;
pub mod resnet;

pub use layers::{AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU, Sequential};

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
