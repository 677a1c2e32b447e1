//! Loading the example's datasets: IDX files (gzip-compressed or not) for Fashion-MNIST and
//! MNIST, CIFAR-10 binaries, or the library's synthetic set when the files are absent.

use flate2::read::GzDecoder;
use smallgrad::data::{Dataset, load_cifar10, read_idx};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Training pool, test set and a description of where they came from.
pub struct Loaded {
    pub train: Dataset,
    pub test: Dataset,
    pub source: String,
    pub synthetic: bool,
}

fn open_maybe_gz(dir: &Path, stem: &str) -> Option<(Box<dyn Read>, String)> {
    let gz = dir.join(format!("{stem}.gz"));
    if let Ok(f) = File::open(&gz) {
        return Some((Box::new(GzDecoder::new(BufReader::new(f))), gz.display().to_string()));
    }
    let raw = dir.join(stem);
    File::open(&raw)
        .ok()
        .map(|f| (Box::new(BufReader::new(f)) as Box<dyn Read>, raw.display().to_string()))
}

fn load_idx_pair(dir: &Path, split: &str) -> Option<smallgrad::Result<Dataset>> {
    let (imgs, iname) = open_maybe_gz(dir, &format!("{split}-images-idx3-ubyte"))?;
    let (lbls, lname) = open_maybe_gz(dir, &format!("{split}-labels-idx1-ubyte"))?;
    Some(read_idx(imgs, &iname, lbls, &lname, 10))
}

fn synthetic(per_class: usize, channels: usize, size: usize, seed: u64) -> smallgrad::Result<Loaded> {
    // One pool (the class patterns depend on the seed, so train and test must come from the
    // same call): room for the K training images plus as many for validation, and 200 test
    // images per class.
    let train_k = 2 * per_class.max(1);
    let pool = Dataset::synthetic(train_k + 200, 10, channels, size, size, seed ^ 0x5EED)?;
    let (train, test) = pool.split_per_class(train_k, 200, seed)?;
    Ok(Loaded {
        train,
        test,
        source: format!("synthetic {channels}x{size}x{size}, 10 classes"),
        synthetic: true,
    })
}

/// Loads `dataset` from `dir`. A missing Fashion-MNIST / MNIST / CIFAR-10 is not fatal: the
/// example says so, tells how to install it, and falls back to the synthetic set.
pub fn load(dataset: &str, dir: &Path, per_class: usize, seed: u64) -> smallgrad::Result<Loaded> {
    match dataset {
        "synthetic" => synthetic(per_class, 1, 28, seed),
        "fashion-mnist" | "mnist" => match (load_idx_pair(dir, "train"), load_idx_pair(dir, "t10k")) {
            (Some(train), Some(test)) => Ok(Loaded {
                train: train?,
                test: test?,
                source: format!("{dataset} from {}", dir.display()),
                synthetic: false,
            }),
            _ => {
                eprintln!("note: {dataset} was not found in {}.", dir.display());
                if dataset == "fashion-mnist" {
                    eprintln!("      Install it with:  sudo apt-get install dataset-fashion-mnist");
                    eprintln!(
                        "      (Debian's package puts the four IDX .gz files in /usr/share/datasets/fashion-mnist)"
                    );
                } else {
                    eprintln!("      Put train-images-idx3-ubyte(.gz) and friends there, or pass --data DIR.");
                }
                eprintln!("      Running on the SYNTHETIC dataset instead; its numbers say nothing about {dataset}.");
                synthetic(per_class, 1, 28, seed)
            }
        },
        "cifar10" => {
            let train: Vec<PathBuf> = (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect();
            let test = [dir.join("test_batch.bin")];
            if train.iter().chain(&test).all(|p| p.exists()) {
                Ok(Loaded {
                    train: load_cifar10(&train)?,
                    test: load_cifar10(&test)?,
                    source: format!("cifar10 from {}", dir.display()),
                    synthetic: false,
                })
            } else {
                eprintln!(
                    "note: CIFAR-10 binaries (data_batch_1..5.bin, test_batch.bin) were not found in {}.",
                    dir.display()
                );
                eprintln!("      Running on the SYNTHETIC dataset (3x32x32) instead.");
                synthetic(per_class, 3, 32, seed)
            }
        }
        other => Err(smallgrad::Error::InvalidArgument {
            op: "dataset",
            msg: format!("unknown dataset {other}"),
        }),
    }
}
