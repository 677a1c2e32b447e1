//! A small convolutional network on Fashion-MNIST: convolutions, batch norm, pooling, a
//! `Sequential` model, mini-batches, training vs evaluation mode, and test accuracy.
//!
//! Run with `cargo run --release --example cnn` (well under a minute on two cores).
//!
//! What it teaches:
//! - stacking layers with `smallgrad::nn::Sequential`: Conv2d → BatchNorm2d → ReLU →
//!   MaxPool2d twice, one more convolution, then GlobalAvgPool → Linear to 10 class scores;
//!   how the shape `[N, C, H, W]` changes along the way (printed below);
//! - a data pipeline: a class-balanced training subset, per-channel normalisation, and an
//!   epoch of shuffled mini-batches with `smallgrad::data::Batches`; SGD with momentum and a
//!   cosine learning-rate schedule;
//! - batch norm's two modes: batch statistics while training, running statistics for the
//!   test (`Module::set_training(false)`), and `no_grad` for evaluation.
//!
//! Data: Fashion-MNIST from Debian's `dataset-fashion-mnist` package (the IDX `.gz` files in
//! `/usr/share/datasets/fashion-mnist`). Without it the example says so and trains on
//! `Dataset::synthetic` instead (its accuracy says nothing about Fashion-MNIST).
//! The next step up is the `resnet` example: the same loop with a ResNet-20 and the cosine loss.

use flate2::read::GzDecoder;
use smallgrad::data::{Batches, Dataset, Normalization, read_idx};
use smallgrad::loss::{Reduction, cross_entropy};
use smallgrad::nn::{BatchNorm2d, Conv2d, GlobalAvgPool, Linear, MaxPool2d, Module, ReLU, Sequential};
use smallgrad::optim::{CosineAnnealing, Sgd, SgdConfig};
use smallgrad::{Device, Result, Rng, Tensor, no_grad};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

const DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Training images per class (the subset is class-balanced: 10 × this many images).
const TRAIN_PER_CLASS: usize = 200;
/// Test images per class (a balanced subset of the 10,000 test images, to keep the run short).
const TEST_PER_CLASS: usize = 200;
const EPOCHS: usize = 4;
const LR: f64 = 0.05;
const BATCH: usize = 32;
const SEED: u64 = 0;

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Reads one split ("train" or "t10k") of Fashion-MNIST: two gzip-compressed IDX files.
/// `None` if the files are not there; `Some(Err)` if they are there but malformed.
fn load_split(dir: &Path, split: &str) -> Option<Result<Dataset>> {
    let open = |kind: &str| {
        let path = dir.join(format!("{split}-{kind}.gz"));
        let file = File::open(&path).ok()?;
        // The library reads plain IDX from any `impl Read`; decompressing is our job.
        Some((GzDecoder::new(BufReader::new(file)), path.display().to_string()))
    };
    let (images, iname) = open("images-idx3-ubyte")?;
    let (labels, lname) = open("labels-idx1-ubyte")?;
    Some(read_idx(images, &iname, labels, &lname, 10))
}

/// The training pool and test set: Fashion-MNIST if installed, else the synthetic set.
fn load_data() -> Result<(Dataset, Dataset, bool)> {
    let dir = Path::new(DATA_DIR);
    match (load_split(dir, "train"), load_split(dir, "t10k")) {
        (Some(train), Some(test)) => Ok((train?, test?, true)),
        _ => {
            println!("note: Fashion-MNIST was not found in {DATA_DIR}.");
            println!("      Install it with:  sudo apt-get install dataset-fashion-mnist");
            println!("      Training on a SYNTHETIC 1x28x28 10-class dataset instead.");
            // One seed fixes the class prototypes, so train and test must come from the same
            // call: generate one pool and split it per class.
            let pool = Dataset::synthetic(TRAIN_PER_CLASS + TEST_PER_CLASS, 10, 1, 28, 28, SEED)?;
            let (train, test) = pool.split_per_class(TRAIN_PER_CLASS, TEST_PER_CLASS, SEED)?;
            Ok((train, test, false))
        }
    }
}

