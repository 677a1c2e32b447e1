//! Shuffled mini-batches, random crop + horizontal flip, and mean/std normalisation.
//!
//! A batch is assembled image by image: bytes -> `f32` in [0, 1] (`b / 255`) -> optional
//! augmentation (zero padding is black, as in torchvision's `RandomCrop(padding=p)` before
//! `ToTensor`) -> optional normalisation `(x - mean[c]) / std[c]`.

use super::Dataset;
use crate::{Error, Result, Rng, Tensor};

fn check_pad(op: &'static str, pad: usize, h: usize, w: usize) -> Result<()> {
    if pad > h.max(w) {
        return Err(Error::invalid(
            op,
            format!("pad {pad} is larger than the image ({h} x {w})"),
        ));
    }
    Ok(())
}

fn check_image(op: &'static str, len: usize, c: usize, h: usize, w: usize) -> Result<()> {
    let want = c.checked_mul(h).and_then(|v| v.checked_mul(w));
    if want != Some(len) {
        return Err(Error::shape(
            op,
            format!("{len} values do not form an image of [{c}, {h}, {w}]"),
        ));
    }
    Ok(())
}

/// Pads a `[c, h, w]` image with `pad` zeros on every side and crops an `h x w` window whose
/// top-left corner is at (`top`, `left`) in the padded image, so `top = left = pad` returns
/// the image unchanged. Output pixel `(y, x)` is input pixel `(y + top - pad, x + left - pad)`
/// when that lies inside the image, else 0. `Err` if `top` or `left` exceeds `2 * pad`, or
/// `pad` exceeds the image's larger side.
///
/// ```
/// use smallgrad::data::pad_crop;
/// // 1x2x2 image, pad 1, window at (0, 0): shifted down-right by one, zeros enter top-left.
/// let out = pad_crop(&[1.0, 2.0, 3.0, 4.0], 1, 2, 2, 1, 0, 0)?;
/// assert_eq!(out, vec![0.0, 0.0, 0.0, 1.0]);
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub fn pad_crop(img: &[f32], c: usize, h: usize, w: usize, pad: usize, top: usize, left: usize) -> Result<Vec<f32>> {
    check_image("pad_crop", img.len(), c, h, w)?;
    check_pad("pad_crop", pad, h, w)?;
    let span = 2 * pad;
    if top > span || left > span {
        return Err(Error::invalid(
            "pad_crop",
            format!("window at ({top}, {left}) outside 0..={span} for pad {pad}"),
        ));
    }
    let mut out = vec![0.0; img.len()];
    crop_into(img, &mut out, c, h, w, pad, top, left, false);
    Ok(out)
}

/// Mirrors a `[c, h, w]` image left-right: output `(y, x)` is input `(y, w - 1 - x)`.
///
/// ```
/// use smallgrad::data::hflip;
/// assert_eq!(hflip(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1, 2, 3)?, vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub fn hflip(img: &[f32], c: usize, h: usize, w: usize) -> Result<Vec<f32>> {
    check_image("hflip", img.len(), c, h, w)?;
    let mut out = vec![0.0; img.len()];
    crop_into(img, &mut out, c, h, w, 0, 0, 0, true);
    Ok(out)
}

/// Random crop with zero padding followed by a horizontal flip with probability 0.5. Draws,
/// in this order, `top = rng.below(2 * pad + 1)`, `left = rng.below(2 * pad + 1)`, and
/// `flip = rng.uniform() < 0.5`; the result is `pad_crop(img, .., top, left)`, then `hflip`
/// if `flip`. `Err` if `pad` exceeds the image's larger side.
pub fn random_crop_flip(img: &[f32], c: usize, h: usize, w: usize, pad: usize, rng: &mut Rng) -> Result<Vec<f32>> {
    check_image("random_crop_flip", img.len(), c, h, w)?;
    check_pad("random_crop_flip", pad, h, w)?;
    let span = 2 * pad + 1;
    let (top, left) = (rng.below(span), rng.below(span));
    let flip = rng.uniform() < 0.5;
    let mut out = vec![0.0; img.len()];
    crop_into(img, &mut out, c, h, w, pad, top, left, flip);
    Ok(out)
}

