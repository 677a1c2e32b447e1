//! Finding and loading the example's data: IDX files (gzip-compressed or not) for Fashion-MNIST
//! and MNIST, CIFAR-10 binaries, the Fashion-MNIST subset bundled in data/fashion-mnist-subset
//! (checked against its SHA256SUMS), or, only when asked for, the library's synthetic set.
//!
//! Where the data comes from, in order: `--data DIR` (or `--data bundled`), `$SMALLGRAD_DATA`,
//! Debian's folder (`/usr/share/datasets/<dataset>`, from `apt-get install
//! dataset-fashion-mnist`), then for Fashion-MNIST the bundled subset. A folder that was named
//! (by the flag or the variable) but holds no data is an error, not a reason to look elsewhere.

use crate::args::DatasetKind;
use crate::sha256;
use flate2::read::GzDecoder;
use smallgrad::data::{Dataset, load_cifar10, read_idx};
use smallgrad::{Error, Result};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Training pool, test set and a description of where they came from.
pub struct Loaded {
    pub train: Dataset,
    pub test: Dataset,
    pub source: String,
    pub synthetic: bool,
    /// The bundled subset (its training pool is exactly the default run's 50 images per class).
    pub bundled: bool,
}

/// The bundled Fashion-MNIST subset, next to this crate's Cargo.toml.
pub fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset")
}

fn io(path: &Path, msg: impl Into<String>) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg: msg.into(),
    }
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

fn load_idx_pair(dir: &Path, split: &str) -> Option<Result<Dataset>> {
    let (imgs, iname) = open_maybe_gz(dir, &format!("{split}-images-idx3-ubyte"))?;
    let (lbls, lname) = open_maybe_gz(dir, &format!("{split}-labels-idx1-ubyte"))?;
    Some(read_idx(imgs, &iname, lbls, &lname, 10))
}

fn has_idx(dir: &Path) -> bool {
    ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"]
        .iter()
        .all(|s| dir.join(s).exists() || dir.join(format!("{s}.gz")).exists())
}

fn has_cifar(dir: &Path) -> bool {
    dir.join("data_batch_1.bin").exists() && dir.join("test_batch.bin").exists()
}

/// Checks every file listed in `dir/SHA256SUMS` (lines `<hex digest>  <name>`).
pub fn verify_checksums(dir: &Path) -> Result<usize> {
    let sums_path = dir.join("SHA256SUMS");
    let sums = std::fs::read_to_string(&sums_path).map_err(|e| io(&sums_path, e.to_string()))?;
    let mut n = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (want, name) = line
            .split_once("  ")
            .ok_or_else(|| io(&sums_path, format!("not a `<sha256>  <file>` line: {line:?}")))?;
        let path = dir.join(name.trim());
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e.to_string()))?;
        let got = sha256::hex_digest(&bytes);
        if got != want.trim() {
            return Err(io(
                &path,
                format!(
                    "SHA-256 is {got}, SHA256SUMS says {} (the bundled data is damaged: `git checkout -- data/`)",
                    want.trim()
                ),
            ));
        }
        n += 1;
    }
    Ok(n)
}

fn synthetic(per_class: usize, channels: usize, size: usize, seed: u64) -> Result<Loaded> {
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
        bundled: false,
    })
}

fn load_idx_dir(dataset: DatasetKind, dir: &Path, how: &str) -> Result<Loaded> {
    match (load_idx_pair(dir, "train"), load_idx_pair(dir, "t10k")) {
        (Some(train), Some(test)) => Ok(Loaded {
            train: train?,
            test: test?,
            source: format!("{dataset} from {} ({how})", dir.display()),
            synthetic: false,
            bundled: false,
        }),
        _ => Err(io(
            dir,
            format!(
                "no {dataset} here: want train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz)"
            ),
        )),
    }
}