/// One convolution block: 3x3 convolution (padding 1 keeps H and W), batch norm, ReLU.
/// The convolution has no bias: batch norm's shift β plays that role.
fn conv_bn_relu(net: Sequential, cin: usize, cout: usize, rng: &mut Rng) -> Result<Sequential> {
    Ok(net
        .push(Conv2d::new(cin, cout, 3, 1, 1, false, rng, Device::Cpu)?)
        .push(BatchNorm2d::new(cout, Device::Cpu)?)
        .push(ReLU))
}

/// [N, 1, 28, 28] → 10 class scores. The shapes are written next to each layer.
fn build_model(rng: &mut Rng) -> Result<Sequential> {
    let mut net = Sequential::new();
    net = conv_bn_relu(net, 1, 16, rng)?; //             [N, 16, 28, 28]
    net = net.push(MaxPool2d::new(2, 2, 0)); //           [N, 16, 14, 14]: max of each 2x2 window
    net = conv_bn_relu(net, 16, 32, rng)?; //            [N, 32, 14, 14]
    net = net.push(MaxPool2d::new(2, 2, 0)); //           [N, 32, 7, 7]
    net = conv_bn_relu(net, 32, 64, rng)?; //            [N, 64, 7, 7]
    net = net.push(GlobalAvgPool); //                     [N, 64]: one average per channel
    Ok(net.push(Linear::new(64, 10, true, rng, Device::Cpu)?)) // [N, 10]
}

/// What each child of `build_model`'s `Sequential` is, for the printout (the trait object
/// does not know its own type name).
const LAYER_NAMES: [&str; 13] = [
    "Conv2d 1->16 3x3",
    "BatchNorm2d(16)",
    "ReLU",
    "MaxPool2d 2x2",
    "Conv2d 16->32 3x3",
    "BatchNorm2d(32)",
    "ReLU",
    "MaxPool2d 2x2",
    "Conv2d 32->64 3x3",
    "BatchNorm2d(64)",
    "ReLU",
    "GlobalAvgPool",
    "Linear 64->10",
];

/// Accuracy (and per-class accuracy) of `model` on every image of `ds`, in evaluation mode.
fn evaluate(model: &mut Sequential, ds: &Dataset, norm: &Normalization) -> Result<(f64, Vec<f64>)> {
    model.set_training(false); // batch norm now uses its running statistics
    let mut right = [0usize; 10];
    let mut seen = [0usize; 10];
    for (x, labels) in Batches::new(ds, 250, 0, false)?.with_normalization(norm.clone())? {
        // no_grad: no graph is recorded, so nothing is kept for a backward that never comes.
        let pred = no_grad(|| model.forward(&x))?.argmax(1)?;
        for (p, l) in pred.into_iter().zip(labels) {
            seen[l] += 1;
            right[l] += usize::from(p == l);
        }
    }
    model.set_training(true);
    let total = right.iter().sum::<usize>() as f64 / seen.iter().sum::<usize>().max(1) as f64;
    let per_class = right
        .iter()
        .zip(&seen)
        .map(|(&r, &s)| r as f64 / s.max(1) as f64)
        .collect();
    Ok((total, per_class))
}

