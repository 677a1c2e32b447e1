//! Modules, the optimiser and schedules against PyTorch, checkpoints resumed bit for bit, and a ResNet-20 that learns Fashion-MNIST.
//!
//! One test binary per theme (docs/testing.md); each file below is one module of it.

mod fashion_mnist;
mod kernels;
mod nn_modules;
mod optim;
mod resume;