/// The shared kernel: crop at (top, left) of the `pad`-padded image, optionally mirrored.
/// Sizes are already validated; `out` has the image's length.
#[allow(clippy::too_many_arguments)]
fn crop_into(
    img: &[f32],
    out: &mut [f32],
    c: usize,
    h: usize,
    w: usize,
    pad: usize,
    top: usize,
    left: usize,
    flip: bool,
) {
    for ch in 0..c {
        for y in 0..h {
            let row = &mut out[(ch * h + y) * w..(ch * h + y + 1) * w];
            // Source row in image coordinates: y + top - pad, if inside.
            let sy = (y + top).checked_sub(pad).filter(|&s| s < h);
            for (x, o) in row.iter_mut().enumerate() {
                let xx = if flip { w - 1 - x } else { x };
                let sx = (xx + left).checked_sub(pad).filter(|&s| s < w);
                *o = match (sy, sx) {
                    (Some(sy), Some(sx)) => img[(ch * h + sy) * w + sx],
                    _ => 0.0,
                };
            }
        }
    }
}

/// Training-time augmentation applied by [`Batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Zero padding for the random crop (4 is the usual choice for 32 x 32 CIFAR); 0 disables
    /// cropping (nothing is drawn for it then).
    pub pad: usize,
    /// Horizontal flip with probability 0.5 (not for digits, fine for clothes and CIFAR).
    pub flip: bool,
}

/// Per-channel normalisation `(x - mean[c]) / std[c]` of images scaled to [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Per-channel means.
    pub mean: Vec<f32>,
    /// Per-channel standard deviations (all positive and finite).
    pub std: Vec<f32>,
}

impl Normalization {
    /// From given statistics, e.g. the usual CIFAR-10 values. `Err` if the lengths differ, are
    /// zero, or a std is not positive and finite or a mean is not finite.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Normalization> {
        let n = Normalization { mean, std };
        n.validate("Normalization::new")?;
        Ok(n)
    }

    /// The checks of [`Normalization::new`] (the fields are public, so users of a value
    /// built by hand are checked again).
    fn validate(&self, op: &'static str) -> Result<()> {
        let (mean, std) = (&self.mean, &self.std);
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::invalid(
                op,
                format!(
                    "{} means and {} stds (need the same non-zero count)",
                    mean.len(),
                    std.len()
                ),
            ));
        }
        if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::invalid(
                op,
                format!("mean {mean:?} std {std:?}: need finite, std > 0"),
            ));
        }
        Ok(())
    }

    /// The per-channel mean and (population) standard deviation of all pixels of `ds` scaled
    /// to [0, 1], computed exactly from integer sums. A constant channel gets std 1.
    /// `Err` if `ds` is empty.
    ///
    /// ```
    /// use smallgrad::data::{Dataset, Normalization};
    /// let ds = Dataset::new(vec![0, 255, 255, 255], vec![0, 1], 1, 1, 2, 2)?;
    /// let n = Normalization::from_dataset(&ds)?;
    /// assert!((n.mean[0] - 0.75).abs() < 1e-6 && (n.std[0] - 0.4330127).abs() < 1e-6);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    pub fn from_dataset(ds: &Dataset) -> Result<Normalization> {
        if ds.is_empty() {
            return Err(Error::invalid("Normalization::from_dataset", "empty dataset"));
        }
        let (c, hw) = (ds.channels(), ds.height() * ds.width());
        let mut sum = vec![0u64; c];
        let mut sq = vec![0u64; c];
        for img in ds.images().chunks_exact(c * hw) {
            for ch in 0..c {
                for &b in &img[ch * hw..(ch + 1) * hw] {
                    sum[ch] += b as u64;
                    sq[ch] += (b as u64) * (b as u64);
                }
            }
        }
        let count = (ds.len() * hw) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            let m = sum[ch] as f64 / count;
            let var = (sq[ch] as f64 / count - m * m).max(0.0);
            let s = var.sqrt() / 255.0;
            mean.push((m / 255.0) as f32);
            std.push(if s > 1e-12 { s as f32 } else { 1.0 });
        }
        Normalization::new(mean, std)
    }

    fn apply_slice(&self, data: &mut [f32], hw: usize) {
        let c = self.mean.len();
        for (k, px) in data.chunks_exact_mut(hw).enumerate() {
            let (m, s) = (self.mean[k % c], self.std[k % c]);
            for v in px {
                *v = (*v - m) / s;
            }
        }
    }

    /// Normalises a `[B, C, H, W]` batch whose `C` equals the number of channels here.
    /// `Err` for another shape, or statistics that [`Normalization::new`] would reject.
    pub fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        self.validate("Normalization::apply")?;
        let s = x.shape();
        if s.len() != 4 || s[1] != self.mean.len() {
            return Err(Error::shape(
                "Normalization::apply",
                format!("input {s:?}, expected [B, {}, H, W]", self.mean.len()),
            ));
        }
        let mut data = x.to_vec()?;
        let hw = s[2] * s[3];
        if hw > 0 {
            self.apply_slice(&mut data, hw);
        }
        Tensor::from_vec(data, s, x.device())
    }
}

