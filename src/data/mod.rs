//! Datasets: readers for the IDX (MNIST / Fashion-MNIST) and CIFAR-10/100 binary formats, a
//! synthetic generator, class-balanced subsets and splits, shuffled mini-batches with random
//! crop + flip augmentation, and per-channel mean/std normalisation.
//!
//! A [`Dataset`] holds `n` images as raw bytes (`u8`, 0..=255) in NCHW order plus one class
//! label per image. Bytes keep memory small (Fashion-MNIST is 47 MB as `u8`, four times that
//! as `f32`); images become `f32` in [0, 1] only when a mini-batch is assembled by [`Batches`].
//!
//! Readers take any `impl std::io::Read` (decompressing `.gz` files is the caller's job; the
//! examples wrap files with a dev-dependency) and a `name` used in error messages; the
//! `load_*` functions open files by path. Malformed input never panics: every problem (bad
//! magic, a header promising more bytes than the stream holds, a label out of range, ...) is
//! an [`Error::Io`] naming the file and the problem, and no buffer is sized from a header
//! before the bytes have actually been read.
//!
//! ```
//! use smallgrad::data::{Dataset, Batches};
//! // 4 classes x 6 images of 1x8x8, then 3 per class for training, 2 for validation.
//! let pool = Dataset::synthetic(6, 4, 1, 8, 8, 0)?;
//! let (train, val) = pool.split_per_class(3, 2, 42)?;
//! assert_eq!((train.len(), val.len()), (12, 8));
//! let mut seen = 0;
//! for (x, y) in Batches::new(&train, 5, 7, false)? {
//!     assert_eq!(x.shape()[1..], [1, 8, 8]);
//!     seen += y.len();
//! }
//! assert_eq!(seen, 12);
//! # Ok::<(), smallgrad::Error>(())
//! ```

mod batches;
mod cifar;
mod idx;

pub use batches::{Augment, Batches, Normalization, hflip, pad_crop, random_crop_flip};
pub use cifar::{load_cifar10, load_cifar100, read_cifar10, read_cifar100};
pub use idx::{IdxImages, load_idx, read_idx, read_idx_images, read_idx_labels};

use crate::{Error, Result, Rng};

/// Builds an [`Error::Io`] for `path`.
pub(crate) fn io_err(path: &str, msg: impl Into<String>) -> Error {
    Error::Io {
        path: path.to_string(),
        msg: msg.into(),
    }
}

/// A labelled image dataset held in memory.
///
/// Invariants (checked by [`Dataset::new`], kept by every method): `images.len() == n *
/// channels * height * width`, `labels.len() == n`, every label `< num_classes`, and
/// `channels`, `height`, `width`, `num_classes` are all at least 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Vec<usize>,
    channels: usize,
    height: usize,
    width: usize,
    num_classes: usize,
}

