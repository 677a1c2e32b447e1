//! The whole engine on the reference kernels: a few ResNet-20 training steps (f64, the seed's
//! cosine loss, SGD with momentum and weight decay) give the same losses, logits and weights
//! with `Kernels::Reference` as with `Kernels::Fast`, to rounding.

use smallgrad::cpu::{Kernels, with_kernels};
use smallgrad::loss::CosineLoss;
use smallgrad::nn::Module;
use smallgrad::nn::resnet::{CifarResNetConfig, cifar_resnet};
use smallgrad::optim::{Sgd, SgdConfig};
use smallgrad::{Device, Tensor};

/// Per step: the loss; at the end: every parameter's values.
fn train(k: Kernels) -> (Vec<f64>, Vec<Vec<f64>>) {
    with_kernels(k, || {
        let cfg = CifarResNetConfig {
            in_channels: 1,
            num_classes: 10,
            width: 1,
            seed: 7,
        };
        let model = cifar_resnet::<f64>(20, &cfg).unwrap();
        let mut opt = Sgd::new(
            model.parameters(),
            SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 5e-4,
                ..Default::default()
            },
        )
        .unwrap();
        let x = Tensor::<f64>::randn(&[4, 1, 12, 12], 3, Device::Cpu).unwrap();
        let y = [3, 1, 4, 1];
        let loss_fn = CosineLoss::default();
        let mut losses = Vec::new();
        for _ in 0..3 {
            let loss = loss_fn.forward(&model.forward(&x).unwrap(), &y).unwrap();
            losses.push(loss.item().unwrap());
            opt.zero_grad();
            loss.backward().unwrap();
            opt.step().unwrap();
        }
        let params = model.parameters().iter().map(|p| p.to_vec().unwrap()).collect();
        (losses, params)
    })
}

#[test]
fn resnet20_trains_the_same_on_reference_and_fast_kernels() {
    let (fast_loss, fast_params) = train(Kernels::Fast);
    let (ref_loss, ref_params) = train(Kernels::Reference);
    // The loss must move (so the comparison covers real updates), and agree step by step.
    assert!((fast_loss[0] - fast_loss[2]).abs() > 1e-4, "{fast_loss:?}");
    for (a, b) in fast_loss.iter().zip(&ref_loss) {
        assert!(
            (a - b).abs() <= 1e-10 * (1.0 + b.abs()),
            "losses {fast_loss:?} vs {ref_loss:?}"
        );
    }
    assert_eq!(fast_params.len(), ref_params.len());
    for (i, (a, b)) in fast_params.iter().zip(&ref_params).enumerate() {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-9 * (1.0 + y.abs()), "parameter {i}: {x} vs {y}");
        }
    }
}
