//! Writes the Fashion-MNIST subset bundled in data/fashion-mnist-subset: the 500 training images
//! the ResNet example's default run trains on (50 per class, chosen by seed 0 from the full
//! training set with `Dataset::class_balanced_subset`, exactly as the example chooses them, in
//! their original order), the full 10,000-image test set (its two files copied as they are), and
//! SHA256SUMS. Run on the full set, e.g. Debian's:
//!
//! ```text
//! cargo run --release --example fashion_mnist_subset -- /usr/share/datasets/fashion-mnist data/fashion-mnist-subset
//! ```
//!
//! Because the pool holds exactly those 50 images per class, the example's default run (K = 50,
//! seed 0) selects all of them, in the same order: it trains on the bundled subset exactly as on
//! the full set.

#[path = "resnet/sha256.rs"]
mod sha256;

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use smallgrad::data::{Dataset, read_idx};
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;

fn read(dir: &Path, split: &str) -> smallgrad::Result<Dataset> {
    let open = |stem: &str| {
        let p = dir.join(format!("{split}-{stem}.gz"));
        let f = File::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        (GzDecoder::new(BufReader::new(f)), p.display().to_string())
    };
    let (imgs, iname) = open("images-idx3-ubyte");
    let (lbls, lname) = open("labels-idx1-ubyte");
    read_idx(imgs, &iname, lbls, &lname, 10)
}

/// An IDX file (big-endian u32 magic and dimensions, then the bytes), gzip-compressed with no
/// name and time stamp in its header, so the output depends on the data alone.
fn write_idx(path: &Path, magic: u32, dims: &[u32], data: &[u8]) -> std::io::Result<()> {
    let mut raw = magic.to_be_bytes().to_vec();
    for d in dims {
        raw.extend_from_slice(&d.to_be_bytes());
    }
    raw.extend_from_slice(data);
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(File::create(path)?, Compression::best());
    gz.write_all(&raw)?;
    gz.finish()?.flush()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (src, out) = match args.as_slice() {
        [s, o] => (Path::new(s), Path::new(o)),
        _ => return Err("usage: fashion_mnist_subset FULL_SET_DIR OUT_DIR".into()),
    };
    std::fs::create_dir_all(out)?;
    let train = read(src, "train")?.class_balanced_subset(50, 0)?;
    let labels: Vec<u8> = train.labels().iter().map(|&l| l as u8).collect();
    let n = train.len() as u32;
    write_idx(
        &out.join("train-images-idx3-ubyte.gz"),
        0x0803,
        &[n, 28, 28],
        train.images(),
    )?;
    write_idx(&out.join("train-labels-idx1-ubyte.gz"), 0x0801, &[n], &labels)?;
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(src.join(f), out.join(f))?;
    }
    let mut sums = String::new();
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        let bytes = std::fs::read(out.join(f))?;
        sums.push_str(&format!("{}  {f}\n", sha256::hex_digest(&bytes)));
        println!("{f}: {} bytes", bytes.len());
    }
    std::fs::write(out.join("SHA256SUMS"), &sums)?;
    print!("SHA256SUMS:\n{sums}");
    Ok(())
}
