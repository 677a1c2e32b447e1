//! The IDX format of MNIST and Fashion-MNIST.
//!
//! A file is a big-endian header followed by the raw data:
//!
//! ```text
//! images: 00 00 08 03 | n: u32 | rows: u32 | cols: u32 | n*rows*cols bytes (row-major)
//! labels: 00 00 08 01 | n: u32 |                         n bytes
//! ```
//!
//! The third magic byte (0x08) says "unsigned byte", the fourth the number of dimensions.
//! Only these two layouts are accepted. Data are read through `Read::take`, so a header that
//! promises gigabytes allocates only as much as the stream really holds before failing.

use super::{Dataset, io_err};
use crate::Result;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// The magic number of an IDX file of unsigned-byte images `[n, rows, cols]`.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// The magic number of an IDX file of unsigned-byte labels `[n]`.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The images of an IDX file: `n` images of `rows x cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// The number of images.
    pub n: usize,
    /// Rows (height) per image.
    pub rows: usize,
    /// Columns (width) per image.
    pub cols: usize,
    /// `n * rows * cols` pixel bytes.
    pub data: Vec<u8>,
}

fn read_u32(r: &mut impl Read, name: &str, what: &str) -> Result<u32> {
    let mut b = [0u8; 4];
    read_full(r, &mut b, name, &format!("truncated header: cannot read {what}"))?;
    Ok(u32::from_be_bytes(b))
}

/// Fills `buf`, mapping EOF and I/O errors to [`crate::Error::Io`] with `ctx`.
pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8], name: &str, ctx: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| io_err(name, format!("{ctx} ({e})")))
}

/// Reads exactly `len` bytes (growing the buffer only as data arrive) and then checks that
/// the stream is at its end. `what` describes the data for messages.
pub(super) fn read_payload(r: &mut impl Read, len: usize, name: &str, what: &str) -> Result<Vec<u8>> {
    // Reserve at most 1 MiB up front; beyond that the vector grows with the real data.
    let mut data = Vec::with_capacity(len.min(1 << 20));
    r.by_ref()
        .take(len as u64)
        .read_to_end(&mut data)
        .map_err(|e| io_err(name, format!("reading {what}: {e}")))?;
    if data.len() != len {
        return Err(io_err(
            name,
            format!(
                "truncated: header says {what} take {len} bytes, only {} present",
                data.len()
            ),
        ));
    }
    expect_eof(r, name)?;
    Ok(data)
}

fn expect_eof(r: &mut impl Read, name: &str) -> Result<()> {
    let mut extra = [0u8; 1];
    loop {
        match r.read(&mut extra) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(io_err(name, "trailing bytes after the data the header describes"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(name, format!("reading: {e}"))),
        }
    }
}

fn check_magic(r: &mut impl Read, name: &str, want: u32, kind: &str) -> Result<()> {
    let magic = read_u32(r, name, "the magic number")?;
    if magic != want {
        let hint = match magic {
            IDX_IMAGES_MAGIC => " (this is an image file)",
            IDX_LABELS_MAGIC => " (this is a label file)",
            m if m >> 16 == 0x8b1f || m >> 16 == 0x1f8b => " (gzip data: decompress it first)",
            _ => "",
        };
        return Err(io_err(
            name,
            format!("bad magic 0x{magic:08x}, expected 0x{want:08x} for IDX {kind}{hint}"),
        ));
    }
    Ok(())
}

/// Reads an IDX image file (magic `0x00000803`). `name` labels error messages.
/// `Err` on a bad magic, a truncated header or body, zero rows or columns, or trailing bytes.
pub fn read_idx_images(mut r: impl Read, name: &str) -> Result<IdxImages> {
    check_magic(&mut r, name, IDX_IMAGES_MAGIC, "images")?;
    let n = read_u32(&mut r, name, "the image count")? as usize;
    let rows = read_u32(&mut r, name, "the row count")? as usize;
    let cols = read_u32(&mut r, name, "the column count")? as usize;
    if rows == 0 || cols == 0 {
        return Err(io_err(
            name,
            format!("images of {rows} x {cols} pixels: both must be >= 1"),
        ));
    }
    let len = n.checked_mul(rows).and_then(|v| v.checked_mul(cols)).ok_or_else(|| {
        io_err(
            name,
            format!("absurd header: {n} images of {rows} x {cols} overflow usize"),
        )
    })?;
    let data = read_payload(&mut r, len, name, &format!("{n} images of {rows} x {cols}"))?;
    Ok(IdxImages { n, rows, cols, data })
}

/// Reads an IDX label file (magic `0x00000801`): one byte per label. `name` labels errors.
pub fn read_idx_labels(mut r: impl Read, name: &str) -> Result<Vec<u8>> {
    check_magic(&mut r, name, IDX_LABELS_MAGIC, "labels")?;
    let n = read_u32(&mut r, name, "the label count")? as usize;
    read_payload(&mut r, n, name, &format!("{n} labels"))
}

/// Reads an IDX image/label pair into a one-channel [`Dataset`] with `num_classes` classes
/// (10 for MNIST and Fashion-MNIST). `Err` names the file at fault: a malformed file, counts
/// that differ between the two files, or a label `>= num_classes`.
pub fn read_idx(
    images: impl Read,
    images_name: &str,
    labels: impl Read,
    labels_name: &str,
    num_classes: usize,
) -> Result<Dataset> {
    let im = read_idx_images(images, images_name)?;
    let lb = read_idx_labels(labels, labels_name)?;
    if im.n != lb.len() {
        return Err(io_err(
            labels_name,
            format!("{} labels but {images_name} holds {} images", lb.len(), im.n),
        ));
    }
    if num_classes == 0 || num_classes > 256 {
        return Err(io_err(
            labels_name,
            format!("num_classes {num_classes} must be in 1..=256 for byte labels"),
        ));
    }
    if let Some((i, &l)) = lb.iter().enumerate().find(|&(_, &l)| l as usize >= num_classes) {
        return Err(io_err(
            labels_name,
            format!("label {l} at index {i} is >= num_classes {num_classes}"),
        ));
    }
    let labels = lb.into_iter().map(usize::from).collect();
    Dataset::new(im.data, labels, 1, im.rows, im.cols, num_classes)
}

pub(super) fn open(path: &Path) -> Result<BufReader<File>> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| io_err(&path.display().to_string(), format!("cannot open: {e}")))
}

/// Opens and reads an (uncompressed) IDX image/label pair, e.g. `train-images-idx3-ubyte`
/// and `train-labels-idx1-ubyte`; see [`read_idx`].
pub fn load_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>, num_classes: usize) -> Result<Dataset> {
    let (ip, lp) = (images.as_ref(), labels.as_ref());
    read_idx(
        open(ip)?,
        &ip.display().to_string(),
        open(lp)?,
        &lp.display().to_string(),
        num_classes,
    )
}