fn main() -> Result<()> {
    let (pool, test_all, real) = load_data()?;
    // A class-balanced subset: the same number of images of every class, picked by a seed.
    let train = pool.class_balanced_subset(TRAIN_PER_CLASS, SEED)?;
    let test = test_all.class_balanced_subset(TEST_PER_CLASS, SEED + 1)?;
    println!(
        "{}: {} training images ({} per class), {} test images",
        if real { "Fashion-MNIST" } else { "synthetic data" },
        train.len(),
        TRAIN_PER_CLASS,
        test.len()
    );
    // Normalise each channel to mean 0, std 1 using statistics of the training set only.
    let norm = Normalization::from_dataset(&train)?;
    println!(
        "pixel mean {:.3}, std {:.3} (after scaling to [0, 1])",
        norm.mean[0], norm.std[0]
    );

    let probe_model = build_model(&mut Rng::new(SEED))?;
    println!("\nmodel: {} parameters", probe_model.num_parameters());
    // Follow one image through the layers to see the shapes change.
    let (probe, _) = Batches::new(&train, 2, 0, false)?
        .next()
        .expect("the training set is not empty");
    let mut h: Tensor = probe;
    println!(
        "  {:<2} {:<18} -> {:<16} parameters",
        "",
        "input",
        format!("{:?}", h.shape())
    );
    for (i, (layer, name)) in probe_model.layers.iter().zip(LAYER_NAMES).enumerate() {
        h = no_grad(|| layer.forward(&h))?;
        let params: Vec<String> = layer
            .named_parameters()
            .into_iter()
            .map(|(n, t)| format!("{i}.{n} {:?}", t.shape()))
            .collect();
        let line = format!(
            "  {i:<2} {name:<18} -> {:<16} {}",
            format!("{:?}", h.shape()),
            params.join(", ")
        );
        println!("{}", line.trim_end());
    }
    // That probe ran in training mode, so it nudged batch norm's running statistics; train a
    // fresh model instead (same seed, so the same initial weights).
    let mut model = build_model(&mut Rng::new(SEED))?;

    let mut opt = Sgd::new(
        model.parameters(),
        SgdConfig {
            lr: LR,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..Default::default()
        },
    )?;
    // The learning rate follows half a cosine from LR down to 0 over the whole run, updated
    // every step: big steps early, small careful ones at the end.
    let schedule = CosineAnnealing {
        base_lr: LR,
        min_lr: 0.0,
        t_max: EPOCHS,
    };

    let (acc0, _) = evaluate(&mut model, &test, &norm)?;
    println!("\ntest accuracy before training: {:.1}% (chance: 10%)", 100.0 * acc0);
    let start = std::time::Instant::now();
    for epoch in 0..EPOCHS {
        // A new shuffle every epoch (seed + epoch), so each epoch sees the images in a new order.
        let batches = Batches::new(&train, BATCH, SEED + 100 + epoch as u64, true)?.with_normalization(norm.clone())?;
        let steps = batches.num_batches();
        let (mut loss_sum, mut right, mut seen) = (0.0, 0, 0);
        for (step, (x, labels)) in batches.enumerate() {
            opt.set_lr(schedule.lr_at(epoch as f64 + step as f64 / steps as f64));
            let logits = model.forward(&x)?;
            let loss = cross_entropy(&logits, &labels, Reduction::Mean)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            loss_sum += loss.item()? as f64 * labels.len() as f64;
            right += logits.argmax(1)?.iter().zip(&labels).filter(|(p, l)| p == l).count();
            seen += labels.len();
        }
        let (test_acc, _) = evaluate(&mut model, &test, &norm)?;
        println!(
            "epoch {}  train loss {:.4}  train accuracy {:5.1}%  test accuracy {:5.1}%  ({:.1} s)",
            epoch + 1,
            loss_sum / seen as f64,
            100.0 * right as f64 / seen as f64,
            100.0 * test_acc,
            start.elapsed().as_secs_f64()
        );
    }

    let (test_acc, per_class) = evaluate(&mut model, &test, &norm)?;
    println!(
        "\nfinal test accuracy on {} images: {:.1}%",
        test.len(),
        100.0 * test_acc
    );
    for (c, acc) in per_class.iter().enumerate() {
        let name = if real {
            FASHION_CLASSES[c].to_string()
        } else {
            format!("class {c}")
        };
        println!("  {name:<12} {:5.1}%", 100.0 * acc);
    }
    Ok(())
}
