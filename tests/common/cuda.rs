//! Helpers of the CUDA suites (tests/cuda/): the GPU or a skip line, a small ResNet.

use smallgrad::nn::resnet::{CifarResNetConfig, ResNet, cifar_resnet};
use smallgrad::{Device, Result, nn};

/// The GPU, or `None` after printing the skip line. With `SMALLGRAD_REQUIRE_CUDA=1` (CI, on the
/// simulator; scripts/gpu-check.sh on a GPU) a missing device fails the test instead: there a
/// skip would be a silent pass.
pub fn gpu(test: &str) -> Option<Device> {
    match Device::Cuda(0).check_available() {
        Ok(()) => Some(Device::Cuda(0)),
        Err(e) if std::env::var("SMALLGRAD_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("{test}: SMALLGRAD_REQUIRE_CUDA=1 but there is no CUDA device: {e}")
        }
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
