//! Helpers of the CUDA suites (tests/cuda_*.rs): the GPU or a skip line, a small ResNet.

use smallgrad::nn::resnet::{CifarResNetConfig, ResNet, cifar_resnet};
use smallgrad::{Device, Result, nn};

/// The GPU, or `None` after printing the skip line.
pub fn gpu(test: &str) -> Option<Device> {
    match Device::Cuda(0).check_available() {
        Ok(()) => Some(Device::Cuda(0)),
        Err(e) => {
            println!("no CUDA device: skipping {test} ({e})");
            None
        }
    }
}

/// ResNet-20 for 1-channel inputs and 10 classes (seed 7), moved to `device`.
pub fn tiny_resnet(device: Device) -> Result<ResNet<f32>> {
    let m = cifar_resnet(
        20,
        &CifarResNetConfig {
            in_channels: 1,
            num_classes: 10,
            width: 1,
            seed: 7,
        },
    )?;
    nn::to_device(&m, device)?;
    Ok(m)
}