fn load_bundled() -> Result<Loaded> {
    let dir = bundled_dir();
    verify_checksums(&dir)?;
    let mut l = load_idx_dir(DatasetKind::FashionMnist, &dir, "bundled")?;
    l.source = format!(
        "fashion-mnist, the bundled subset in {} (its 50 training images per class, the full test set)",
        dir.display()
    );
    l.bundled = true;
    Ok(l)
}

fn load_dir(dataset: DatasetKind, dir: &Path, how: &str) -> Result<Loaded> {
    match dataset {
        DatasetKind::Cifar10 => {
            let train: Vec<PathBuf> = (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect();
            let test = [dir.join("test_batch.bin")];
            if !train.iter().chain(&test).all(|p| p.exists()) {
                return Err(io(dir, "no CIFAR-10 here: want data_batch_1..5.bin and test_batch.bin"));
            }
            Ok(Loaded {
                train: load_cifar10(&train)?,
                test: load_cifar10(&test)?,
                source: format!("cifar10 from {} ({how})", dir.display()),
                synthetic: false,
                bundled: false,
            })
        }
        _ => load_idx_dir(dataset, dir, how),
    }
}

/// Finds and loads `dataset` (see the module docs for the order).
pub fn load(dataset: DatasetKind, data: Option<&str>, per_class: usize, seed: u64) -> Result<Loaded> {
    if dataset == DatasetKind::Synthetic {
        return synthetic(per_class, 1, 28, seed);
    }
    let bundled_ok = dataset == DatasetKind::FashionMnist;
    let named = match data {
        Some("bundled") if bundled_ok => return load_bundled(),
        Some("bundled") => {
            return Err(Error::InvalidArgument {
                op: "--data",
                msg: format!("only Fashion-MNIST has a bundled subset, not {dataset}"),
            });
        }
        Some(dir) => Some((PathBuf::from(dir), "--data")),
        None => std::env::var("SMALLGRAD_DATA")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| (PathBuf::from(v), "$SMALLGRAD_DATA")),
    };
    if let Some((dir, how)) = named {
        return load_dir(dataset, &dir, how);
    }
    let debian = PathBuf::from(format!("/usr/share/datasets/{dataset}"));
    let present = match dataset {
        DatasetKind::Cifar10 => has_cifar(&debian),
        _ => has_idx(&debian),
    };
    if present {
        return load_dir(dataset, &debian, "Debian's package");
    }
    if bundled_ok {
        return load_bundled();
    }
    Err(io(
        &debian,
        format!(
            "{dataset} was not found: pass --data DIR or set SMALLGRAD_DATA (Fashion-MNIST also has a bundled subset)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_subset_matches_its_checksums_and_is_the_default_runs_data() {
        assert_eq!(verify_checksums(&bundled_dir()).unwrap(), 4);
        let l = load(DatasetKind::FashionMnist, Some("bundled"), 50, 0).unwrap();
        assert!(l.bundled && !l.synthetic);
        assert_eq!((l.train.len(), l.test.len()), (500, 10_000));
        assert_eq!(l.train.class_counts(), vec![50; 10]);
        assert_eq!(l.test.class_counts(), vec![1000; 10]);
        assert_eq!((l.train.channels(), l.train.height(), l.train.width()), (1, 28, 28));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("smallgrad-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.bin"), b"abc").unwrap();
        std::fs::write(
            dir.join("SHA256SUMS"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a.bin\n",
        )
        .unwrap();
        assert_eq!(verify_checksums(&dir).unwrap(), 1);
        std::fs::write(dir.join("a.bin"), b"abd").unwrap();
        let e = verify_checksums(&dir).unwrap_err().to_string();
        assert!(e.contains("a.bin") && e.contains("damaged"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_named_folder_without_data_is_an_error() {
        let e = load(DatasetKind::Mnist, Some("/nonexistent"), 50, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent") && e.contains("no mnist"), "{e}");
        assert!(load(DatasetKind::Cifar10, Some("bundled"), 50, 0).is_err());
    }
}