/// One epoch of shuffled mini-batches over a [`Dataset`]: yields `(x, labels)` with `x` a
/// `[B, C, H, W]` `f32` CPU tensor (values `b / 255`, then augmented and normalised if
/// configured) and `labels` its `B` class indices.
///
/// The order is a permutation of `0..n` drawn from `Rng::new(seed)`, so each image appears
/// exactly once per epoch; use a different seed per epoch (e.g. `seed + epoch`). Augmentation
/// draws continue from the same generator after the shuffle, image by image in batch order,
/// so a seed fixes the whole epoch. The last batch holds the remaining `n % B` images, or is
/// dropped when `drop_last` is true.
pub struct Batches<'a> {
    ds: &'a Dataset,
    order: Vec<usize>,
    pos: usize,
    batch_size: usize,
    drop_last: bool,
    augment: Option<Augment>,
    norm: Option<Normalization>,
    rng: Rng,
}

impl<'a> Batches<'a> {
    /// An epoch of batches of `batch_size` over `ds`, shuffled by `seed`. `Err` if
    /// `batch_size` is 0.
    pub fn new(ds: &'a Dataset, batch_size: usize, seed: u64, drop_last: bool) -> Result<Batches<'a>> {
        if batch_size == 0 {
            return Err(Error::invalid("Batches::new", "batch_size must be >= 1"));
        }
        let mut rng = Rng::new(seed);
        let mut order: Vec<usize> = (0..ds.len()).collect();
        rng.shuffle(&mut order);
        Ok(Batches {
            ds,
            order,
            pos: 0,
            batch_size,
            drop_last,
            augment: None,
            norm: None,
            rng,
        })
    }

    /// Enables random crop / flip augmentation; `Err` if `augment.pad` exceeds the image's
    /// larger side.
    pub fn with_augment(mut self, augment: Augment) -> Result<Batches<'a>> {
        check_pad("Batches::with_augment", augment.pad, self.ds.height(), self.ds.width())?;
        self.augment = Some(augment);
        Ok(self)
    }

    /// Enables normalisation; `Err` if its channel count differs from the dataset's or the
    /// statistics are invalid (see [`Normalization::new`]).
    pub fn with_normalization(mut self, norm: Normalization) -> Result<Batches<'a>> {
        norm.validate("Batches::with_normalization")?;
        if norm.mean.len() != self.ds.channels() {
            return Err(Error::shape(
                "Batches::with_normalization",
                format!(
                    "{} channels of statistics for images with {}",
                    norm.mean.len(),
                    self.ds.channels()
                ),
            ));
        }
        self.norm = Some(norm);
        Ok(self)
    }

    /// The number of batches this epoch yields in total.
    pub fn num_batches(&self) -> usize {
        let n = self.order.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = (Tensor<f32>, Vec<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let left = self.order.len() - self.pos;
        let b = left.min(self.batch_size);
        if b == 0 || (self.drop_last && b < self.batch_size) {
            return None;
        }
        let idx = &self.order[self.pos..self.pos + b];
        self.pos += b;
        let (c, h, w) = (self.ds.channels(), self.ds.height(), self.ds.width());
        let s = c * h * w;
        let mut data = vec![0.0f32; b * s];
        let mut labels = Vec::with_capacity(b);
        let mut scaled = vec![0.0f32; s];
        for (k, &i) in idx.iter().enumerate() {
            let img = &self.ds.images()[i * s..(i + 1) * s];
            labels.push(self.ds.labels()[i]);
            let out = &mut data[k * s..(k + 1) * s];
            match self.augment {
                None => {
                    for (o, &p) in out.iter_mut().zip(img) {
                        *o = p as f32 / 255.0;
                    }
                }
                Some(a) => {
                    for (o, &p) in scaled.iter_mut().zip(img) {
                        *o = p as f32 / 255.0;
                    }
                    let (top, left) = if a.pad > 0 {
                        let span = 2 * a.pad + 1;
                        (self.rng.below(span), self.rng.below(span))
                    } else {
                        (0, 0)
                    };
                    let flip = a.flip && self.rng.uniform() < 0.5;
                    crop_into(&scaled, out, c, h, w, a.pad, top, left, flip);
                }
            }
        }
        if let Some(n) = &self.norm {
            n.apply_slice(&mut data, h * w);
        }
        Some((Tensor::from_cpu(data, vec![b, c, h, w]), labels))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.order.len() - self.pos;
        let n = if self.drop_last {
            left / self.batch_size
        } else {
            left.div_ceil(self.batch_size)
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}
