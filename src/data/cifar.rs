//! The binary formats of CIFAR-10 and CIFAR-100.
//!
//! A file is a sequence of fixed-size records with no header:
//!
//! ```text
//! CIFAR-10:  label: u8 (0..10)                            | 3072 bytes
//! CIFAR-100: coarse label: u8 (0..20) | fine label: u8 (0..100) | 3072 bytes
//! ```
//!
//! The 3072 bytes are a 3 x 32 x 32 image, channel-major (all red, then green, then blue),
//! rows top to bottom: exactly NCHW. CIFAR-100 datasets use the fine label (100 classes).

use super::idx::open;
use super::{Dataset, io_err};
use crate::Result;
use std::io::Read;
use std::path::Path;

const PIXELS: usize = 3 * 32 * 32;

/// Reads records of `label_bytes` label bytes + 3072 pixels until EOF. `limits[j]` bounds label
/// byte `j`; the last label byte is the class.
fn read_records(mut r: impl Read, name: &str, label_bytes: usize, limits: &[usize]) -> Result<Dataset> {
    let rec = label_bytes + PIXELS;
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)
        .map_err(|e| io_err(name, format!("reading: {e}")))?;
    if bytes.is_empty() {
        return Err(io_err(name, "empty file: no records"));
    }
    if bytes.len() % rec != 0 {
        return Err(io_err(
            name,
            format!(
                "truncated: {} bytes is not a whole number of {rec}-byte records ({} complete, {} bytes left over)",
                bytes.len(),
                bytes.len() / rec,
                bytes.len() % rec
            ),
        ));
    }
    let n = bytes.len() / rec;
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(rec).enumerate() {
        for (j, (&b, &lim)) in record[..label_bytes].iter().zip(limits).enumerate() {
            if b as usize >= lim {
                let which = if label_bytes == 2 && j == 0 {
                    "coarse label"
                } else {
                    "label"
                };
                return Err(io_err(name, format!("record {i}: {which} {b} is >= {lim}")));
            }
        }
        labels.push(record[label_bytes - 1] as usize);
        images.extend_from_slice(&record[label_bytes..]);
    }
    Dataset::new(images, labels, 3, 32, 32, limits[label_bytes - 1])
}

/// Reads a CIFAR-10 binary file (e.g. `data_batch_1.bin`): 3 x 32 x 32 images, 10 classes.
/// `Err` on an empty stream, a partial last record, or a label >= 10.
pub fn read_cifar10(r: impl Read, name: &str) -> Result<Dataset> {
    read_records(r, name, 1, &[10])
}

/// Reads a CIFAR-100 binary file (`train.bin`, `test.bin`): 3 x 32 x 32 images labelled with
/// the 100 fine classes. `Err` on an empty stream, a partial last record, a coarse label >= 20
/// or a fine label >= 100.
pub fn read_cifar100(r: impl Read, name: &str) -> Result<Dataset> {
    read_records(r, name, 2, &[20, 100])
}

fn load_many(
    paths: &[impl AsRef<Path>],
    read: fn(std::io::BufReader<std::fs::File>, &str) -> Result<Dataset>,
) -> Result<Dataset> {
    if paths.is_empty() {
        return Err(io_err("<none>", "no files given"));
    }
    let parts = paths
        .iter()
        .map(|p| {
            let p = p.as_ref();
            read(open(p)?, &p.display().to_string())
        })
        .collect::<Result<Vec<_>>>()?;
    Dataset::concat(&parts)
}

/// Opens and concatenates CIFAR-10 binary files (e.g. the five `data_batch_*.bin`).
pub fn load_cifar10(paths: &[impl AsRef<Path>]) -> Result<Dataset> {
    load_many(paths, read_cifar10)
}

/// Opens and concatenates CIFAR-100 binary files.
pub fn load_cifar100(paths: &[impl AsRef<Path>]) -> Result<Dataset> {
    load_many(paths, read_cifar100)
}
