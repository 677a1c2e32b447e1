//! nn modules: parameter names, shapes and counts against torchvision's, mode switching, and
//! gradcheck through a BasicBlock and a tiny CIFAR ResNet in training mode.

use smallgrad::nn::resnet::{BasicBlock, CifarResNetConfig, ResNetConfig, cifar_resnet, resnet18, resnet50};
use smallgrad::nn::{Linear, Module};
use smallgrad::{Device, GradcheckOptions, Rng, Tensor, gradcheck};

#[test]
fn resnet18_matches_torchvision_parameter_count() {
    let m = resnet18::<f32>(&ResNetConfig::default()).unwrap();
    assert_eq!(m.num_parameters(), 11_689_512);
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    // A few of torchvision's state-dict names.
    for want in [
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer4.1.bn2.bias",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(names.iter().any(|n| n == want), "missing {want}");
    }
    let buffers: Vec<String> = m.buffers().into_iter().map(|(n, _)| n).collect();
    assert!(buffers.iter().any(|n| n == "layer3.0.downsample.1.running_var"));
    // 20 batch norms, each with running mean and var.
    assert_eq!(buffers.len(), 40);
}

#[test]
fn resnet50_matches_torchvision_parameter_count() {
    let m = resnet50::<f32>(&ResNetConfig::default()).unwrap();
    assert_eq!(m.num_parameters(), 25_557_032);
    let p: Vec<(String, Tensor)> = m.named_parameters();
    let shape_of = |n: &str| p.iter().find(|(k, _)| k == n).unwrap().1.shape().to_vec();
    assert_eq!(shape_of("layer1.0.conv3.weight"), vec![256, 64, 1, 1]);
    assert_eq!(shape_of("layer2.0.conv2.weight"), vec![128, 128, 3, 3]);
    assert_eq!(shape_of("fc.weight"), vec![1000, 2048]);
}

/// ResNet-20 with projection shortcuts, counted independently from the layer shapes.
#[test]
fn cifar_resnet_parameter_count_by_formula() {
    for (depth, width, cin, classes) in [(20, 1, 1, 10), (32, 2, 3, 100)] {
        let m = cifar_resnet::<f32>(
            depth,
            &CifarResNetConfig {
                in_channels: cin,
                num_classes: classes,
                width,
                seed: 0,
            },
        )
        .unwrap();
        let n = (depth - 2) / 6;
        let w = [16 * width, 32 * width, 64 * width];
        let conv = |a: usize, b: usize, k: usize| a * b * k * k;
        let bn = |c: usize| 2 * c;
        let mut total = conv(cin, w[0], 3) + bn(w[0]);
        let mut c = w[0];
        for &ws in &w {
            for _ in 0..n {
                total += conv(c, ws, 3) + bn(ws) + conv(ws, ws, 3) + bn(ws);
                if c != ws {
                    total += conv(c, ws, 1) + bn(ws);
                }
                c = ws;
            }
        }
        total += c * classes + classes;
        assert_eq!(m.num_parameters(), total, "depth {depth} width {width}");
    }
    assert!(cifar_resnet::<f32>(21, &CifarResNetConfig::default()).is_err());
}

#[test]
fn forward_shapes_and_train_eval_switch() {
    let mut m = cifar_resnet::<f32>(
        20,
        &CifarResNetConfig {
            in_channels: 1,
            num_classes: 10,
            width: 1,
            seed: 3,
        },
    )
    .unwrap();
    let x = Tensor::<f32>::randn(&[2, 1, 28, 28], 0, Device::Cpu).unwrap();
    let before = m.buffers()[0].1.to_vec().unwrap();
    let y = m.forward(&x).unwrap();
    assert_eq!(y.shape(), &[2, 10]);
    // Training mode updated the running statistics in place.
    assert_ne!(m.buffers()[0].1.to_vec().unwrap(), before);
    m.set_training(false);
    let after_train = m.buffers()[0].1.to_vec().unwrap();
    let y1 = m.forward(&x).unwrap().to_vec().unwrap();
    let y2 = m.forward(&x).unwrap().to_vec().unwrap();
    assert_eq!(y1, y2, "eval mode is a pure function");
    assert_eq!(
        m.buffers()[0].1.to_vec().unwrap(),
        after_train,
        "eval mode leaves running stats alone"
    );
    // Same seed, same weights.
    let m2 = cifar_resnet::<f32>(
        20,
        &CifarResNetConfig {
            in_channels: 1,
            num_classes: 10,
            width: 1,
            seed: 3,
        },
    )
    .unwrap();
    assert_eq!(
        m2.parameters()[0].to_vec().unwrap(),
        m.parameters()[0].to_vec().unwrap()
    );
}