impl Dataset {
    /// A dataset from raw NCHW bytes and labels; `Err` if the invariants above do not hold.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<usize>,
        channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
    ) -> Result<Dataset> {
        let op = "Dataset::new";
        if channels == 0 || height == 0 || width == 0 || num_classes == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "channels {channels}, height {height}, width {width}, num_classes {num_classes}: all must be >= 1"
                ),
            ));
        }
        let per = channels
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width))
            .ok_or_else(|| Error::invalid(op, "image size overflows usize"))?;
        let expected = labels
            .len()
            .checked_mul(per)
            .ok_or_else(|| Error::invalid(op, "dataset size overflows usize"))?;
        if images.len() != expected {
            return Err(Error::shape(
                op,
                format!(
                    "{} image bytes for {} labels of [{channels}, {height}, {width}] (expected {expected})",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= num_classes) {
            return Err(Error::invalid(
                op,
                format!("label {l} at index {i} is >= num_classes {num_classes}"),
            ));
        }
        Ok(Dataset {
            images,
            labels,
            channels,
            height,
            width,
            num_classes,
        })
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Channels per image (1 for MNIST, 3 for CIFAR).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The number of classes; every label is below it.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Bytes per image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// All images, NCHW, one byte per pixel and channel.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// All labels, one per image.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Image `i` as `[channels, height, width]` bytes, or `None` if `i >= len()`.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let s = self.image_len();
        self.images.get(i.checked_mul(s)?..i.checked_add(1)?.checked_mul(s)?)
    }

    /// How many images each class has (`num_classes` counts).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes];
        for &l in &self.labels {
            c[l] += 1;
        }
        c
    }

    /// The images at `indices`, in that order (repeats allowed). `Err` if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let s = self.image_len();
        let mut images = Vec::with_capacity(indices.len().saturating_mul(s).min(self.images.len()));
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let img = self.image(i).ok_or_else(|| {
                Error::invalid(
                    "Dataset::subset",
                    format!("index {i} out of range for {} images", self.len()),
                )
            })?;
            images.extend_from_slice(img);
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            images,
            labels,
            ..self.empty_like()
        })
    }

    fn empty_like(&self) -> Dataset {
        Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            ..*self
        }
    }

    /// Concatenates datasets with the same image size and class count (e.g. the five CIFAR-10
    /// training files). `Err` if `parts` is empty or the parts disagree.
    pub fn concat(parts: &[Dataset]) -> Result<Dataset> {
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid("Dataset::concat", "no datasets given"))?;
        let mut out = first.empty_like();
        for (k, p) in parts.iter().enumerate() {
            let a = (p.channels, p.height, p.width, p.num_classes);
            let b = (first.channels, first.height, first.width, first.num_classes);
            if a != b {
                return Err(Error::shape(
                    "Dataset::concat",
                    format!("part {k} has (channels, height, width, classes) {a:?}, part 0 has {b:?}"),
                ));
            }
            out.images.extend_from_slice(&p.images);
            out.labels.extend_from_slice(&p.labels);
        }
        Ok(out)
    }

    /// Per class, shuffles that class's indices with `Rng::new(seed)` (classes in order 0, 1,
    /// ...) and returns the first `counts[j]` of them in group `j`; the groups are disjoint and
    /// each is sorted ascending. `Err` if a class has fewer than `counts.iter().sum()` images.
    pub fn per_class_groups(&self, counts: &[usize], seed: u64) -> Result<Vec<Vec<usize>>> {
        let need = counts.iter().try_fold(0usize, |a, &c| a.checked_add(c));
        let need = need.ok_or_else(|| Error::invalid("per_class_groups", "requested counts overflow usize"))?;
        let mut by_class = vec![Vec::new(); self.num_classes];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l].push(i);
        }
        let mut rng = Rng::new(seed);
        let mut groups = vec![Vec::new(); counts.len()];
        for (c, idx) in by_class.iter_mut().enumerate() {
            if idx.len() < need {
                return Err(Error::invalid(
                    "per_class_groups",
                    format!(
                        "class {c} has {} images, {need} requested ({counts:?} per class)",
                        idx.len()
                    ),
                ));
            }
            rng.shuffle(idx);
            let mut start = 0;
            for (g, &k) in groups.iter_mut().zip(counts) {
                g.extend_from_slice(&idx[start..start + k]);
                start += k;
            }
        }
        for g in &mut groups {
            g.sort_unstable();
        }
        Ok(groups)
    }

    /// Exactly `k` images of every class, chosen by `seed` (kept in their original order).
    /// `Err` if some class has fewer than `k` images.
    pub fn class_balanced_subset(&self, k: usize, seed: u64) -> Result<Dataset> {
        let g = self.per_class_groups(&[k], seed)?;
        self.subset(&g[0])
    }

    /// Splits a training pool into disjoint training and validation sets with `train_k` and
    /// `val_k` images of every class, chosen by `seed`. `Err` if some class has fewer than
    /// `train_k + val_k` images.
    pub fn split_per_class(&self, train_k: usize, val_k: usize, seed: u64) -> Result<(Dataset, Dataset)> {
        let g = self.per_class_groups(&[train_k, val_k], seed)?;
        Ok((self.subset(&g[0])?, self.subset(&g[1])?))
    }

    /// A seeded synthetic dataset so that examples run without downloads: `per_class` images
    /// of each of `num_classes` classes (labels cycle 0, 1, ..., so classes are interleaved).
    ///
    /// Each class has a prototype: a sum of two plane waves per channel whose frequencies,
    /// orientations and phases are drawn from `Rng::new(seed)`. A sample is its class
    /// prototype shifted cyclically by up to one pixel, scaled in contrast by 0.8..1.2, plus
    /// Gaussian noise (sd 0.1), clamped to [0, 1] and quantised to bytes. Classes are
    /// separable but not trivially so, and the task gets harder as `num_classes` grows.
    pub fn synthetic(
        per_class: usize,
        num_classes: usize,
        channels: usize,
        height: usize,
        width: usize,
        seed: u64,
    ) -> Result<Dataset> {
        let n = per_class
            .checked_mul(num_classes)
            .ok_or_else(|| Error::invalid("Dataset::synthetic", "per_class * num_classes overflows"))?;
        // Validate the sizes before generating anything.
        let check = Dataset::new(Vec::new(), Vec::new(), channels, height, width, num_classes)?;
        let s = check.image_len();
        n.checked_mul(s)
            .ok_or_else(|| Error::invalid("Dataset::synthetic", "dataset size overflows"))?;
        let mut rng = Rng::new(seed);
        let tau = std::f64::consts::TAU;
        let mut protos = Vec::with_capacity(num_classes * s);
        for _ in 0..num_classes {
            let waves: Vec<[f64; 4]> = (0..channels * 2)
                .map(|_| {
                    let f = 0.5 + 2.5 * rng.uniform();
                    let ang = tau * rng.uniform();
                    [
                        f * ang.cos() / width as f64,
                        f * ang.sin() / height as f64,
                        tau * rng.uniform(),
                        0.0,
                    ]
                })
                .collect();
            for c in 0..channels {
                for y in 0..height {
                    for x in 0..width {
                        let v: f64 = waves[2 * c..2 * c + 2]
                            .iter()
                            .map(|w| (tau * (w[0] * x as f64 + w[1] * y as f64) + w[2]).sin())
                            .sum();
                        protos.push(0.5 + 0.2 * v);
                    }
                }
            }
        }
        let mut images = Vec::with_capacity(n * s);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % num_classes;
            let (dy, dx) = (rng.below(3), rng.below(3));
            let contrast = 0.8 + 0.4 * rng.uniform();
            let p = &protos[c * s..(c + 1) * s];
            for ch in 0..channels {
                for y in 0..height {
                    for x in 0..width {
                        let sy = (y + height + dy - 1) % height;
                        let sx = (x + width + dx - 1) % width;
                        let v = 0.5 + contrast * (p[(ch * height + sy) * width + sx] - 0.5) + 0.1 * rng.normal();
                        images.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
                    }
                }
            }
            labels.push(c);
        }
        Dataset::new(images, labels, channels, height, width, num_classes)
    }
}
