//! Reading datasets and safetensors: IDX and CIFAR readers, subsets, batches, augmentation; named corruption cases and mutated bytes.
//!
//! One test binary per theme (docs/testing.md); each file below is one module of it.

mod data;
mod serialize;