#[test]
fn imagenet_layout_runs_on_odd_input() {
    let m = resnet18::<f32>(&ResNetConfig {
        in_channels: 1,
        num_classes: 3,
        small_input_stem: false,
        seed: 0,
    })
    .unwrap();
    let x = Tensor::<f32>::randn(&[1, 1, 33, 31], 0, Device::Cpu).unwrap();
    assert_eq!(m.forward(&x).unwrap().shape(), &[1, 3]);
}

fn opts() -> GradcheckOptions {
    GradcheckOptions {
        fast_mode: true,
        ..GradcheckOptions::default()
    }
}

#[test]
fn gradcheck_through_basic_block_in_training_mode() {
    let mut rng = Rng::new(5);
    // Stride 2 with a projection shortcut: every kind of layer of the block is on the path.
    let block = BasicBlock::<f64>::new(2, 3, 2, &mut rng, Device::Cpu).unwrap();
    let x = Tensor::<f64>::randn(&[2, 2, 5, 4], 9, Device::Cpu).unwrap();
    let r = Tensor::<f64>::randn(&[2, 3, 3, 2], 10, Device::Cpu).unwrap();
    // Inputs: the image and every parameter of the block.
    let params = block.parameters();
    let mut inputs = vec![x];
    inputs.extend(params.iter().map(|p| p.detach()));
    gradcheck(
        |v| {
            // Rebuild the block's forward with the checked parameters substituted.
            let y = block_with(&block, &v[1..], &v[0])?;
            y.mul(&r)?.sum()
        },
        &inputs,
        &opts(),
    )
    .unwrap();
}

/// The block's forward with its parameters replaced by `params` (same order as
/// `named_parameters`), so gradcheck can perturb them.
fn block_with(block: &BasicBlock<f64>, params: &[Tensor<f64>], x: &Tensor<f64>) -> smallgrad::Result<Tensor<f64>> {
    let names: Vec<String> = block.named_parameters().into_iter().map(|(n, _)| n).collect();
    let get = |n: &str| params[names.iter().position(|k| k == n).unwrap()].clone();
    let bn = |h: &Tensor<f64>, p: &str| {
        h.batch_norm(
            None,
            None,
            Some(&get(&format!("{p}.weight"))),
            Some(&get(&format!("{p}.bias"))),
            true,
            0.1,
            1e-5,
        )
    };
    let h = bn(&x.conv2d(&get("conv1.weight"), None, 2, 1)?, "bn1")?.relu()?;
    let h = bn(&h.conv2d(&get("conv2.weight"), None, 1, 1)?, "bn2")?;
    let s = bn(&x.conv2d(&get("downsample.0.weight"), None, 2, 0)?, "downsample.1")?;
    // The module's own forward must agree with this rebuild.
    h.add(&s)?.relu()
}

#[test]
fn basic_block_rebuild_matches_module_forward() {
    let mut rng = Rng::new(5);
    let block = BasicBlock::<f64>::new(2, 3, 2, &mut rng, Device::Cpu).unwrap();
    let x = Tensor::<f64>::randn(&[2, 2, 5, 4], 9, Device::Cpu).unwrap();
    let a = block.forward(&x).unwrap().to_vec().unwrap();
    let b = block_with(&block, &block.parameters(), &x).unwrap().to_vec().unwrap();
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() < 1e-12);
    }
}

#[test]
fn gradcheck_through_tiny_cifar_resnet() {
    let m = cifar_resnet::<f64>(
        20,
        &CifarResNetConfig {
            in_channels: 1,
            num_classes: 3,
            width: 1,
            seed: 1,
        },
    )
    .unwrap();
    let x = Tensor::<f64>::randn(&[2, 1, 6, 5], 2, Device::Cpu).unwrap();
    let r = Tensor::<f64>::randn(&[2, 3], 3, Device::Cpu).unwrap();
    // Check the gradient with respect to the input image through all 19 conv layers,
    // the batch norms in training mode, the shortcuts and the pooling.
    gradcheck(|v| m.forward(&v[0])?.mul(&r)?.sum(), &[x], &opts()).unwrap();
}

#[test]
fn linear_matches_formula() {
    let mut rng = Rng::new(0);
    let l = Linear::<f64>::new(3, 2, true, &mut rng, Device::Cpu).unwrap();
    let bound = 1.0 / 3f64.sqrt();
    assert!(l.weight.to_vec().unwrap().iter().all(|w| w.abs() <= bound));
    let x = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0], &[1, 3], Device::Cpu).unwrap();
    let y = l.forward(&x).unwrap().to_vec().unwrap();
    let w = l.weight.to_vec().unwrap();
    let b = l.bias.as_ref().unwrap().to_vec().unwrap();
    for o in 0..2 {
        let want = (0..3).map(|i| w[o * 3 + i] * (i + 1) as f64).sum::<f64>() + b[o];
        assert!((y[o] - want).abs() < 1e-12);
    }
}
